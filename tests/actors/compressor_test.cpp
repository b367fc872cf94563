// The compressor actor: answers every job with its tag, several compressors code at once, and a
// hostile blob gets an error back without harming the compressor.
#include "actors/compressor.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <set>

#include "runtime/actor_system_setup.hpp"
#include "runtime/actor_system_shutdown.hpp"
#include "runtime/message_types.hpp"

namespace ddactor {
namespace {

using namespace std::chrono_literals;

compressor_result await_result(caf::scoped_actor& self) {
  compressor_result out;
  self->receive([&](compressor_result& r) { out = std::move(r); },
                caf::after(10s) >> [] { FAIL() << "no answer from the compressor"; });
  return out;
}

chunk_encode_job int8_job(size_t n, float value) {
  chunk_encode_job job;
  job.round_id = 3;
  job.part_length = n;
  job.values.assign(n, value);
  job.codec.name = "int8";
  return job;
}

TEST(compressor, answers_each_job_with_its_tag_and_survives_hostile_blobs) {
  ddactor_system_config cfg{{}, /*with_network=*/false};
  caf::actor_system system{cfg};
  detached_actor_guard guard{system, std::chrono::seconds(20)};
  caf::scoped_actor self{system};
  auto compressor = spawn_compressor(system);

  self->send(compressor, compressor_encode{41, int8_job(1000, 0.5f)});
  auto encoded = await_result(self);
  EXPECT_EQ(encoded.tag, 41u);
  ASSERT_TRUE(encoded.chunk.error.empty()) << encoded.chunk.error;

  auto hostile = encoded.chunk.blob;
  hostile.bytes.resize(hostile.bytes.size() / 2);
  self->send(compressor, compressor_decode{42, {hostile, 3, 0, 1000, {}, {}, 0, 0, false}});
  auto refused = await_result(self);
  EXPECT_EQ(refused.tag, 42u);
  EXPECT_FALSE(refused.chunk.error.empty());

  self->send(compressor,
             compressor_decode{43, {encoded.chunk.blob, 3, 0, 1000, {}, {}, 0, 0, false}});
  auto decoded = await_result(self);
  EXPECT_EQ(decoded.tag, 43u);
  ASSERT_TRUE(decoded.chunk.error.empty()) << decoded.chunk.error;
  ASSERT_EQ(decoded.chunk.values.size(), 1000u);
  EXPECT_NEAR(decoded.chunk.values[999], 0.5f, 0.01f);
  self->send_exit(compressor, caf::exit_reason::user_shutdown);
}

TEST(compressor, a_pool_codes_many_jobs_and_every_one_comes_back) {
  ddactor_system_config cfg{{}, /*with_network=*/false};
  caf::actor_system system{cfg};
  detached_actor_guard guard{system, std::chrono::seconds(20)};
  caf::scoped_actor self{system};
  std::vector<compressor_actor> pool{spawn_compressor(system), spawn_compressor(system)};
  constexpr uint64_t jobs = 40;
  for (uint64_t tag = 0; tag < jobs; ++tag)
    self->send(pool[tag % pool.size()], compressor_encode{tag, int8_job(4096, 1.0f + tag)});
  std::set<uint64_t> answered;
  for (uint64_t i = 0; i < jobs; ++i) {
    auto result = await_result(self);
    EXPECT_TRUE(result.chunk.error.empty());
    answered.insert(result.tag);
  }
  EXPECT_EQ(answered.size(), jobs);
  for (auto& c : pool)
    self->send_exit(c, caf::exit_reason::user_shutdown);
}

} // namespace
} // namespace ddactor
