// Tensors on the wire; see tensor_wire.hpp.
#include "models/tensor_wire.hpp"

#include <cstring>

namespace ddactor {

tensor_blob tensor_to_blob(const torch::Tensor& tensor) {
  auto t = tensor.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  auto blob = make_float32_blob(0, 0, 0,
                                std::span<const float>(t.data_ptr<float>(),
                                                       static_cast<size_t>(t.numel())));
  blob.shape = t.sizes().vec();
  seal(blob);
  return blob;
}

torch::Tensor blob_to_tensor(const tensor_blob& blob, const std::vector<int64_t>& expected_shape,
                             int64_t max_dim) {
  blob_expectations expected;
  expected.dtype = static_cast<uint8_t>(blob_dtype::float32);
  expected.codec = blob_codec_none;
  if (auto problem = validate_blob(blob, expected))
    throw std::invalid_argument("invalid tensor: " + *problem);
  if (blob.shape.size() != expected_shape.size())
    throw std::invalid_argument("tensor has rank " + std::to_string(blob.shape.size()) +
                                ", expected " + std::to_string(expected_shape.size()));
  for (size_t i = 0; i < expected_shape.size(); ++i) {
    auto want = expected_shape[i];
    auto got = blob.shape[i];
    if ((want >= 0 && got != want) || got < 0 || got > max_dim)
      throw std::invalid_argument("tensor dimension " + std::to_string(i) + " is " +
                                  std::to_string(got) + ", expected " +
                                  (want >= 0 ? std::to_string(want) : "at most " +
                                                                        std::to_string(max_dim)));
  }
  auto values = float32_values(blob);
  auto out = torch::empty(blob.shape, torch::kFloat32);
  if (!values.empty())
    std::memcpy(out.data_ptr<float>(), values.data(), values.size() * sizeof(float));
  if (!torch::isfinite(out).all().item<bool>())
    throw std::invalid_argument("tensor holds non-finite values");
  return out;
}

} // namespace ddactor
