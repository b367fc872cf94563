#pragma once
// How close a peer's step ahead (averaging.step_ahead) came to the swarm's step, measured on an
// evenly strided sample of the flat weights (at most `sample_size` of them: a few hundred
// kilobytes however large the model, the same coordinates every round):
// - along: the guessed step projected on the swarm's, as a fraction of it (1: as far);
// - off: the distance from the guessed weights to the swarm's, in swarm steps (0: exact).
// In one process (ddactor_staleness_bench, 4 peers, epochs of 384) guesses 1.04 along and 0.56
// off cost 1% validation loss; no guess (gradients one update old: 0 along, 1 off) 1.40x.
// Not thread-safe: the trainer's actor owns it.
#include <torch/torch.h>

#include <cstdint>
#include <optional>

namespace ddactor {

struct guess_score {
  double along = 0;
  double off = 0;
};

class step_ahead_probe {
public:
  static constexpr int64_t sample_size = 65536;

  /// Before the step ahead: the flat weights it starts from.
  void take_start(const torch::Tensor& weights);
  /// After it: the guessed weights (the same layout).
  void take_guess(const torch::Tensor& weights);
  /// The weights after the swarm's step: the score of the guess taken since take_start, or
  /// nullopt where none was taken or the swarm's step is zero. Either way the guess is done.
  std::optional<guess_score> score(const torch::Tensor& weights);
  /// The round ended without the swarm's step (failed, missed): nothing to score.
  void drop();
  /// The means of every score so far (`along` and `off`) and how many there were.
  struct summary {
    int64_t scored = 0;
    double along = 0;
    double off = 0;
  };
  summary means() const;

private:
  torch::Tensor sampled(const torch::Tensor& weights);

  torch::Tensor indices_;     // the sampled coordinates, on the weights' device
  torch::Tensor start_;       // float64 samples on the host
  torch::Tensor guess_step_;  // guessed weights - start
  summary totals_;            // sums of the scores, for means()
};

} // namespace ddactor
