// Out-of-memory failures of a step: recognised whether LibTorch's allocators or the C++ runtime
// report them (a real failed CPU allocation included), and the micro-batch halves down to one
// example at a time, then gives up.
#include "models/out_of_memory.hpp"

#include <gtest/gtest.h>

#include <torch/torch.h>

#include <new>
#include <stdexcept>

namespace ddactor {
namespace {

TEST(out_of_memory, is_recognised_from_every_allocator) {
  try {
    throw_out_of_memory("injected");
  } catch (const std::exception& e) {
    EXPECT_TRUE(is_out_of_memory(e)) << e.what();
  }
  EXPECT_TRUE(is_out_of_memory(std::bad_alloc()));
  // A real allocation the CPU allocator cannot serve (4 PiB).
  try {
    auto huge = torch::empty({int64_t{1} << 50}, torch::kUInt8);
    ADD_FAILURE() << "allocated " << huge.numel() << " bytes";
  } catch (const std::exception& e) {
    EXPECT_TRUE(is_out_of_memory(e)) << e.what();
  }
}

TEST(out_of_memory, other_failures_are_not_taken_for_it) {
  EXPECT_FALSE(is_out_of_memory(std::runtime_error("loss is not finite")));
  EXPECT_FALSE(is_out_of_memory(std::runtime_error("out of memory")));  // not an allocator's
  try {
    TORCH_CHECK(false, "shape mismatch");
  } catch (const std::exception& e) {
    EXPECT_FALSE(is_out_of_memory(e)) << e.what();
  }
}

TEST(out_of_memory, the_micro_batch_halves_down_to_one_example) {
  EXPECT_EQ(smaller_micro_batch(0, 64), 32);    // the whole batch at once
  EXPECT_EQ(smaller_micro_batch(100, 64), 32);  // larger than the batch: the batch at once
  EXPECT_EQ(smaller_micro_batch(32, 64), 16);
  EXPECT_EQ(smaller_micro_batch(3, 64), 1);
  EXPECT_EQ(smaller_micro_batch(2, 64), 1);
  EXPECT_EQ(smaller_micro_batch(1, 64), 0);  // nothing smaller to try
  EXPECT_EQ(smaller_micro_batch(0, 1), 0);
}

} // namespace
} // namespace ddactor
