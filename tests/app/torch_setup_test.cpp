#include "app/torch_setup.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>

namespace ddactor {
namespace {

// run.threads must reach OpenBLAS's pool too, or peers sharing a machine oversubscribe it.
TEST(torch_setup, run_threads_reach_openblas_too) {
  if (std::getenv("OPENBLAS_NUM_THREADS") != nullptr)
    GTEST_SKIP() << "OPENBLAS_NUM_THREADS is set: the user's count wins";
  if (!blas_threads())
    GTEST_SKIP() << "LibTorch's BLAS here is not OpenBLAS";
  EXPECT_EQ(configure_torch_threads(2), 2);
  EXPECT_EQ(blas_threads(), 2);
  EXPECT_EQ(configure_torch_threads(1), 1);
  EXPECT_EQ(blas_threads(), 1);
  EXPECT_EQ(configure_torch_threads(2, 2), 1) << "each of two trainers gets one";
  EXPECT_EQ(blas_threads(), 1);
  EXPECT_EQ(configure_blas_threads(0), 1) << "0 threads means at least one";
  // A matrix product still runs (in the calling thread) and is right.
  auto a = torch::eye(64) * 3.0;
  auto b = torch::ones({64, 64});
  EXPECT_TRUE(torch::allclose(torch::mm(a, b), torch::full({64, 64}, 3.0)));
}

} // namespace
} // namespace ddactor
