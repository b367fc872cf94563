#include "runtime/allreduce/centered_clip.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "runtime/allreduce/weighted_reduction.hpp"

namespace ddactor {
namespace {

// n honest inputs around 1.0 (noise 0.01) plus, optionally, one hostile input.
std::vector<std::vector<float>> inputs_with(std::size_t honest, std::size_t length,
                                            const std::vector<float>* hostile) {
  std::mt19937 random(5);
  std::normal_distribution<float> noise(0.0f, 0.01f);
  std::vector<std::vector<float>> out;
  for (std::size_t i = 0; i < honest; ++i) {
    std::vector<float> x(length);
    for (auto& v : x)
      v = 1.0f + noise(random);
    out.push_back(x);
  }
  if (hostile)
    out.push_back(*hostile);
  return out;
}

double distance_to_one(const std::vector<float>& v) {
  double sum = 0;
  for (float x : v)
    sum += (x - 1.0) * (x - 1.0);
  return std::sqrt(sum);
}

std::vector<float> mean_of(const std::vector<std::vector<float>>& xs) {
  std::vector<float> m(xs[0].size());
  for (std::size_t e = 0; e < m.size(); ++e) {
    double s = 0;
    for (const auto& x : xs)
      s += x[e];
    m[e] = static_cast<float>(s / xs.size());
  }
  return m;
}

std::vector<float> clip_of(const std::vector<std::vector<float>>& xs, aggregation_settings s = {
                             aggregation_settings::kind::centered_clip, 0, 3}) {
  std::vector<std::span<const float>> spans(xs.begin(), xs.end());
  std::vector<double> weights(xs.size(), 1.0);
  return centered_clip(spans, weights, s);
}

TEST(centered_clip, one_hostile_input_of_five_barely_moves_it_and_the_mean_far) {
  for (float scale : {-100.0f, 1e6f, -1.0f}) {
    std::vector<float> hostile(256, scale);
    auto xs = inputs_with(4, 256, &hostile);
    const double mean_error = distance_to_one(mean_of(xs));
    const double clip_error = distance_to_one(clip_of(xs));
    EXPECT_LT(clip_error, 0.2) << scale;
    EXPECT_GT(mean_error, 10 * clip_error) << scale;
  }
}

TEST(centered_clip, without_a_hostile_input_it_is_close_to_the_mean) {
  auto xs = inputs_with(5, 256, nullptr);
  auto clip = clip_of(xs);
  auto mean = mean_of(xs);
  double diff = 0;
  for (std::size_t e = 0; e < mean.size(); ++e)
    diff += std::abs(clip[e] - mean[e]);
  EXPECT_LT(diff / mean.size(), 0.01);
  // With a radius larger than every distance, one step from the median reaches the mean.
  auto exact = clip_of(xs, {aggregation_settings::kind::centered_clip, 1e9, 1});
  for (std::size_t e = 0; e < mean.size(); ++e)
    EXPECT_NEAR(exact[e], mean[e], 1e-6);
}

TEST(centered_clip, the_reducer_gives_the_same_bits_whatever_the_arrival_order) {
  std::vector<float> hostile(64, -50.0f);
  auto xs = inputs_with(3, 64, &hostile);
  aggregation_settings clip{aggregation_settings::kind::centered_clip, 0, 3};
  part_reducer forward(64, xs.size(), clip), backward(64, xs.size(), clip);
  for (std::size_t j = 0; j < xs.size(); ++j) {
    forward.accept_or_throw(j, 0, xs[j], 1.0 + j);
    const std::size_t k = xs.size() - 1 - j;
    backward.accept_or_throw(k, 32, std::span(xs[k]).subspan(32), 1.0 + k);
    backward.accept_or_throw(k, 0, std::span(xs[k]).first(32), 1.0 + k);
  }
  EXPECT_EQ(forward.average_of_range(0, 64), backward.average_of_range(0, 64));
  EXPECT_EQ(forward.finish().values, backward.finish().values);
  EXPECT_LT(distance_to_one(forward.finish().values), 0.5);
}

} // namespace
} // namespace ddactor
