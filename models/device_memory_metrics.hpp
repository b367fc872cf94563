#pragma once
// GPU memory as Prometheus gauges, read from LibTorch's CUDA caching allocator on each scrape:
// ddactor_gpu_memory_allocated_bytes, ddactor_gpu_memory_reserved_bytes and
// ddactor_gpu_memory_peak_allocated_bytes, each per device{device="cuda:N"}. Allocated is what
// tensors hold, reserved what the allocator keeps from the driver (allocated plus its cache), the
// peak allocated since the process started. Utilisation is not exposed by LibTorch's C++ API, so
// it is not reported here.
//
// In a build without CUDA (DDACTOR_WITH_CUDA unset) or on a machine without a GPU no series is
// registered: dashboards see the families absent, not a false zero.

#include <string>
#include <vector>

#include "monitoring/metrics_registry.hpp"

namespace ddactor {

/// Registers the gauges for every device `run_device` uses ("cuda", "cuda:N"; "cpu": none). The
/// series live as long as the returned registrations.
std::vector<callback_gauge_registration> register_device_memory_metrics(
  metrics_registry& registry, const std::string& run_device);

} // namespace ddactor
