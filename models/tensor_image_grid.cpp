// A tensor of images as a PNG grid; see tensor_image_grid.hpp.
#include "models/tensor_image_grid.hpp"

#include "runtime/image_io.hpp"

namespace ddactor {

void write_tensor_grid_png(const std::filesystem::path& file, const torch::Tensor& images,
                           int64_t columns, const std::vector<std::string>& row_labels) {
  const auto values = images.to(torch::kFloat32).contiguous();
  write_image_grid_png(file,
                       std::span<const float>(values.data_ptr<float>(),
                                              static_cast<size_t>(values.numel())),
                       static_cast<int>(values.size(0)), static_cast<int>(values.size(1)),
                       static_cast<int>(values.size(2)), static_cast<int>(values.size(3)),
                       static_cast<int>(columns), 2, row_labels);
}

} // namespace ddactor
