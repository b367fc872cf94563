// GPU memory gauges: none on the CPU (no false zeros); on a CUDA build with a GPU, the bytes a
// tensor holds show in ddactor_gpu_memory_allocated_bytes{device="cuda:0"} (skipped elsewhere,
// never faked).
#include "models/device_memory_metrics.hpp"

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "monitoring/prometheus_exposition.hpp"

namespace ddactor {
namespace {

TEST(device_memory_metrics, a_cpu_run_registers_no_gpu_series) {
  metrics_registry registry;
  const auto registrations = register_device_memory_metrics(registry, "cpu");
  EXPECT_TRUE(registrations.empty());
  EXPECT_EQ(render_prometheus_text(registry).find("ddactor_gpu_"), std::string::npos);
}

TEST(device_memory_metrics, a_tensor_on_the_gpu_shows_in_its_allocated_bytes) {
#ifdef DDACTOR_WITH_CUDA
  if (!torch::cuda::is_available())
    GTEST_SKIP() << "no CUDA device";
  metrics_registry registry;
  const auto registrations = register_device_memory_metrics(registry, "cuda:0");
  ASSERT_EQ(registrations.size(), 3u);
  const auto held = torch::ones({64, 1024, 1024}, torch::device(torch::kCUDA));  // 256 MiB
  const auto text = render_prometheus_text(registry);
  const std::string series = "ddactor_gpu_memory_allocated_bytes{device=\"cuda:0\"} ";
  const auto at = text.find(series);
  ASSERT_NE(at, std::string::npos) << text;
  EXPECT_GE(std::stod(text.substr(at + series.size())), 256.0 * 1024 * 1024) << text;
  EXPECT_NE(text.find("ddactor_gpu_memory_reserved_bytes{device=\"cuda:0\"}"), std::string::npos);
#else
  GTEST_SKIP() << "built without CUDA (DDACTOR_CUDA=OFF)";
#endif
}

} // namespace
} // namespace ddactor
