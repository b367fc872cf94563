#pragma once
// The validation loss of a DiT: the mean flow-matching loss over the first N images of a held-out
// set, with times t and noise drawn once from a fixed seed. Everything random is a function of
// (seed, N, image shape) only -- not of the batch size nor of any global random state -- so two
// models evaluated with the same options see exactly the same x_t and targets, and the
// difference of their losses is the difference of the models (used to compare a swarm against a
// single peer, or one codec against another).
//
// Conditioning is the data's own (labels, or captions), never dropped: the loss measures the
// conditional model the sampler uses.

#include <torch/torch.h>

#include <cstdint>
#include <stdexcept>

#include "models/dit.hpp"
#include "runtime/image_dataset.hpp"

namespace ddactor {

/// The data does not fit the model, or the options are impossible (the message says which).
class validation_loss_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct validation_loss_options {
  /// The first this many images of the set (all of them when the set is smaller).
  int64_t images = 1000;
  /// Images per forward pass; changes the speed, not the result (beyond float rounding).
  int64_t batch_size = 250;
  /// Seeds the noise and the times.
  uint64_t seed = 0;
  /// t = sigmoid(mean + std * n), n ~ N(0, 1), as in training (flow_matching.hpp).
  double logit_normal_mean = 0.0;
  double logit_normal_std = 1.0;
};

/// Mean over the images of the per-image mean squared error between the model's velocity and
/// eps - x0 at x_t = (1 - t) x0 + t eps. Runs without gradients and in eval mode (restored
/// afterwards). Throws validation_loss_error when the set is empty, its image shape or channels
/// differ from the model's, a class-conditioned model meets a set without labels (or a
/// caption-conditioned one a set without captions), or images / batch_size are not positive.
double validation_loss(dit& model, const image_dataset& data,
                       const validation_loss_options& options = {});

} // namespace ddactor
