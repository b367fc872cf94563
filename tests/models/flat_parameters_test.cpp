#include "models/flat_parameters.hpp"

#include <gtest/gtest.h>

#include "models/adamw.hpp"

namespace ddactor {
namespace {

struct two_layer_impl : torch::nn::Module {
  two_layer_impl()
    : a(register_module("a", torch::nn::Linear(3, 4))),
      b(register_module("b", torch::nn::Linear(4, 2))) {}
  torch::Tensor forward(const torch::Tensor& x) { return b(torch::tanh(a(x))); }
  torch::nn::Linear a, b;
};
TORCH_MODULE_IMPL(two_layer, two_layer_impl);

TEST(flat_parameters, parameters_become_views_of_one_buffer) {
  torch::manual_seed(0);
  two_layer m;
  auto before = m->a->weight.clone();
  flat_parameters flat(*m);
  EXPECT_EQ(flat.size(), 3 * 4 + 4 + 4 * 2 + 2);
  EXPECT_TRUE(torch::equal(m->a->weight, before));
  flat.values().zero_();
  EXPECT_EQ(m->a->weight.abs().sum().item<float>(), 0.0f);
  ASSERT_EQ(flat.entries().size(), 4u);
  EXPECT_EQ(flat.entries()[0].name, "a.weight");
}

TEST(flat_parameters, backward_accumulates_into_the_flat_gradient) {
  torch::manual_seed(1);
  two_layer m;
  two_layer reference;
  {
    torch::NoGradGuard g;
    for (size_t i = 0; i < m->parameters().size(); ++i)
      reference->parameters()[i].copy_(m->parameters()[i]);
  }
  flat_parameters flat(*m);
  auto x = torch::randn({5, 3});
  for (int i = 0; i < 2; ++i) {
    m->forward(x).sum().backward();
    reference->forward(x).sum().backward();
  }
  EXPECT_TRUE(torch::allclose(flat.view_of(flat.gradients(), flat.entries()[2]),
                              reference->b->weight.grad()));
  EXPECT_GT(flat.gradients().abs().sum().item<float>(), 0.0f);
  flat.zero_gradients();
  EXPECT_EQ(m->a->weight.grad().abs().sum().item<float>(), 0.0f);
  m->forward(x).sum().backward();
  EXPECT_TRUE(torch::allclose(flat.view_of(flat.gradients(), flat.entries()[0]),
                              reference->a->weight.grad() / 2));
}

TEST(flat_adamw, matches_libtorch_adamw) {
  torch::manual_seed(2);
  two_layer m;
  two_layer reference;
  {
    torch::NoGradGuard g;
    for (size_t i = 0; i < m->parameters().size(); ++i)
      reference->parameters()[i].copy_(m->parameters()[i]);
  }
  flat_parameters flat(*m);
  adamw_options o;
  o.weight_decay = 0.05;
  flat_adamw opt(flat.size(), o);
  torch::optim::AdamW ref_opt(reference->parameters(),
                              torch::optim::AdamWOptions(1e-2).weight_decay(0.05));
  for (int step = 0; step < 20; ++step) {
    auto x = torch::randn({8, 3});
    flat.zero_gradients();
    m->forward(x).pow(2).mean().backward();
    auto values = flat.values();
    opt.step(values, flat.gradients(), 1e-2);
    ref_opt.zero_grad();
    reference->forward(x).pow(2).mean().backward();
    ref_opt.step();
  }
  for (size_t i = 0; i < m->parameters().size(); ++i)
    EXPECT_TRUE(torch::allclose(m->parameters()[i], reference->parameters()[i], 1e-5, 1e-6));
  EXPECT_EQ(opt.step_count(), 20);
}

} // namespace
} // namespace ddactor
