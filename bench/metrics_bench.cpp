// metrics_bench: what one metric update costs on the hot path (a training step, a network
// handler), single-threaded and with two threads hammering the same child. Prints ns per
// update and ratios against two baselines measured in the same run: a bare relaxed
// std::atomic fetch_add (the floor for any shared counter) and a mutex-guarded counter (what
// a naive registry would do).
//
//   ddactor_metrics_bench [updates_per_thread]   (default 20000000)

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "monitoring/metrics_registry.hpp"

namespace {

using namespace ddactor;

constexpr int repetitions = 3;

/// Best-of-`repetitions` wall time per update, in ns, with `threads` threads each running
/// `updates` calls of `update` at once.
template <class Update>
double nanoseconds_per_update(int threads, std::uint64_t updates, const Update& update) {
  double best = 1e300;
  for (int repetition = 0; repetition < repetitions; ++repetition) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t)
      workers.emplace_back([&] {
        ready.fetch_add(1);
        while (!go.load(std::memory_order_acquire)) {
        }
        for (std::uint64_t i = 0; i < updates; ++i) update(i);
      });
    while (ready.load() != threads) {
    }
    const auto start = std::chrono::steady_clock::now();
    go.store(true, std::memory_order_release);
    for (auto& worker : workers) worker.join();
    const auto elapsed = std::chrono::duration<double, std::nano>(
                             std::chrono::steady_clock::now() - start)
                             .count();
    best = std::min(best, elapsed / static_cast<double>(updates));
  }
  return best;
}

void report(const char* what, int threads, double ns, double atomic_ns, double mutex_ns) {
  std::printf("%-44s %d thread%s %8.2f ns/update   x%5.2f atomic   x%5.2f mutex\n", what,
              threads, threads == 1 ? " " : "s", ns, ns / atomic_ns, ns / mutex_ns);
}

}  // namespace

int main(int argc, char** argv) {
  const std::uint64_t updates = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 20'000'000;
  std::printf("metrics update cost, %llu updates per thread, best of %d, %u hardware threads\n",
              static_cast<unsigned long long>(updates), repetitions,
              std::thread::hardware_concurrency());
  std::printf("(with 2 threads, ns/update is wall time / updates per thread: the latency each\n"
              " thread sees while the other hammers the same cache line)\n\n");

  metrics_registry registry;
  auto& counter = registry.counter("ddactor_bench_updates_total", "Bench.", {"kind"}).with({"a"});
  auto& gauge = registry.gauge("ddactor_bench_level", "Bench.").with();
  auto& histogram = registry
                        .histogram("ddactor_bench_seconds", "Bench.", {"kind"},
                                   exponential_buckets(0.0001, 2.5, 12))
                        .with({"a"});
  metrics_registry disabled_registry;
  disabled_registry.set_enabled(false);
  auto& disabled_counter = disabled_registry.counter("ddactor_bench_off_total", "Bench.").with();
  auto& disabled_histogram =
      disabled_registry.histogram("ddactor_bench_off_seconds", "Bench.", {}, {0.1, 1}).with();

  // Observed values spread over the buckets so the bucket scan is not always the shortest.
  std::vector<double> samples(1024);
  for (std::size_t i = 0; i < samples.size(); ++i)
    samples[i] = 0.0001 * static_cast<double>((i * 2654435761u) % 100000) / 10.0;

  for (const int threads : {1, 2}) {
    alignas(64) std::atomic<std::uint64_t> bare{0};
    const double atomic_ns = nanoseconds_per_update(
        threads, updates, [&](std::uint64_t) { bare.fetch_add(1, std::memory_order_relaxed); });
    std::mutex mutex;
    std::uint64_t guarded = 0;
    const double mutex_ns = nanoseconds_per_update(threads, updates, [&](std::uint64_t) {
      std::lock_guard lock(mutex);
      ++guarded;
    });
    std::printf("baseline: relaxed atomic fetch_add         %d thread%s %8.2f ns/update\n",
                threads, threads == 1 ? " " : "s", atomic_ns);
    std::printf("baseline: mutex-guarded increment          %d thread%s %8.2f ns/update\n",
                threads, threads == 1 ? " " : "s", mutex_ns);

    report("counter.inc()", threads,
           nanoseconds_per_update(threads, updates, [&](std::uint64_t) { counter.inc(); }),
           atomic_ns, mutex_ns);
    report("counter.inc(0.5)", threads,
           nanoseconds_per_update(threads, updates, [&](std::uint64_t) { counter.inc(0.5); }),
           atomic_ns, mutex_ns);
    report("gauge.inc(1.0)", threads,
           nanoseconds_per_update(threads, updates, [&](std::uint64_t) { gauge.inc(1.0); }),
           atomic_ns, mutex_ns);
    report("histogram.observe(v), 12 buckets", threads,
           nanoseconds_per_update(threads, updates,
                                  [&](std::uint64_t i) { histogram.observe(samples[i & 1023]); }),
           atomic_ns, mutex_ns);
    report("counter.inc(), registry disabled", threads,
           nanoseconds_per_update(threads, updates, [&](std::uint64_t) { disabled_counter.inc(); }),
           atomic_ns, mutex_ns);
    report("histogram.observe(v), registry disabled", threads,
           nanoseconds_per_update(
               threads, updates,
               [&](std::uint64_t i) { disabled_histogram.observe(samples[i & 1023]); }),
           atomic_ns, mutex_ns);
    std::printf("\n");
  }
  return counter.value() > 0 ? 0 : 1;
}
