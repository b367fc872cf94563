// Tests of the state transfer rules: chunking covers every byte once, manifests and chunks from
// the network are refused for every kind of lie (sizes, counts, digest, index, checksum), and an
// assembly filled in any order gives back the original bytes.
#include "runtime/state_transfer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <random>

#include "runtime/tensor_blob.hpp"

namespace ddactor {
namespace {

std::vector<char> random_bytes(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<char> bytes(size);
  for (auto& b : bytes)
    b = static_cast<char>(rng());
  return bytes;
}

state_chunk make_chunk(const std::vector<char>& state, const state_manifest& m, uint64_t index) {
  const auto range = chunk_range(m, index);
  state_chunk chunk;
  chunk.digest = m.digest;
  chunk.index = index;
  chunk.bytes.assign(state.begin() + static_cast<std::ptrdiff_t>(range.offset),
                     state.begin() + static_cast<std::ptrdiff_t>(range.offset + range.size));
  chunk.checksum = state_chunk_checksum(m.digest, index, chunk.bytes);
  return chunk;
}

struct chunking_case {
  size_t total;
  uint64_t chunk;
  uint64_t expected_count;
};

class state_chunking : public ::testing::TestWithParam<chunking_case> {};

TEST_P(state_chunking, ranges_cover_every_byte_once) {
  const auto c = GetParam();
  const auto state = random_bytes(c.total, c.total + c.chunk);
  const auto m = make_state_manifest(state, 7, "swarm", c.chunk);
  EXPECT_EQ(m.chunk_count, c.expected_count);
  EXPECT_EQ(m.total_bytes, c.total);
  EXPECT_EQ(m.digest, blob_checksum(state));
  EXPECT_EQ(m.epoch, 7);
  EXPECT_EQ(m.swarm_id, "swarm");
  EXPECT_FALSE(validate_state_manifest(m, {}));
  uint64_t next_offset = 0;
  for (uint64_t i = 0; i < m.chunk_count; ++i) {
    const auto r = chunk_range(m, i);
    EXPECT_EQ(r.offset, next_offset);
    EXPECT_GT(r.size, 0u);
    EXPECT_LE(r.size, c.chunk);
    next_offset += r.size;
  }
  EXPECT_EQ(next_offset, c.total);
}

INSTANTIATE_TEST_SUITE_P(sizes, state_chunking,
                         ::testing::Values(chunking_case{0, 4, 0}, chunking_case{1, 4, 1},
                                           chunking_case{4, 4, 1}, chunking_case{5, 4, 2},
                                           chunking_case{8, 4, 2}, chunking_case{1000, 1, 1000},
                                           chunking_case{1000, 7, 143},
                                           chunking_case{1000, 4096, 1},
                                           chunking_case{65536, 4096, 16},
                                           chunking_case{65537, 4096, 17}));

TEST(state_chunking, zero_chunk_size_is_refused) {
  std::vector<char> state(10);
  EXPECT_THROW(make_state_manifest(state, 0, "s", 0), std::invalid_argument);
  EXPECT_EQ(state_chunk_count(10, 0), 0u);
  EXPECT_EQ(state_chunk_count(std::numeric_limits<uint64_t>::max(), 1),
            std::numeric_limits<uint64_t>::max());
}

TEST(state_manifest_validation, refuses_every_inconsistent_claim) {
  state_limits limits;
  limits.max_total_bytes = 1 << 20;
  limits.max_chunk_bytes = 1 << 16;
  state_manifest good{"s", 3, 100'000, 4096, 25, 42};
  ASSERT_FALSE(validate_state_manifest(good, limits));

  auto with = [&](auto change) {
    auto m = good;
    change(m);
    return validate_state_manifest(m, limits);
  };
  EXPECT_TRUE(with([](state_manifest& m) { m.chunk_bytes = 0; }));
  EXPECT_TRUE(with([](state_manifest& m) { m.chunk_bytes = (1 << 16) + 1; }));
  EXPECT_TRUE(with([](state_manifest& m) { m.total_bytes = (1 << 20) + 1; }));
  EXPECT_TRUE(with([](state_manifest& m) { m.total_bytes = std::numeric_limits<uint64_t>::max(); }));
  EXPECT_TRUE(with([](state_manifest& m) { m.chunk_count = 24; }));
  EXPECT_TRUE(with([](state_manifest& m) { m.chunk_count = 26; }));
  EXPECT_TRUE(with([](state_manifest& m) { m.chunk_count = std::numeric_limits<uint64_t>::max(); }));
  EXPECT_TRUE(with([](state_manifest& m) { m.epoch = -1; }));
  // Right at the limits is fine.
  EXPECT_FALSE(with([](state_manifest& m) {
    m.total_bytes = 1 << 20;
    m.chunk_bytes = 1 << 16;
    m.chunk_count = 16;
  }));
  auto why = with([](state_manifest& m) { m.total_bytes = 2 << 20; m.chunk_count = 512; });
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("exceeds the limit"), std::string::npos) << *why;
}

TEST(state_chunk_checksum, binds_digest_and_index) {
  const auto bytes = random_bytes(1000, 1);
  const auto base = state_chunk_checksum(5, 0, bytes);
  EXPECT_NE(base, state_chunk_checksum(6, 0, bytes));
  EXPECT_NE(base, state_chunk_checksum(5, 1, bytes));
  EXPECT_NE(base, blob_checksum(bytes));
  EXPECT_EQ(base, state_chunk_checksum(5, 0, bytes));
}

TEST(state_chunk_validation, accepts_the_chunk_asked_for) {
  const auto state = random_bytes(10'000, 2);
  const auto m = make_state_manifest(state, 1, "s", 4096);
  for (uint64_t i = 0; i < m.chunk_count; ++i)
    EXPECT_FALSE(validate_state_chunk(make_chunk(state, m, i), m, i)) << i;
}

TEST(state_chunk_validation, refuses_every_kind_of_bad_chunk) {
  const auto state = random_bytes(10'000, 3);
  const auto m = make_state_manifest(state, 1, "s", 4096);
  const auto good = make_chunk(state, m, 1);
  auto refused = [&](auto change, uint64_t asked = 1) {
    auto c = good;
    change(c);
    return validate_state_chunk(c, m, asked).has_value();
  };
  EXPECT_TRUE(refused([](state_chunk& c) { c.digest ^= 1; }));
  EXPECT_TRUE(refused([](state_chunk& c) { c.index = 2; }));
  EXPECT_TRUE(refused([](state_chunk&) {}, 2)); // chunk 1 for a request of chunk 2
  EXPECT_TRUE(refused([](state_chunk&) {}, 3)); // out of range
  EXPECT_TRUE(refused([](state_chunk& c) { c.checksum ^= 1; }));
  EXPECT_TRUE(refused([](state_chunk& c) { c.bytes[17] ^= 4; }));
  EXPECT_TRUE(refused([](state_chunk& c) { c.bytes.pop_back(); }));
  EXPECT_TRUE(refused([](state_chunk& c) { c.bytes.push_back(0); }));
  EXPECT_TRUE(refused([](state_chunk& c) { c.bytes.clear(); }));
  // A short or long chunk with a checksum that matches its (wrong) bytes is still refused.
  EXPECT_TRUE(refused([](state_chunk& c) {
    c.bytes.resize(100);
    c.checksum = state_chunk_checksum(c.digest, c.index, c.bytes);
  }));
  // The last, short chunk must be exactly as short as the range says.
  auto last = make_chunk(state, m, 2);
  EXPECT_EQ(last.bytes.size(), 10'000u - 2 * 4096u);
  EXPECT_FALSE(validate_state_chunk(last, m, 2));
  last.bytes.resize(4096);
  last.checksum = state_chunk_checksum(last.digest, last.index, last.bytes);
  EXPECT_TRUE(validate_state_chunk(last, m, 2));
}

TEST(state_layout, resume_needs_same_digest_and_chunking) {
  state_manifest a{"s", 3, 100'000, 4096, 25, 42};
  auto b = a;
  b.epoch = 4; // the epoch is not part of the layout: same bytes are the same state
  EXPECT_TRUE(same_state_layout(a, b));
  b = a;
  b.digest = 43;
  EXPECT_FALSE(same_state_layout(a, b));
  b = a;
  b.chunk_bytes = 8192;
  b.chunk_count = 13;
  EXPECT_FALSE(same_state_layout(a, b));
}

class state_assembly_order : public ::testing::TestWithParam<uint64_t> {};

TEST_P(state_assembly_order, any_order_gives_back_the_state) {
  const auto state = random_bytes(50'000, GetParam());
  const auto m = make_state_manifest(state, 2, "s", 3000);
  std::vector<uint64_t> order(m.chunk_count);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(GetParam());
  std::shuffle(order.begin(), order.end(), rng);
  state_assembly assembly(m);
  EXPECT_EQ(assembly.next_missing(0), 0u);
  for (size_t k = 0; k < order.size(); ++k) {
    EXPECT_FALSE(assembly.complete());
    EXPECT_TRUE(assembly.accept(make_chunk(state, m, order[k])));
    EXPECT_FALSE(assembly.accept(make_chunk(state, m, order[k]))); // twice: ignored
    EXPECT_EQ(assembly.chunks_present(), k + 1);
    EXPECT_TRUE(assembly.has(order[k]));
  }
  EXPECT_TRUE(assembly.complete());
  EXPECT_EQ(assembly.bytes_present(), state.size());
  EXPECT_FALSE(assembly.next_missing(0));
  EXPECT_TRUE(assembly.digest_matches());
  auto bytes = assembly.release();
  EXPECT_EQ(*bytes, state);
}

INSTANTIATE_TEST_SUITE_P(seeds, state_assembly_order, ::testing::Values(1, 2, 3, 4));

TEST(state_assembly, tracks_missing_chunks_and_a_wrong_whole) {
  const auto state = random_bytes(10'000, 9);
  auto m = make_state_manifest(state, 2, "s", 1000);
  state_assembly assembly(m);
  for (uint64_t i : {0, 1, 2, 5, 9})
    assembly.accept(make_chunk(state, m, i));
  EXPECT_EQ(assembly.next_missing(0), 3u);
  EXPECT_EQ(assembly.next_missing(4), 4u);
  EXPECT_EQ(assembly.next_missing(5), 6u);
  EXPECT_FALSE(assembly.next_missing(10));
  EXPECT_FALSE(assembly.has(100));

  // Chunks that each match a checksum computed over other bytes: only the digest catches them.
  auto other = state;
  other[4321] ^= 1;
  state_assembly forged(m);
  for (uint64_t i = 0; i < m.chunk_count; ++i) {
    auto c = make_chunk(other, m, i);
    ASSERT_FALSE(validate_state_chunk(c, m, i));
    forged.accept(c);
  }
  EXPECT_TRUE(forged.complete());
  EXPECT_FALSE(forged.digest_matches());
}

TEST(state_assembly, empty_state_is_complete_at_once) {
  std::vector<char> empty;
  const auto m = make_state_manifest(empty, 0, "s", 4096);
  state_assembly assembly(m);
  EXPECT_TRUE(assembly.complete());
  EXPECT_TRUE(assembly.digest_matches());
  EXPECT_TRUE(assembly.release()->empty());
}

} // namespace
} // namespace ddactor
