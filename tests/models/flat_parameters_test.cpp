#include "models/flat_parameters.hpp"

#include <gtest/gtest.h>

#include <cmath>

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

// The step ahead's guess (one peer's share of the swarm's gradient): the second moment takes
// `own_share` of its square and the rest of its own bias-corrected estimate; the first moment
// and the rest of the step are AdamW's. With a share of 1, and on the first step (no estimate
// yet), it is step() exactly.
TEST(flat_adamw, a_guess_step_takes_its_share_of_the_square_into_the_second_moment) {
  torch::manual_seed(5);
  adamw_options o;
  o.weight_decay = 0.05;
  flat_adamw history(64, o);
  auto params = torch::randn({64});
  for (int step = 0; step < 4; ++step)
    history.step(params, torch::randn({64}), 1e-2);
  const auto guess = torch::randn({64}).mul_(3.0);  // noisier than the history
  const double lr = 1e-2, share = 0.25;
  const auto copy_of = [&](flat_adamw& from) {
    flat_adamw to(64, o);
    to.exp_avg().copy_(from.exp_avg());
    to.exp_avg_sq().copy_(from.exp_avg_sq());
    to.set_step_count(from.step_count());
    return to;
  };

  auto guessed = copy_of(history);
  auto guessed_params = params.clone();
  guessed.guess_step(guessed_params, guess, lr, share);
  // By hand: t = 5.
  const double t = 5;
  const auto v_hat = history.exp_avg_sq() / (1.0 - std::pow(o.beta2, t - 1));
  const auto v = o.beta2 * history.exp_avg_sq() +
                 (1.0 - o.beta2) * (share * guess * guess + (1.0 - share) * v_hat);
  const auto m = o.beta1 * history.exp_avg() + (1.0 - o.beta1) * guess;
  const double bias1 = 1.0 - std::pow(o.beta1, t), bias2 = 1.0 - std::pow(o.beta2, t);
  const auto expected = params * (1.0 - lr * o.weight_decay) -
                        lr / bias1 * m / ((v / bias2).sqrt() + o.eps);
  EXPECT_TRUE(torch::allclose(guessed.exp_avg_sq(), v, 1e-5, 1e-12));
  EXPECT_TRUE(torch::allclose(guessed.exp_avg(), m, 1e-6, 1e-9));
  EXPECT_TRUE(torch::allclose(guessed_params, expected, 1e-5, 1e-7));
  // Less of the noisy square: a smaller moment than step() gives, so a longer step.
  auto stepped = copy_of(history);
  auto stepped_params = params.clone();
  stepped.step(stepped_params, guess, lr);
  EXPECT_LT(guessed.exp_avg_sq().sum().item<double>(), stepped.exp_avg_sq().sum().item<double>());

  // A share of 1 is step().
  auto whole = copy_of(history);
  auto whole_params = params.clone();
  whole.guess_step(whole_params, guess, lr, 1.0);
  EXPECT_TRUE(torch::equal(whole_params, stepped_params));
  EXPECT_TRUE(torch::equal(whole.exp_avg_sq(), stepped.exp_avg_sq()));

  // The first step has no estimate: the square, as step() takes it.
  flat_adamw first_guess(64, o), first_step(64, o);
  auto a = params.clone(), b = params.clone();
  first_guess.guess_step(a, guess, lr, share);
  first_step.step(b, guess, lr);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_TRUE(torch::equal(first_guess.exp_avg_sq(), first_step.exp_avg_sq()));
}

// Sparse catch-up: a gradient without zeros is an ordinary AdamW step.
TEST(flat_adamw, catch_up_with_dense_gradients_is_plain_adamw) {
  torch::manual_seed(3);
  adamw_options plain_options;
  plain_options.weight_decay = 0.05;
  auto catch_up_options = plain_options;
  catch_up_options.sparse_catch_up = true;
  flat_adamw plain(64, plain_options);
  flat_adamw catch_up(64, catch_up_options);
  auto a = torch::randn({64});
  auto b = a.clone();
  for (int step = 0; step < 10; ++step) {
    auto grads = torch::randn({64}).add_(torch::sign(torch::randn({64})).mul_(0.1));
    plain.step(a, grads, 1e-2);
    catch_up.step(b, grads, 1e-2);
  }
  EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(plain.exp_avg_sq(), catch_up.exp_avg_sq(), 1e-5, 1e-9));
  EXPECT_EQ(catch_up.pending_rounds().abs().sum().item<float>(), 0.0f);
}

// A constant gradient g sent as one sum c * g after c - 1 zeros (what top-k with error feedback
// does) moves the value as far as c rounds of g do with dense averaging: c learning rates (Adam's
// bias-corrected step is exactly 1 per round for a constant gradient). Plain AdamW moves it less
// than one learning rate: it reads c * g as one huge gradient.
TEST(flat_adamw, catch_up_makes_a_delayed_sum_move_as_far_as_the_rounds_it_stands_for) {
  constexpr int rounds = 16;
  constexpr double lr = 1e-2;
  const float g = 0.3f;
  adamw_options options;
  auto dense_params = torch::zeros({1});
  flat_adamw dense(1, options);
  for (int i = 0; i < rounds; ++i)
    dense.step(dense_params, torch::full({1}, g), lr);

  auto run_sparse = [&](bool catch_up) {
    auto o = options;
    o.sparse_catch_up = catch_up;
    flat_adamw opt(1, o);
    auto params = torch::zeros({1});
    for (int i = 0; i < rounds - 1; ++i)
      opt.step(params, torch::zeros({1}), lr);
    if (catch_up) {
      EXPECT_EQ(params.item<float>(), 0.0f) << "a value not sent yet waits";
      EXPECT_EQ(opt.exp_avg().item<float>(), 0.0f);
      EXPECT_EQ(opt.pending_rounds().item<float>(), rounds - 1);
    }
    opt.step(params, torch::full({1}, rounds * g), lr);
    if (catch_up) {
      EXPECT_EQ(opt.pending_rounds().item<float>(), 0.0f);
    }
    return params.item<float>();
  };
  const float dense_move = -dense_params.item<float>();
  EXPECT_NEAR(dense_move, rounds * lr, 1e-4);
  EXPECT_NEAR(-run_sparse(true), dense_move, 1e-4);
  EXPECT_LT(-run_sparse(false), lr);
}

// Weight decay is not a gradient: it applies every round, sent or not.
TEST(flat_adamw, catch_up_still_decays_weights_that_wait) {
  adamw_options o;
  o.weight_decay = 0.1;
  o.sparse_catch_up = true;
  flat_adamw opt(2, o);
  auto params = torch::ones({2});
  opt.step(params, torch::zeros({2}), 0.5);
  EXPECT_FLOAT_EQ(params[0].item<float>(), 0.95f);
  EXPECT_FLOAT_EQ(params[1].item<float>(), 0.95f);
}

} // namespace
} // namespace ddactor
