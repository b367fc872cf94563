// Benchmark of the gradient/parameter codecs on a DiT-S-sized flat vector (25M float32 values):
// for each codec, with zstd off, at level 1 and at level 3, on random normal and heavy-tailed
// (Cauchy times 10^[-6, 6]) inputs, it prints the encoded bytes against float32 (the baseline,
// measured in the same run), encode and decode throughput in MB/s of float32 input on one thread,
// and the relative error ||x - decode(encode(x))|| / ||x||. Top-k figures are for one round from
// a zero residual (error feedback delivers the rest in later rounds).
//
// usage: ddactor_codec_bench [elements]   (default 25000000)
#include "runtime/compression/codec_factory.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace ddactor;
using bench_clock = std::chrono::steady_clock;

std::vector<float> normal_input(std::size_t n) {
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x)
    v = normal(rng);
  return x;
}

std::vector<float> heavy_tailed_input(std::size_t n) {
  std::mt19937 rng(2);
  std::cauchy_distribution<double> cauchy(0.0, 1.0);
  std::uniform_real_distribution<double> decade(-6.0, 6.0);
  std::vector<float> x(n);
  for (float& v : x)
    v = static_cast<float>(std::clamp(cauchy(rng) * std::pow(10.0, decade(rng)), -1e30, 1e30));
  return x;
}

double relative_error(const std::vector<float>& x, const std::vector<float>& y) {
  double difference = 0.0;
  double norm = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(x[i]) - y[i];
    difference += d * d;
    norm += static_cast<double>(x[i]) * x[i];
  }
  return std::sqrt(difference / norm);
}

double seconds_since(bench_clock::time_point start) {
  return std::chrono::duration<double>(bench_clock::now() - start).count();
}

void run(const char* input_name, const std::vector<float>& x) {
  const double input_mb = 4.0 * static_cast<double>(x.size()) / 1e6;
  std::vector<float> y(x.size());
  // ("adaptive" is a per-tensor choice of none and int8: ddactor_allreduce_bench --codec-sweep.)
  for (const char* name : {"none", "fp16", "bf16", "int8", "topk"}) {
    for (const int zstd_level : {0, 1, 3}) {
      codec_options options;
      options.zstd_level = zstd_level;
      // Best of two runs.
      double encode_seconds = 1e30;
      double decode_seconds = 1e30;
      std::vector<std::byte> frame;
      for (int repeat = 0; repeat < 2; ++repeat) {
        const auto codec = make_codec(name, options);
        auto start = bench_clock::now();
        frame = codec->encode(x);
        encode_seconds = std::min(encode_seconds, seconds_since(start));
        start = bench_clock::now();
        decode_any(frame, y);
        decode_seconds = std::min(decode_seconds, seconds_since(start));
      }
      std::printf("%-13s %-9s %5d %12.4f %10.0f %10.0f %12.3e\n", input_name, name, zstd_level,
                  static_cast<double>(frame.size()) / (4.0 * static_cast<double>(x.size())),
                  input_mb / encode_seconds, input_mb / decode_seconds, relative_error(x, y));
      std::fflush(stdout);
    }
  }
}

} // namespace

int main(int argc, char** argv) {
  const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 25000000;
  std::printf("%zu float32 values (%.0f MB), one thread; ratio = encoded bytes / float32 bytes\n",
              n, 4.0 * static_cast<double>(n) / 1e6);
  std::printf("%-13s %-9s %5s %12s %10s %10s %12s\n", "input", "codec", "zstd", "ratio",
              "enc MB/s", "dec MB/s", "rel error");
  run("normal", normal_input(n));
  run("heavy_tailed", heavy_tailed_input(n));
  return 0;
}
