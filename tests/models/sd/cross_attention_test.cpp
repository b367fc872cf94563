// Attention computed a chunk of queries at a time equals attention over all queries, in the
// forward pass and in its gradients; upcasting keeps half-precision attention near float32.
#include "models/sd/cross_attention.hpp"

#include <gtest/gtest.h>

namespace ddactor {
namespace {

double max_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

TEST(cross_attention, query_chunks_give_the_full_result_and_gradients) {
  torch::manual_seed(0);
  const auto q0 = torch::randn({2, 3, 50, 16});
  const auto k0 = torch::randn({2, 3, 77, 16});
  const auto v0 = torch::randn({2, 3, 77, 16});
  const auto weight = torch::randn({2, 3, 50, 16});

  auto run = [&](int64_t chunk) {
    auto q = q0.clone().requires_grad_(true);
    auto k = k0.clone().requires_grad_(true);
    auto v = v0.clone().requires_grad_(true);
    attention_computation how;
    how.scale = 0.25;
    how.query_chunk_size = chunk;
    auto out = scaled_dot_product_attention(q, k, v, how);
    (out * weight).sum().backward();
    return std::vector<torch::Tensor>{out.detach(), q.grad(), k.grad(), v.grad()};
  };
  const auto full = run(0);
  for (int64_t chunk : {1, 7, 16, 49, 50, 64}) {
    const auto chunked = run(chunk);
    for (size_t i = 0; i < full.size(); ++i)
      EXPECT_LE(max_difference(chunked[i], full[i]), 1e-5)
        << "chunk " << chunk << ", tensor " << i << " (output, dq, dk, dv)";
  }
}

TEST(cross_attention, chunked_module_equals_full_module_for_self_and_cross_attention) {
  torch::manual_seed(1);
  cross_attention_options options;
  options.query_dim = 32;
  options.context_dim = 24;
  options.heads = 4;
  options.head_dim = 8;
  cross_attention attention(options);
  const auto tokens = torch::randn({2, 37, 32});
  const auto context = torch::randn({2, 77, 24});
  torch::NoGradGuard no_grad;
  const auto full = attention(tokens, context);
  attention->query_chunk_size = 10;
  EXPECT_LE(max_difference(attention(tokens, context), full), 1e-6);
  EXPECT_EQ(full.sizes(), tokens.sizes());
  EXPECT_THROW(attention(tokens), c10::Error);  // keys expect 24 wide inputs, tokens are 32
}

TEST(cross_attention, feature_maps_are_attended_as_tokens_with_norm_and_residual) {
  torch::manual_seed(2);
  cross_attention_options options;
  options.query_dim = 16;
  options.heads = 1;
  options.head_dim = 16;
  options.qkv_bias = true;
  options.group_norm_groups = 4;
  options.group_norm_eps = 1e-6;
  options.residual_connection = true;
  cross_attention attention(options);
  const auto map = torch::randn({2, 16, 5, 3});
  torch::NoGradGuard no_grad;
  // The same computation written out on (N, H*W, C) tokens.
  auto tokens = attention->group_norm(map.flatten(2)).transpose(1, 2);
  auto q = attention->to_q(tokens), k = attention->to_k(tokens), v = attention->to_v(tokens);
  auto weights = torch::softmax(torch::matmul(q, k.transpose(1, 2)) / 4.0, -1);
  auto expected = attention->out_projection(torch::matmul(weights, v));
  expected = expected.transpose(1, 2).reshape({2, 16, 5, 3}) + map;
  EXPECT_LE(max_difference(attention(map), expected), 1e-5);
}

TEST(cross_attention, upcast_attention_keeps_bfloat16_close_to_float32) {
  torch::manual_seed(3);
  const auto q = torch::randn({1, 2, 64, 32}) * 3;
  const auto k = torch::randn({1, 2, 64, 32}) * 3;
  const auto v = torch::randn({1, 2, 64, 32});
  attention_computation how;
  how.scale = 1.0 / std::sqrt(32.0);
  const auto reference = scaled_dot_product_attention(q, k, v, how);
  how.upcast_attention = true;
  how.upcast_softmax = true;
  const auto upcast = scaled_dot_product_attention(q.to(torch::kBFloat16), k.to(torch::kBFloat16),
                                                   v.to(torch::kBFloat16), how);
  EXPECT_EQ(upcast.scalar_type(), torch::kBFloat16);
  // bfloat16 keeps 8 significant bits: inputs, probabilities and outputs are rounded to them.
  EXPECT_LE(max_difference(upcast.to(torch::kFloat32), reference), 0.1);
}

} // namespace
} // namespace ddactor
