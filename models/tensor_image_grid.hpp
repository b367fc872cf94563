#pragma once
// Generated images as a tensor (N, C, H, W) in [-1, 1], written as a PNG grid
// (runtime/image_io.hpp's write_image_grid_png: `columns` per row, 2 px padding, a label before
// each row). Shared by `ddactor sample` and the trainer's sample grids.

#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

namespace ddactor {

void write_tensor_grid_png(const std::filesystem::path& file, const torch::Tensor& images,
                           int64_t columns, const std::vector<std::string>& row_labels = {});

} // namespace ddactor
