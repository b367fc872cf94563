#pragma once
// Readers for the IDX format of MNIST and Fashion-MNIST (a big-endian header: magic 0x00000803
// and three sizes for images, 0x00000801 and one size for labels, then the uint8 data), gzip
// compressed or not, and the loader of Fashion-MNIST as Debian's `dataset-fashion-mnist`
// installs it in /usr/share/datasets/fashion-mnist: the quick-start data set of ddactor.
//
// Files are hostile input: every size is checked against what the file really holds, memory
// grows with the bytes actually read (a forged header cannot make us allocate gigabytes), and
// every error names the file.

#include "runtime/image_dataset.hpp"

#include <array>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace ddactor {

// An IDX file that is missing, unreadable, truncated or inconsistent. The message names it.
class idx_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr uint32_t idx_images_magic = 0x00000803;  // uint8 data, 3 dimensions
inline constexpr uint32_t idx_labels_magic = 0x00000801;  // uint8 data, 1 dimension

// Where Debian's dataset-fashion-mnist package puts the files.
inline constexpr std::string_view debian_fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";

inline constexpr std::array<std::string_view, 10> fashion_mnist_class_names = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

struct idx_images {
  int64_t count = 0;
  int rows = 0;
  int columns = 0;
  std::vector<uint8_t> pixels;  // count * rows * columns, row-major per image
};

// One IDX image file (idx3, uint8). Gzip-compressed or plain: zlib reads both.
idx_images load_idx_images(const std::filesystem::path& file);

// One IDX label file (idx1, uint8).
std::vector<uint8_t> load_idx_labels(const std::filesystem::path& file);

enum class dataset_split { train, test };

// `dir`/<base>.gz if it exists, else `dir`/<base> uncompressed; idx_error naming both if
// neither does.
std::filesystem::path find_idx_file(const std::filesystem::path& dir, std::string_view base);

// Fashion-MNIST's train (60000) or test (10000) split: 1x28x28 images, labels 0..9 and the ten
// class names. Checks that image and label counts agree and that labels are below 10.
image_dataset load_fashion_mnist(const std::filesystem::path& dir, dataset_split split);

} // namespace ddactor
