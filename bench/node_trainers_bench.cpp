// ddactor_node_trainers_bench: what several trainers in one peer (run.trainers) buy on a CPU.
// Trains the quickstart DiT in one process for --steps steps of --batch samples (the node's
// batch), once as 1 trainer on --threads LibTorch threads and once as --threads trainers of 1
// thread each, which take their slices of the same batches and sum their gradients over c10d's
// Gloo every step (models/node_reducer, models/node_training), as a peer with run.trainers does.
// Prints each one's training samples/s (data already in memory) and the validation loss of the
// weights at equal samples (models/validation_loss), and their ratios measured in the same run.
// The losses should agree (the same examples and noise; only the gradient sums group
// differently): the figure that matters is the throughput ratio.
//
//   ddactor_node_trainers_bench [--steps 60] [--batch 128] [--threads 2]
//       [--validation-images 2000]
#include <torch/torch.h>

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "app/torch_setup.hpp"
#include "config/config_loader.hpp"
#include "models/diffusion_trainer.hpp"
#include "models/model_config.hpp"
#include "models/node_training.hpp"
#include "models/validation_loss.hpp"
#include "runtime/data_order.hpp"
#include "runtime/image_dataset.hpp"
#include "runtime/run_data.hpp"

namespace {

using namespace ddactor;

struct settings {
  int64_t steps = 60;
  int batch = 128;
  int threads = 2;
  int64_t validation_images = 2000;
};

run_config bench_config() {
  return parse_run_config(
    "[run]\nname = \"node-trainers-bench\"\n[data]\nsource = \"fashion-mnist\"\n"
    "[model]\npreset = \"custom\"\nhidden_size = 128\ndepth = 4\nnum_heads = 4\npatch_size = 4\n"
    "[train]\nlr = 0.0005\nwarmup_steps = 15\nema_decay = 0.999\n",
    "node-trainers-bench.toml");
}

struct outcome {
  double samples_per_second = 0;
  double validation_loss = 0;
};

// Rank `rank` of `ranks`: its slice of every node batch, as the data loader cuts it.
std::vector<training_batch> slices_of(const run_data& data, const settings& s, int rank,
                                      int ranks) {
  shuffled_order order(data.train->count, bench_config().run.seed);
  data_cursor cursor;
  const int64_t per_rank = s.batch / ranks;
  std::vector<training_batch> batches;
  for (int64_t step = 0; step < s.steps; ++step) {
    auto node = order.next_batch(cursor, per_rank * ranks);
    auto batch = batch_of(*data.train, std::vector<int64_t>(node.begin() + rank * per_rank,
                                                            node.begin() + (rank + 1) * per_rank));
    if (ranks > 1) {
      batch.node_offset = rank * per_rank;
      batch.node_count = per_rank * ranks;
    }
    batches.push_back(std::move(batch));
  }
  return batches;
}

// `ranks` trainers of `threads_each` LibTorch threads, each on its own thread, as in a peer.
outcome train_node(const settings& s, const run_data& data, int ranks, int threads_each) {
  torch::set_num_threads(threads_each);  // each trainer thread's OpenMP team takes this size
  const auto config = bench_config();
  auto rendezvous = make_node_rendezvous();
  std::vector<std::unique_ptr<diffusion_trainer>> trainers;
  for (int rank = 0; rank < ranks; ++rank)  // one at a time: the global generator seeds them
    trainers.push_back(std::make_unique<diffusion_trainer>(make_dit_options(config),
                                                           make_trainer_settings(config)));
  std::vector<std::vector<training_batch>> batches;
  for (int rank = 0; rank < ranks; ++rank)
    batches.push_back(slices_of(data, s, rank, ranks));
  std::vector<double> seconds(static_cast<size_t>(ranks));
  std::vector<std::thread> threads;
  for (int rank = 0; rank < ranks; ++rank)
    threads.emplace_back([&, rank] {
      auto& trainer = *trainers[static_cast<size_t>(rank)];
      node_reducer reducer(rendezvous, {rank, ranks});
      training_progress progress;
      share_training_state(reducer, trainer, progress);
      const auto started = std::chrono::steady_clock::now();
      for (const auto& batch : batches[static_cast<size_t>(rank)]) {
        trainer.accumulate(batch);
        sum_node_accumulation(reducer, trainer);
        trainer.apply_step();
      }
      seconds[static_cast<size_t>(rank)] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    });
  for (auto& t : threads)
    t.join();
  validation_loss_options o;
  o.images = s.validation_images;
  return {static_cast<double>(s.steps * s.batch) / seconds[0],
          validation_loss(trainers[0]->model(), *data.holdout, o)};
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  CLI::App app{"Several trainers of one thread in one peer against one trainer on all threads"};
  app.add_option("--steps", s.steps, "optimizer steps")->capture_default_str();
  app.add_option("--batch", s.batch, "samples per step (the node's batch)")->capture_default_str();
  app.add_option("--threads", s.threads, "threads: of the one trainer, or trainers of one thread")
    ->capture_default_str()
    ->check(CLI::Range(2, 64));
  app.add_option("--validation-images", s.validation_images, "first N test images")
    ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (s.batch % s.threads != 0) {
    std::fprintf(stderr, "--batch must be a multiple of --threads\n");
    return 2;
  }
  const auto data = load_run_data(bench_config());
  std::printf("quickstart DiT, %lld steps of %d samples; validation loss on %lld test images\n",
              static_cast<long long>(s.steps), s.batch,
              static_cast<long long>(s.validation_images));
  std::fflush(stdout);
  const auto one = train_node(s, data, 1, s.threads);
  std::printf("  1 trainer  x %d threads: %8.1f samples/s  validation loss %.5f\n", s.threads,
              one.samples_per_second, one.validation_loss);
  std::fflush(stdout);
  const auto many = train_node(s, data, s.threads, 1);
  std::printf("  %d trainers x 1 thread : %8.1f samples/s  validation loss %.5f\n", s.threads,
              many.samples_per_second, many.validation_loss);
  std::printf("%d trainers x 1 thread / 1 trainer x %d threads: throughput %.3f, validation loss "
              "%.4f (aim: 1.00)\n",
              s.threads, s.threads, many.samples_per_second / one.samples_per_second,
              many.validation_loss / one.validation_loss);
  return 0;
}
