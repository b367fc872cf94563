// GPU memory gauges; see device_memory_metrics.hpp.
#include "models/device_memory_metrics.hpp"

#ifdef DDACTOR_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace ddactor {

#ifdef DDACTOR_WITH_CUDA
namespace {

// Index 0 of the allocator's stat arrays is the aggregate over pool kinds (StatType::AGGREGATE;
// named differently in LibTorch 1.13 and 2.x).
constexpr size_t aggregate = 0;

std::vector<int> devices_of(const std::string& run_device) {
  const int count = static_cast<int>(c10::cuda::device_count());
  if (run_device.rfind("cuda:", 0) == 0) {
    const int index = std::stoi(run_device.substr(5));
    return index < count ? std::vector<int>{index} : std::vector<int>{};
  }
  if (run_device != "cuda")
    return {};
  std::vector<int> all;
  for (int d = 0; d < count; ++d)
    all.push_back(d);
  return all;
}

} // namespace
#endif

std::vector<callback_gauge_registration> register_device_memory_metrics(
  metrics_registry& registry, const std::string& run_device) {
  std::vector<callback_gauge_registration> registrations;
#ifdef DDACTOR_WITH_CUDA
  using c10::cuda::CUDACachingAllocator::getDeviceStats;
  for (int device : devices_of(run_device)) {
    const std::vector<metric_label> labels{{"device", "cuda:" + std::to_string(device)}};
    registrations.push_back(registry.callback_gauge(
      "ddactor_gpu_memory_allocated_bytes", "Bytes held by tensors on this GPU.", labels,
      [device] {
        return static_cast<double>(getDeviceStats(device).allocated_bytes[aggregate].current);
      }));
    registrations.push_back(registry.callback_gauge(
      "ddactor_gpu_memory_reserved_bytes",
      "Bytes LibTorch's caching allocator holds on this GPU (allocated plus its cache).", labels,
      [device] {
        return static_cast<double>(getDeviceStats(device).reserved_bytes[aggregate].current);
      }));
    registrations.push_back(registry.callback_gauge(
      "ddactor_gpu_memory_peak_allocated_bytes",
      "The most bytes tensors held on this GPU at once since the process started.", labels,
      [device] {
        return static_cast<double>(getDeviceStats(device).allocated_bytes[aggregate].peak);
      }));
  }
#else
  (void)registry;
  (void)run_device;
#endif
  return registrations;
}

} // namespace ddactor
