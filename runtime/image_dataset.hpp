#pragma once
// The in-memory form of an image data set, whatever its source (Fashion-MNIST IDX files, an
// image folder with captions): `count` images of one size, stored as uint8 CHW one after the
// other, with optional labels and captions. Also the count of files a loader skipped, and the
// conversion of a batch of images to the floats in [-1, 1] that the models train on (the
// batching hot path of the data loader).
//
// An image_dataset is a plain value: it owns its pixels and is safe to read from many threads.

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/training_batch.hpp"

namespace ddactor {

// Misuse of a data set: an index past its end, a buffer of the wrong size.
class dataset_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct image_dataset {
  int64_t count = 0;
  int channels = 1;
  int height = 0;
  int width = 0;
  std::vector<uint8_t> pixels;        // count * channels * height * width, CHW per image
  std::vector<int64_t> labels;        // empty or count entries
  std::vector<std::string> captions;  // empty or count entries
  std::vector<int64_t> clusters;      // empty or count entries: DDM clusters (router training)
  std::vector<std::string> class_names;

  // channels * height * width: the bytes of one image.
  int64_t image_size() const { return int64_t{channels} * height * width; }

  // The pixels of image i (CHW). Throws dataset_error if i is out of range.
  std::span<const uint8_t> image(int64_t i) const;

  // The images at `indices`, in that order, with their labels, captions and clusters; the class names
  // are kept. Indices may repeat. Throws dataset_error on an index out of range.
  image_dataset subset(std::span<const int64_t> indices) const;

  // Throws dataset_error unless the sizes of pixels, labels and captions agree with count and
  // the image shape. Loaders call it before they hand a data set out.
  void check_consistent() const;
};

// Files a loader left out, by reason. None of them is fatal; the loader logs each one.
struct skipped_files {
  int64_t unreadable = 0;       // could not be read, or an image file that does not decode
  int64_t missing_caption = 0;  // an image without its .txt caption, when captions are required
  int64_t missing_image = 0;    // a .txt caption without an image of the same name
  int64_t wrong_format = 0;     // content that is no image (or a caption that is not UTF-8)
  std::vector<std::string> examples;  // the first few "file: reason" lines, for reports

  // How many examples are kept; the counts go on past it.
  static constexpr size_t max_examples = 16;

  int64_t total() const { return unreadable + missing_caption + missing_image + wrong_format; }
  void add_example(std::string line);
  // Adds another count's numbers and examples to this one.
  void add(const skipped_files& other) {
    unreadable += other.unreadable;
    missing_caption += other.missing_caption;
    missing_image += other.missing_image;
    wrong_format += other.wrong_format;
    for (const auto& line : other.examples)
      add_example(line);
  }
};

// Writes the images at `indices` of `data` into `out` as floats x / 127.5 - 1 (so 0 -> -1,
// 255 -> 1), CHW per image, images one after the other. `out` must hold exactly
// indices.size() * data.image_size() floats. Throws dataset_error on a bad index or size.
void images_to_float(const image_dataset& data, std::span<const int64_t> indices,
                     std::span<float> out);

// The images at `indices` as a training batch (floats as images_to_float) with their labels,
// captions and clusters where the set has them; the data order fields are left to the caller.
training_batch batch_of(const image_dataset& data, std::span<const int64_t> indices);

} // namespace ddactor
