// Data set images as a tensor; see dataset_tensors.hpp.
#include "models/dataset_tensors.hpp"

#include <numeric>

namespace ddactor {

torch::Tensor dataset_images(const image_dataset& data) {
  auto out = torch::empty({data.count, data.channels, data.height, data.width}, torch::kFloat32);
  std::vector<int64_t> all(static_cast<size_t>(data.count));
  std::iota(all.begin(), all.end(), 0);
  images_to_float(data, all,
                  std::span<float>(out.data_ptr<float>(), static_cast<size_t>(out.numel())));
  return out;
}

} // namespace ddactor
