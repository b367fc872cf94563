// The chunk jobs a compressor runs: encode (with what receivers will decode and top-k's
// leftover), decode of hostile blobs; failures come back as errors, never as exceptions.
#include "runtime/allreduce/chunk_coding.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

namespace ddactor {
namespace {

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> out(n);
  for (auto& v : out)
    v = normal(rng);
  return out;
}

chunk_encode_job job_for(std::vector<float> values, const std::string& codec) {
  chunk_encode_job job;
  job.round_id = 7;
  job.part_index = 1;
  job.offset = 100;
  job.part_length = 1000;
  job.values = std::move(values);
  job.codec.name = codec;
  job.codec.settings.topk_fraction = 0.1;
  return job;
}

TEST(chunk_jobs, topk_returns_what_receivers_read_and_exactly_what_it_dropped) {
  auto input = random_values(300, 1);
  auto job = job_for(input, "topk");
  job.decode_back = true;
  job.error_feedback = true;
  auto out = run_chunk_job(job);
  ASSERT_TRUE(out.error.empty()) << out.error;
  ASSERT_EQ(out.values.size(), input.size());
  ASSERT_EQ(out.leftover.size(), input.size());
  size_t kept = 0;
  for (size_t i = 0; i < input.size(); ++i) {
    EXPECT_EQ(out.values[i] + out.leftover[i], input[i]);
    kept += out.values[i] != 0 ? 1 : 0;
  }
  EXPECT_EQ(kept, 30u);
  auto received = run_chunk_job(chunk_decode_job{out.blob, 7, 1, 1000, {}, {}, 0, 0, false});
  ASSERT_TRUE(received.error.empty()) << received.error;
  EXPECT_EQ(received.values, out.values);
}

TEST(chunk_jobs, error_feedback_through_the_leftover_loses_nothing_over_many_rounds) {
  // What a round does with top-k: add the residual, encode, keep the leftover as the residual.
  const size_t n = 1000;
  const int rounds = 2000;
  const auto x = random_values(n, 4);
  std::vector<float> residual(n, 0.0f);
  std::vector<double> sum(n, 0.0);
  double error_after_200 = 0.0;
  for (int round = 1; round <= rounds; ++round) {
    std::vector<float> values(n);
    for (size_t i = 0; i < n; ++i)
      values[i] = x[i] + residual[i];
    auto job = job_for(values, "topk");
    job.part_length = n;
    job.offset = 0;
    job.codec.settings.topk_fraction = 0.01;
    job.decode_back = true;
    job.error_feedback = true;
    auto out = run_chunk_job(job);
    ASSERT_TRUE(out.error.empty()) << out.error;
    residual = out.leftover;
    for (size_t i = 0; i < n; ++i)
      sum[i] += out.values[i];
    if (round == 200 || round == rounds) {
      // Conservation: sent + residual = rounds * input, up to float accumulation error.
      double worst = 0.0, mean_error = 0.0;
      for (size_t i = 0; i < n; ++i) {
        worst = std::max(worst, std::fabs(sum[i] + residual[i] - static_cast<double>(round) * x[i]));
        mean_error += std::pow(sum[i] / round - x[i], 2.0);
      }
      EXPECT_LT(worst, 1e-4 * round) << round;
      mean_error = std::sqrt(mean_error / n);
      if (round == 200)
        error_after_200 = mean_error;
      else
        EXPECT_LT(mean_error, error_after_200 / 5.0);  // the average converges to the input
    }
  }
}

TEST(chunk_jobs, without_decode_back_only_the_blob_comes_back) {
  auto out = run_chunk_job(job_for(random_values(64, 2), "int8"));
  ASSERT_TRUE(out.error.empty()) << out.error;
  EXPECT_TRUE(out.values.empty());
  EXPECT_TRUE(out.leftover.empty());
  EXPECT_FALSE(out.blob.bytes.empty());
}

TEST(chunk_jobs, non_finite_input_is_an_error_not_an_exception) {
  auto values = random_values(64, 3);
  values[5] = std::numeric_limits<float>::infinity();
  auto out = run_chunk_job(job_for(values, "int8"));
  EXPECT_FALSE(out.error.empty());
  EXPECT_TRUE(out.blob.bytes.empty());
}

TEST(chunk_jobs, a_tampered_or_misaddressed_blob_is_refused_with_its_reason) {
  auto good = run_chunk_job(job_for(random_values(64, 4), "fp16"));
  ASSERT_TRUE(good.error.empty());
  auto tampered = good.blob;
  tampered.bytes[tampered.bytes.size() / 2] ^= 0x5a;
  auto refused = run_chunk_job(chunk_decode_job{tampered, 7, 1, 1000, {}, {}, 0, 0, false});
  EXPECT_FALSE(refused.error.empty());
  EXPECT_TRUE(refused.values.empty());
  EXPECT_FALSE(
    run_chunk_job(chunk_decode_job{good.blob, 8, 1, 1000, {}, {}, 0, 0, false}).error.empty())
    << "another round";
  EXPECT_FALSE(
    run_chunk_job(chunk_decode_job{good.blob, 7, 1, 120, {}, {}, 0, 0, false}).error.empty())
    << "past the end of the part";
}

TEST(chunk_jobs, a_raw_chunk_is_read_with_its_checksum_and_finiteness_checked) {
  const auto values = random_values(5000, 5); // past one 16 KB block
  const auto blob = make_float32_blob(7, 1, 100, values);
  auto read = run_chunk_job(chunk_decode_job{blob, 7, 1, 6000, {}, {}, 0, 0, false});
  ASSERT_TRUE(read.error.empty()) << read.error;
  EXPECT_EQ(read.values, values);

  auto tampered = blob;
  tampered.bytes[4 * 4500] ^= 0x01;
  auto refused = run_chunk_job(chunk_decode_job{tampered, 7, 1, 6000, {}, {}, 0, 0, false});
  EXPECT_NE(refused.error.find("checksum mismatch"), std::string::npos) << refused.error;
  EXPECT_TRUE(refused.values.empty());

  auto with_nan = values;
  with_nan[4999] = std::numeric_limits<float>::quiet_NaN();
  auto nan_blob = make_float32_blob(7, 1, 100, with_nan);
  auto nan_read = run_chunk_job(chunk_decode_job{nan_blob, 7, 1, 6000, {}, {}, 0, 0, false});
  EXPECT_NE(nan_read.error.find("non-finite"), std::string::npos) << nan_read.error;

  // The header is checked before the payload is read.
  auto elsewhere = run_chunk_job(chunk_decode_job{blob, 7, 2, 6000, {}, {}, 0, 0, false});
  EXPECT_NE(elsewhere.error.find("part 1, expected 2"), std::string::npos) << elsewhere.error;
}

} // namespace
} // namespace ddactor
