// ddactor_staleness_bench: what a one-update delay of the gradient costs the model, without a
// swarm. averaging.overlap applies epoch e's averaged gradient after epoch e+1's has started on
// the weights before it (delayed parameter updates, as hivemind's delay_optimizer_step); this
// bench trains the quickstart DiT (the swarm convergence bench's config) in one process for
// --steps steps of --batch, once with fresh gradients and once with every step applying the
// gradient computed on the weights one step older, same data order, same noise stream, and
// scores both (raw weights) by models/validation_loss. A third run ("predicted") computes the
// delayed gradient on the weights extrapolated by the last update (W + (W - W_before), the
// weight prediction of SpecTrain, Chen et al. 2018), which the update it is applied after will
// roughly produce. A fourth ("speculative") computes it on the weights after a step with one
// peer's share of the batch (1 / --peers), which is taken back before the whole batch's mean is
// applied: what averaging.step_ahead does in a swarm ("speculative-blend": the guess is half that
// share's gradient, half the last average applied; "speculative-shrunk": --own-weight of it, the
// rest AdamW's bias-corrected first moment). Those compute the whole batch on one peer's guess;
// "speculative-shares" is the swarm as it runs: each of --peers computes its share on its own
// guess, clipped as if its norm were the last average's (--guess-clip), AdamW's second moment
// taking 1 / --peers of its square (--guess-moment), against "fresh-shares" (the same shares,
// the same noise stream, no guess); "speculative-oracle" guesses the true average and must give
// fresh-shares' bits. --guess-scale and --guess-center move each guess towards the true average
// (no peer knows it: a way to measure what the guesses' spread costs) or towards zero (a bias).
// It prints how far the guesses were from the step, their mean, and how far along it the mean
// went (1: as far as the swarm's step; below 1: short).
// Prints the losses and their ratios to the fresh run (aim of issue 13: at most 2% above).
// Separates the cost of staleness from anything the network does.
//
//   ddactor_staleness_bench [--steps 150] [--batch 128 | --batch-sequence 288,416,...]
//       [--lr 0.0005] [--warmup 15]
//       [--validation-images 2000] [--variants fresh,stale,predicted,speculative] [--peers 4]
//       [--seeds 1] [--first-seed 1] [--grad-clip 1] [--guess-clip average|own]
//       [--guess-moment share|own|history] [--guess-scale 1] [--guess-center average|zero]
//       [--fresh-steps 0]
//
// Measured (150 steps of 128, run.seed 0, before --seeds counted from 1): fresh 0.4352; stale
// 1.405x; predicted 1.21x; speculative with a quarter of the batch 1.043x, with half 1.028x,
// with all of it 1.0000x (the same bits as fresh: the step taken back is exact);
// speculative-blend with a quarter 1.091x (the last average is a worse guess than the own share:
// AdamW's momentum holds the past already). Over 3 seeds:
// speculative / fresh-split 1.042x (1.031-1.050), fresh-split / fresh 1.004x (0.997-1.010).
// speculative-shrunk (0.3 the own gradient, 0.7 AdamW's first moment; seed 1): 1.178x of
// fresh-split, against 1.030x for the own gradient alone: a guess leaning on the past costs as
// staleness does; the own share's noise, unbiased, costs less.
// Each peer its own guess (--variants fresh-shares,speculative-shares, 4 peers, seeds 1-2):
// clipped by its own norm 1.0387x and 1.0316x (each guess 0.18 of the swarm's step away from
// it, their mean 0.07: the errors cancel in the mean, the cost does not go with them); clipped
// by the last average's norm 1.0311x and 1.0249x (mean 1.028x; each guess 0.42 away, their mean
// 0.07); no clipping at all (--grad-clip 0, seed 1) 1.0252x. The oracle gives fresh-shares'
// bits. Speculative against fresh-split (seed 1): neither the warm-up without overlap
// (--fresh-steps 15: 1.032x) nor a longer run (400 steps: 1.050x) takes the cost away.
// What costs is what the guesses share, not their spread (speculative-shares, seed 1, the moment
// taking the whole square): each guess moved halfway to the true average (--guess-scale 0.5)
// 0.978x of fresh-shares (0.994x with seed 2), 0.707 of the way 0.996x, the own gradient 1.031x;
// the own gradient shrunk by 0.3 towards zero (--guess-center zero --guess-scale 0.7), a bias,
// 1.116x. The share's noise also inflates the square AdamW's second moment takes, which
// shortens every guess alike: with --guess-moment share (the swarm's since afc89bd), seeds 1-4,
// 1.0042x 1.0219x 1.0199x 1.0168x (mean 1.016x) against 1.0311x 1.0249x 1.0330x 1.0373x (mean
// 1.032x) with the whole square (own; the guesses' mean went 0.963 of the way along the swarm's
// step, seed 1; with the share 1.034-1.038); the moment's estimate alone (history, seeds 1-2):
// 1.0163x and 1.0104x, but its first steps go far astray (a peer's guess 1.47 steps away on
// average). With --batch 384 (the epochs a 4-peer swarm's overlap grows to), seed 1: 1.0102x
// (fresh-shares 0.41651; a guess 0.556 of the step away, their mean 0.091, 1.037 along it).
// With --batch-sequence replaying the 150 epoch sizes of a real overlapping swarm (288-480, mean
// 378): seed 1 1.0113x (fresh-shares 0.41711, speculative-shares 0.42183; 0.573 away, 1.036
// along), seed 2 0.9921x (0.42777, 0.42440; 0.593 away, 1.036 along): epochs that vary as the
// swarm's do cost nothing more than constant ones.
#include <torch/torch.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "app/torch_setup.hpp"
#include "config/config_loader.hpp"
#include "models/diffusion_trainer.hpp"
#include "models/model_config.hpp"
#include "models/shared_state.hpp"
#include "models/validation_loss.hpp"
#include "runtime/data_order.hpp"
#include "runtime/image_dataset.hpp"
#include "runtime/run_data.hpp"

namespace {

using namespace ddactor;

struct settings {
  int64_t steps = 150;
  int batch = 128;
  std::vector<int> batch_sequence;  // per step, repeated (an overlapping swarm's epochs)
  double lr = 5e-4;
  int64_t warmup = 15;
  int64_t validation_images = 2000;
  int peers = 4;
  int seeds = 1;
  int first_seed = 1;
  double own_weight = 0.3;
  int64_t fresh_steps = 0;
  double grad_clip = 1.0;
  std::string guess_clip = "average";
  double guess_scale = 1.0;
  std::string guess_center = "average";
  std::string guess_moment = "share";
  std::vector<std::string> variants{"fresh", "stale", "predicted", "speculative"};
};

run_config bench_config(const settings& s, int seed) {
  return parse_run_config(
    "[run]\nname = \"staleness-bench\"\nseed = " + std::to_string(seed) +
      "\n[data]\nsource = \"fashion-mnist\"\n"
    "[model]\npreset = \"custom\"\nhidden_size = 128\ndepth = 4\nnum_heads = 4\npatch_size = 4\n"
    "[train]\nlr = " +
      std::to_string(s.lr) + "\nwarmup_steps = " + std::to_string(s.warmup) +
      "\nema_decay = 0.999\ngrad_clip = " + std::to_string(s.grad_clip) + "\n",
    "staleness-bench.toml");
}

// `center` plus `scale` times the own gradient's distance from it (1: the own gradient).
// Centred on the average (which no peer knows when it guesses), it shows how the cost grows with
// the guesses' spread; centred on zero (--guess-center zero), it is a guess a peer can make.
std::vector<float> scaled_guess(const std::vector<float>& average, const std::vector<float>& own,
                                double scale, bool around_zero) {
  if (scale == 1.0)
    return own;
  std::vector<float> guess(own.size());
  const auto s = static_cast<float>(scale);
  for (std::size_t k = 0; k < guess.size(); ++k) {
    const float center = around_zero ? 0.0f : average[k];
    guess[k] = center + s * (own[k] - center);
  }
  return guess;
}

// Trains for s.steps updates. "fresh": each update applies the gradient of the weights it
// updates. "stale": update k applies the gradient computed on the weights before update k-1 (the
// last one is applied at the end, so every run takes s.steps). "predicted": as "stale", with the
// gradient computed on those weights plus their last update.
double train_and_score(const settings& s, const run_config& config, const run_data& data,
                       const std::string& variant) {
  diffusion_trainer trainer(make_dit_options(config), make_trainer_settings(config));
  shuffled_order order(data.train->count, config.run.seed);
  data_cursor cursor;
  std::optional<std::vector<float>> pending;
  auto weights = trainer.parameters().values();
  torch::Tensor last_update = torch::zeros_like(weights);
  std::optional<std::vector<float>> pending_local;
  std::optional<std::vector<float>> last_average;
  std::vector<std::vector<float>> pending_shares;  // speculative-shares: each peer's own gradient
  std::optional<double> last_average_norm;         // of the last average applied (shares)
  struct {
    double each = 0, mean = 0;  // summed relative errors of each guess, of the guesses' mean
    double along = 0;  // summed lengths of the guesses' mean step along the swarm's, against it
    int64_t guesses = 0, steps = 0;
  } guess_error;
  for (int64_t step = 0; step < s.steps; ++step) {
    const int batch_size = s.batch_sequence.empty()
                             ? s.batch
                             : s.batch_sequence[static_cast<std::size_t>(step) %
                                                s.batch_sequence.size()];
    const auto indices = order.next_batch(cursor, batch_size);
    const auto batch = batch_of(*data.train, indices);
    // One peer's share of the batch (the speculative variants' own gradient).
    const auto local = std::min<std::size_t>(
      indices.size(), static_cast<std::size_t>(std::max(1, batch_size / s.peers)));
    const std::span<const int64_t> all(indices);
    if (variant == "fresh-split" ||
        (variant.starts_with("speculative") && variant != "speculative-shares" &&
         step < s.fresh_steps)) {
      // Fresh, with the gradient computed in the two calls the speculative variants make: the
      // same noise stream as theirs, so their ratio to this run is the guess's cost alone.
      // (Also the speculative variants' first --fresh-steps steps, which wait for the average.)
      trainer.accumulate(batch_of(*data.train, all.first(local)));
      if (local < indices.size())
        trainer.accumulate(batch_of(*data.train, all.subspan(local)));
      trainer.apply_gradient(trainer.take_mean_gradient());
      continue;
    }
    if (variant == "fresh-shares" || variant == "speculative-shares" ||
        variant == "speculative-oracle") {
      // The swarm as it runs: each of --peers computes its share of the batch, the speculative
      // one on the weights after a step with its own last share's gradient (each peer its own
      // guess, so the guesses' errors partly cancel in the mean); "fresh-shares" computes the
      // same shares in the same calls on the weights as they are (the same noise stream).
      const auto shares = static_cast<std::size_t>(std::max(1, s.peers));
      const bool fresh = variant == "fresh-shares" || step < s.fresh_steps;
      std::optional<shared_state_copy> before;
      if (!fresh && !pending_shares.empty())
        before = copy_shared_state(trainer, nullptr);
      std::vector<std::vector<float>> gradients;
      std::vector<double> share_samples;
      std::vector<torch::Tensor> guesses;  // each peer's weights after its own step
      for (std::size_t p = 0; p < shares; ++p) {
        const auto first = indices.size() * p / shares;
        const auto last = indices.size() * (p + 1) / shares;
        if (first == last)
          continue;
        if (before) {
          restore_shared_state(*before, trainer, nullptr);
          if (p < pending_shares.size()) {
            if (variant == "speculative-oracle") {
              trainer.apply_gradient(*pending);
            } else {
              const auto guess = scaled_guess(*pending, pending_shares[p], s.guess_scale,
                                              s.guess_center == "zero");
              const auto clip_as =
                s.guess_clip == "average" ? last_average_norm : std::nullopt;
              const double own_share = s.guess_moment == "own"     ? 1.0
                                       : s.guess_moment == "share" ? 1.0 / s.peers
                                                                   : 0.0;
              trainer.apply_guess(guess, clip_as, own_share);
            }
            guesses.push_back(trainer.parameters().values().detach().clone());
          }
        }
        trainer.accumulate(batch_of(*data.train, all.subspan(first, last - first)));
        gradients.push_back(trainer.take_mean_gradient());
        share_samples.push_back(static_cast<double>(last - first));
      }
      std::vector<float> mean(gradients.front().size(), 0.0f);
      for (std::size_t p = 0; p < gradients.size(); ++p) {
        const auto w = static_cast<float>(share_samples[p] / static_cast<double>(indices.size()));
        for (std::size_t k = 0; k < mean.size(); ++k)
          mean[k] += w * gradients[p][k];
      }
      if (fresh) {
        trainer.apply_gradient(mean);
        continue;
      }
      if (before) {
        restore_shared_state(*before, trainer, nullptr);
        const auto start = trainer.parameters().values().detach().clone();
        last_average_norm = trainer.apply_gradient(*pending).grad_norm;
        // How far the guesses are from the step the swarm takes, against that step's length.
        const auto now = trainer.parameters().values().detach();
        const double step_norm = (now - start).norm().item<double>();
        if (step_norm > 0 && !guesses.empty()) {
          auto mean_guess = torch::zeros_like(start);
          for (const auto& g : guesses) {
            guess_error.each += (g - now).norm().item<double>() / step_norm;
            mean_guess += g;
          }
          guess_error.guesses += static_cast<int64_t>(guesses.size());
          mean_guess /= static_cast<double>(guesses.size());
          guess_error.mean += (mean_guess - now).norm().item<double>() / step_norm;
          guess_error.along +=
            (mean_guess - start).dot(now - start).item<double>() / (step_norm * step_norm);
          ++guess_error.steps;
        }
      }
      pending = std::move(mean);
      pending_shares = std::move(gradients);
      continue;
    }
    if (variant.starts_with("speculative")) {
      // One peer of --peers: its own share of the batch is its local gradient, the whole
      // batch's mean the swarm's average. The next gradient is computed on the weights after a
      // step with the local gradient; then that step is undone and the average's applied.
      std::optional<shared_state_copy> before;
      if (pending_local) {
        before = copy_shared_state(trainer, nullptr);
        // "speculative-blend": the guess is half the own gradient, half the last average
        // applied (which every peer holds).
        if (variant == "speculative-blend" && last_average) {
          std::vector<float> guess(pending_local->size());
          for (size_t k = 0; k < guess.size(); ++k)
            guess[k] = 0.5f * (*pending_local)[k] + 0.5f * (*last_average)[k];
          trainer.apply_gradient(guess);
        } else if (variant == "speculative-shrunk") {
          // "speculative-shrunk": the own gradient shrunk towards AdamW's bias-corrected first
          // moment (the past averages' mean), weighted --own-weight : 1 - --own-weight.
          auto& adam = trainer.optimizer();
          const double t = static_cast<double>(std::max<int64_t>(adam.step_count(), 1));
          const auto moment =
            (adam.exp_avg() / (1.0 - std::pow(adam.options().beta1, t))).to(torch::kCPU);
          const auto* m = moment.data_ptr<float>();
          std::vector<float> guess(pending_local->size());
          const auto w = static_cast<float>(s.own_weight);
          for (size_t k = 0; k < guess.size(); ++k)
            guess[k] = w * (*pending_local)[k] + (1 - w) * m[k];
          trainer.apply_gradient(guess);
        } else {
          trainer.apply_gradient(*pending_local);
        }
      }
      // (The two calls draw their noise apart: the same distribution as fresh's stream, not the
      // same values; fresh-split draws it as these do.)
      trainer.accumulate(batch_of(*data.train, all.first(local)));
      auto local_gradient = trainer.mean_gradient();
      if (local < indices.size())
        trainer.accumulate(batch_of(*data.train, all.subspan(local)));
      auto gradient = trainer.take_mean_gradient();
      if (before) {
        restore_shared_state(*before, trainer, nullptr);
        trainer.apply_gradient(*pending);
        last_average = pending;
      }
      pending = std::move(gradient);
      pending_local = std::move(local_gradient);
      continue;
    }
    if (variant == "predicted") {
      // The flat buffer is a leaf that requires grad: shift and restore it outside autograd.
      const auto kept = weights.detach().clone();
      {
        torch::NoGradGuard no_grad;
        weights.add_(last_update);
      }
      trainer.accumulate(batch);
      torch::NoGradGuard no_grad;
      weights.copy_(kept);
    } else {
      trainer.accumulate(batch);
    }
    auto gradient = trainer.take_mean_gradient();
    if (variant == "fresh") {
      trainer.apply_gradient(gradient);
      continue;
    }
    if (pending) {
      torch::NoGradGuard no_grad;
      const auto before = weights.clone();
      trainer.apply_gradient(*pending);
      last_update = weights - before;
    }
    pending = std::move(gradient);
  }
  if (pending)
    trainer.apply_gradient(*pending);
  if (guess_error.steps > 0)
    std::printf("  (%s: a peer's guess is %.3f of the swarm's step away from it, their mean "
                "%.3f and %.3f as far along it, averaged over %lld steps)\n",
                variant.c_str(), guess_error.each / static_cast<double>(guess_error.guesses),
                guess_error.mean / static_cast<double>(guess_error.steps),
                guess_error.along / static_cast<double>(guess_error.steps),
                static_cast<long long>(guess_error.steps));
  validation_loss_options o;
  o.images = s.validation_images;
  return validation_loss(trainer.model(), *data.holdout, o);
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  CLI::App app{"Validation loss with gradients one update old against fresh ones"};
  app.add_option("--steps", s.steps, "optimizer steps")->capture_default_str();
  app.add_option("--batch", s.batch, "samples per step")->capture_default_str();
  app.add_option("--batch-sequence", s.batch_sequence,
                 "samples of each step instead, repeated (the epochs of a real swarm's run)")
    ->delimiter(',')
    ->check(CLI::Range(1, 1000000));
  app.add_option("--lr", s.lr, "AdamW learning rate")->capture_default_str();
  app.add_option("--warmup", s.warmup, "learning-rate warm-up steps")->capture_default_str();
  app.add_option("--validation-images", s.validation_images, "first N test images")
    ->capture_default_str();
  app.add_option("--variants", s.variants,
                 "fresh, fresh-split, stale, predicted, speculative, speculative-blend, "
                 "speculative-shrunk, fresh-shares, speculative-shares, speculative-oracle")
    ->delimiter(',')
    ->check(CLI::IsMember({"fresh", "fresh-split", "stale", "predicted", "speculative",
                           "speculative-blend", "speculative-shrunk", "fresh-shares",
                           "speculative-shares", "speculative-oracle"}));
  app.add_option("--peers", s.peers, "speculative: the swarm a peer's share of each batch is of")
    ->capture_default_str();
  app.add_option("--own-weight", s.own_weight,
                 "speculative-shrunk: the own gradient's weight in the guess (the rest: AdamW's "
                 "first moment)")
    ->capture_default_str();
  app.add_option("--grad-clip", s.grad_clip, "train.grad_clip (0: no clipping)")
    ->capture_default_str();
  app.add_option("--guess-clip", s.guess_clip,
                 "speculative-shares: train.grad_clip scales a peer's own gradient by the norm of "
                 "the last average (as averaging.step_ahead does) or by its own")
    ->capture_default_str()
    ->check(CLI::IsMember({"average", "own"}));
  app.add_option("--guess-scale", s.guess_scale,
                 "speculative-shares: each guess is the average plus this multiple of its own "
                 "gradient's distance from it (1: the own gradient, as the swarm guesses; 0: the "
                 "oracle): how the cost grows with the guesses' spread")
    ->capture_default_str();
  app.add_option("--guess-center", s.guess_center,
                 "speculative-shares: what --guess-scale scales the own gradient towards")
    ->capture_default_str()
    ->check(CLI::IsMember({"average", "zero"}));
  app.add_option("--guess-moment", s.guess_moment,
                 "speculative-shares: what AdamW's second moment takes in the guess's step: the "
                 "guess's square (own), its own running estimate (history), or 1/--peers of "
                 "the square and the rest of the estimate (share)")
    ->capture_default_str()
    ->check(CLI::IsMember({"own", "history", "share"}));
  app.add_option("--fresh-steps", s.fresh_steps,
                 "speculative: the first N steps wait for the average (no overlap), as a swarm "
                 "could during the learning rate's warm-up")
    ->capture_default_str();
  app.add_option("--seeds", s.seeds,
                 "runs of every variant, with run.seed from --first-seed on (initial weights, data "
                 "order, noise); the ratios are per seed, then averaged")
    ->capture_default_str()
    ->check(CLI::Range(1, 1000));
  app.add_option("--first-seed", s.first_seed, "the first run.seed of --seeds")
    ->capture_default_str()
    ->check(CLI::Range(1, 1000000));
  CLI11_PARSE(app, argc, argv);
  configure_torch_threads(0);
  const auto data = load_run_data(bench_config(s, 1));
  const std::string batches =
    s.batch_sequence.empty()
      ? std::to_string(s.batch)
      : std::to_string(s.batch_sequence.size()) + " sizes in turn (mean " +
          std::to_string(std::accumulate(s.batch_sequence.begin(), s.batch_sequence.end(), 0.0) /
                         static_cast<double>(s.batch_sequence.size())) +
          ")";
  std::printf("quickstart DiT, %lld steps of %s, lr %g, warm-up %lld; validation loss on %lld "
              "test images; %d seed(s)\n",
              static_cast<long long>(s.steps), batches.c_str(), s.lr,
              static_cast<long long>(s.warmup),
              static_cast<long long>(s.validation_images), s.seeds);
  std::fflush(stdout);
  // losses[seed][variant]
  std::vector<std::map<std::string, double>> losses(static_cast<std::size_t>(s.seeds));
  // On a worker thread: on the main thread OpenBLAS and OpenMP contend (torch_setup.hpp).
  run_on_worker_thread([&] {
    for (int seed = s.first_seed; seed < s.first_seed + s.seeds; ++seed) {
      const auto config = bench_config(s, seed);
      for (const auto& variant : s.variants) {
        const double loss = train_and_score(s, config, data, variant);
        losses[static_cast<std::size_t>(seed - s.first_seed)][variant] = loss;
        std::printf("  seed %d  %-18s %.5f\n", seed, variant.c_str(), loss);
        std::fflush(stdout);
      }
    }
  });
  // Each variant against fresh, and the speculative ones against fresh-split (the same noise
  // stream): mean, lowest and highest ratio over the seeds.
  const auto report = [&](const std::string& variant, const std::string& base) {
    double sum = 0, lowest = 1e30, highest = 0;
    for (const auto& by_variant : losses) {
      const double ratio = by_variant.at(variant) / by_variant.at(base);
      sum += ratio;
      lowest = std::min(lowest, ratio);
      highest = std::max(highest, ratio);
    }
    std::printf("%s / %s: %.4f (%.4f-%.4f over %d seeds; aim: at most 1.02)\n", variant.c_str(),
                base.c_str(), sum / s.seeds, lowest, highest, s.seeds);
  };
  const auto ran = [&](const std::string& v) {
    return std::find(s.variants.begin(), s.variants.end(), v) != s.variants.end();
  };
  for (const auto& variant : s.variants) {
    if (variant != "fresh" && ran("fresh"))
      report(variant, "fresh");
    if ((variant == "speculative-shares" || variant == "speculative-oracle") &&
        ran("fresh-shares"))
      report(variant, "fresh-shares");
    else if (variant.starts_with("speculative") && ran("fresh-split"))
      report(variant, "fresh-split");
  }
  return 0;
}
