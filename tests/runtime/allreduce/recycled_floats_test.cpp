// recycled_floats: a result's storage comes back once its last reader lets go (and only then), and
// a result may outlive its recycler.
#include "runtime/allreduce/recycled_floats.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace ddactor {
namespace {

TEST(recycled_floats, storage_comes_back_when_the_last_reader_lets_go) {
  recycled_floats buffers;
  auto first = buffers.take(1000);
  EXPECT_EQ(first.size(), 1000u);
  first.assign(1000, 1.5f);
  const float* storage = first.data();
  auto shared = buffers.share(std::move(first));
  auto reader = shared;
  shared.reset();
  // Still read: the next round gets other storage.
  auto second = buffers.take(1000);
  second.assign(1000, 0.0f);
  EXPECT_NE(second.data(), storage);
  EXPECT_EQ((*reader)[999], 1.5f);
  // The reader lets go on its own thread: the storage is the spare now.
  std::thread([r = std::move(reader)]() mutable { r.reset(); }).join();
  auto third = buffers.take(1000);
  EXPECT_EQ(third.data(), storage);
  EXPECT_EQ(third.size(), 1000u);
  EXPECT_EQ(third[999], 1.5f) << "kept, not zero-filled again";
  // A smaller request reuses it too; a larger one cannot.
  auto shared_third = buffers.share(std::move(third));
  shared_third.reset();
  const auto smaller = buffers.take(10);
  EXPECT_EQ(smaller.data(), storage);
  EXPECT_EQ(smaller.size(), 10u);
  EXPECT_EQ(buffers.take(2000).size(), 2000u);
}

TEST(recycled_floats, a_result_may_outlive_its_recycler) {
  std::shared_ptr<const std::vector<float>> result;
  {
    recycled_floats buffers;
    auto values = buffers.take(4);
    values.assign({1, 2, 3, 4});
    result = buffers.share(std::move(values));
  }
  EXPECT_EQ((*result)[3], 4.0f);
  result.reset();  // freed, nothing to give it back to
}

} // namespace
} // namespace ddactor
