// The node's collective over c10d's Gloo group: sums and broadcasts among 1, 2 and 3 ranks on
// threads of one process, bit-identical on every rank; a rank that leaves or never comes makes
// the others fail within the timeout instead of hanging; ranks of other processes meet in the
// peer's TCPStore.
#include "models/node_reducer.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <thread>
#include <vector>

#include "tests/models/run_ranks.hpp"

namespace ddactor {
namespace {

using namespace std::chrono_literals;

// Rank r's contribution: values whose float sum depends on the order of addition.
torch::Tensor contribution(int rank, int64_t size) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(100 + rank);
  return at::randn({size}, generator, torch::kFloat32) * std::pow(10.0, rank);
}

class node_reducer_ranks : public ::testing::TestWithParam<int> {};

TEST_P(node_reducer_ranks, sums_bit_identically_on_every_rank) {
  const int ranks = GetParam();
  auto rendezvous = make_node_rendezvous();
  for (int64_t size : {1, 7, 100000}) {
    std::vector<torch::Tensor> results(static_cast<size_t>(ranks));
    run_ranks(ranks, [&](int rank) {
      node_reducer reducer(rendezvous, {rank, ranks, 20s});
      auto tensor = contribution(rank, size);
      reducer.sum_(tensor);
      auto counts = torch::tensor({static_cast<double>(rank + 1)}, torch::kFloat64);
      reducer.sum_(counts);
      EXPECT_EQ(counts.item<double>(), ranks * (ranks + 1) / 2.0);
      results[static_cast<size_t>(rank)] = tensor;
    });
    auto expected = torch::zeros({size});
    for (int r = 0; r < ranks; ++r)
      expected += contribution(r, size);
    EXPECT_TRUE(torch::allclose(results[0], expected, 1e-5, 1e-4)) << "size " << size;
    for (int r = 1; r < ranks; ++r)
      EXPECT_TRUE(torch::equal(results[static_cast<size_t>(r)], results[0]))
        << "rank " << r << " differs from rank 0 (size " << size << ")";
    rendezvous = make_node_rendezvous();  // a new set of ranks meets in a new place
  }
}

TEST_P(node_reducer_ranks, broadcasts_any_rank_s_tensor) {
  const int ranks = GetParam();
  auto rendezvous = make_node_rendezvous();
  run_ranks(ranks, [&](int rank) {
    node_reducer reducer(rendezvous, {rank, ranks, 20s});
    for (int root = 0; root < ranks; ++root) {
      auto values = contribution(rank, 1000);
      reducer.broadcast_(values, root);
      EXPECT_TRUE(torch::equal(values, contribution(root, 1000))) << "root " << root;
      auto bytes = torch::full({5}, static_cast<uint8_t>(rank), torch::kUInt8);
      reducer.broadcast_(bytes, root);
      EXPECT_EQ(bytes[4].item<uint8_t>(), root);
    }
  });
}

INSTANTIATE_TEST_SUITE_P(ranks, node_reducer_ranks, ::testing::Values(1, 2, 3));

TEST(node_reducer, a_rank_that_left_fails_the_others_call_instead_of_hanging) {
  auto rendezvous = make_node_rendezvous();
  std::atomic<bool> left{false};
  bool failed = false;
  const auto started = std::chrono::steady_clock::now();
  run_ranks(2, [&](int rank) {
    auto reducer = std::make_unique<node_reducer>(rendezvous, node_reducer_options{rank, 2, 30s});
    if (rank == 1) {
      reducer.reset();  // its trainer died: its connections close
      left = true;
      return;
    }
    while (!left)
      std::this_thread::sleep_for(1ms);
    auto tensor = torch::ones({16});
    try {
      reducer->sum_(tensor);
    } catch (const node_collective_error& e) {
      failed = true;
      EXPECT_NE(std::string(e.what()).find("trainer 0"), std::string::npos) << e.what();
    }
  });
  EXPECT_TRUE(failed);
  // The closed connection is noticed at once, not after the 30 s timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - started, 10s);
}

TEST(node_reducer, a_rank_that_never_comes_fails_joining_after_the_timeout) {
  auto rendezvous = make_node_rendezvous();
  const auto started = std::chrono::steady_clock::now();
  EXPECT_THROW(node_reducer(rendezvous, {0, 2, 300ms}), node_collective_error);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 20s);
}

// Trainers of other processes (`ddactor trainer`) meet the peer's in its TCPStore, each rank
// over a connection of its own; two sets at once under their own prefixes never mix.
TEST(node_reducer, ranks_meet_in_the_peers_tcp_store_under_their_set_s_prefix) {
  node_store_host host;
  ASSERT_NE(host.port(), 0);
  const std::vector<std::shared_ptr<node_rendezvous>> sets{
    make_node_rendezvous(host.port(), "set-a/"), make_node_rendezvous(host.port(), "set-b/")};
  std::vector<float> sums(4, 0.0f);
  run_ranks(4, [&](int thread) {
    const int set = thread / 2, rank = thread % 2;
    node_reducer reducer(sets[static_cast<size_t>(set)], {rank, 2, 20s});
    auto tensor = torch::full({8}, static_cast<float>((set + 1) * (rank + 1)));
    reducer.sum_(tensor);
    sums[static_cast<size_t>(thread)] = tensor[7].item<float>();
  });
  EXPECT_EQ(sums, (std::vector<float>{3, 3, 6, 6}));
}

TEST(node_reducer, refuses_bad_ranks_and_tensors) {
  EXPECT_THROW(node_reducer(nullptr, {2, 2}), std::invalid_argument);
  EXPECT_THROW(node_reducer(nullptr, {0, 2}), std::invalid_argument);
  node_reducer alone(nullptr, {0, 1});
  auto strided = torch::ones({4, 4}).t();
  EXPECT_THROW(alone.sum_(strided), std::invalid_argument);
  auto tensor = torch::ones({3});
  alone.sum_(tensor);  // nothing to add
  EXPECT_TRUE(torch::equal(tensor, torch::ones({3})));
}

} // namespace
} // namespace ddactor
