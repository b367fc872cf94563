// Host and device copies for training; see device_transfer.hpp.
#include "models/device_transfer.hpp"

#include <stdexcept>

namespace ddactor {

torch::Device parse_training_device(const std::string& name) {
  // The config loader checked the name; this refuses what LibTorch cannot read all the same.
  try {
    return torch::Device(name);
  } catch (const c10::Error&) {
    throw std::invalid_argument("run.device = \"" + name +
                                "\" is not a device: use \"cpu\", \"cuda\" or \"cuda:N\"");
  }
}

torch::Tensor on_host(const torch::Tensor& tensor) {
  auto host = tensor.device().is_cpu() ? tensor : tensor.to(torch::kCPU);
  return host.contiguous();
}

std::vector<float> host_floats(const torch::Tensor& tensor) {
  const auto host = on_host(tensor.detach().to(torch::kFloat32));
  const float* data = host.data_ptr<float>();
  return std::vector<float>(data, data + host.numel());
}

torch::Tensor device_floats(std::span<const float> values, const torch::Device& device) {
  auto host = torch::from_blob(const_cast<float*>(values.data()),
                               {static_cast<int64_t>(values.size())}, torch::kFloat32);
  // to() copies across devices; on the CPU clone() makes the copy the contract promises.
  return device.is_cpu() ? host.clone() : host.to(device);
}

torch::Tensor to_training_device(const torch::Tensor& host, const torch::Device& device) {
  if (device.is_cpu() || !host.device().is_cpu())
    return host.to(device);
  // pin_memory() copies into page-locked memory (CUDA's caching host allocator reuses it), so
  // the caller's buffer may go once this returns; the device copy then runs asynchronously.
  return host.pin_memory().to(device, /*non_blocking=*/true);
}

} // namespace ddactor
