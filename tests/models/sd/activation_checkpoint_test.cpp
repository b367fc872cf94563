// Activation checkpointing: the same outputs and gradients as a plain forward pass, for inputs
// and weights, through torch::autograd::grad as well as backward(), with dropout drawing the same
// mask in the recomputation.
#include "models/sd/activation_checkpoint.hpp"

#include <gtest/gtest.h>

#include "models/sd/resnet_block_2d.hpp"

namespace ddactor {
namespace {

struct two_layer_segment {
  torch::nn::Linear first{8, 16};
  torch::nn::Linear second{16, 8};

  torch::Tensor operator()(const std::vector<torch::Tensor>& in) {
    auto h = torch::gelu(first(in[0]));
    if (in[1].defined())
      h = h * in[1];
    return second(h).tanh();
  }
  std::vector<torch::Tensor> weights() {
    auto out = first->parameters();
    auto more = second->parameters();
    out.insert(out.end(), more.begin(), more.end());
    return out;
  }
};

TEST(activation_checkpoint, gradients_of_inputs_and_weights_equal_the_plain_ones) {
  torch::manual_seed(0);
  two_layer_segment segment;
  const auto x0 = torch::randn({4, 8});
  const auto gate0 = torch::rand({4, 16});
  const auto target = torch::randn({4, 8});

  auto run = [&](bool checkpointed) {
    for (auto& w : segment.weights())
      w.mutable_grad() = torch::Tensor();
    auto x = x0.clone().requires_grad_(true);
    auto gate = gate0.clone().requires_grad_(true);
    auto out = checkpointed
                 ? run_checkpointed(std::ref(segment), {x, gate}, segment.weights())
                 : segment({x, gate});
    (out - target).pow(2).sum().backward();
    std::vector<torch::Tensor> grads{out.detach(), x.grad(), gate.grad()};
    for (auto& w : segment.weights())
      grads.push_back(w.grad().clone());
    return grads;
  };
  const auto plain = run(false);
  const auto checkpointed = run(true);
  ASSERT_EQ(plain.size(), checkpointed.size());
  for (size_t i = 0; i < plain.size(); ++i)
    EXPECT_TRUE(torch::allclose(plain[i], checkpointed[i], 1e-6, 1e-7)) << "tensor " << i;
}

TEST(activation_checkpoint, weight_gradients_reach_autograd_grad_and_undefined_inputs_pass) {
  torch::manual_seed(1);
  two_layer_segment segment;
  const auto x = torch::randn({3, 8});
  auto loss = [&](bool checkpointed) {
    auto out = checkpointed ? run_checkpointed(std::ref(segment), {x, torch::Tensor()},
                                               segment.weights())
                            : segment({x, torch::Tensor()});
    return out.sum();
  };
  const auto plain = torch::autograd::grad({loss(false)}, segment.weights());
  const auto checkpointed = torch::autograd::grad({loss(true)}, segment.weights());
  for (size_t i = 0; i < plain.size(); ++i)
    EXPECT_TRUE(torch::allclose(plain[i], checkpointed[i], 1e-6, 1e-7)) << "weight " << i;
}

TEST(activation_checkpoint, without_gradients_it_is_a_plain_call) {
  two_layer_segment segment;
  torch::NoGradGuard no_grad;
  auto out = run_checkpointed(std::ref(segment), {torch::randn({2, 8}), torch::Tensor()},
                              segment.weights());
  EXPECT_FALSE(out.requires_grad());
}

TEST(activation_checkpoint, dropout_draws_the_same_mask_when_recomputed) {
  resnet_block_2d_options options;
  options.in_channels = 8;
  options.out_channels = 16;
  options.time_embedding_channels = 12;
  options.groups = 4;
  options.dropout = 0.5;
  torch::manual_seed(2);
  resnet_block_2d block(options);
  block->train();
  const auto x0 = torch::randn({2, 8, 6, 6});
  const auto time0 = torch::randn({2, 12});

  auto run = [&](bool checkpointed) {
    block->checkpoint_activations = checkpointed;
    block->zero_grad();
    auto x = x0.clone().requires_grad_(true);
    auto time = time0.clone().requires_grad_(true);
    torch::manual_seed(3);  // the same dropout mask for both runs
    auto out = block->forward(x, time);
    out.pow(2).mean().backward();
    std::vector<torch::Tensor> grads{out.detach(), x.grad(), time.grad()};
    for (const auto& p : block->parameters())
      grads.push_back(p.grad().clone());
    return grads;
  };
  const auto plain = run(false);
  const auto checkpointed = run(true);
  for (size_t i = 0; i < plain.size(); ++i)
    EXPECT_TRUE(torch::allclose(plain[i], checkpointed[i], 1e-5, 1e-7)) << "tensor " << i;
}

} // namespace
} // namespace ddactor
