#pragma once
// Image files in and out, on stb (Debian's libstb): decoding PNG and JPEG, fitting a decoded
// image to the square, fixed-size, fixed-channel form a data set holds (resize so the shorter
// side matches, centre crop, convert channels), and writing PNGs atomically, including grids of
// generated samples.
//
// Decoding is thread-safe (stb keeps its failure reason per thread); bytes from disk are
// hostile input, so dimensions are checked before stb allocates anything.

#include <cstdint>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace ddactor {

// An image that cannot be read, decoded or written. what() is "<what failed>: <reason>" and
// names the file; reason() alone is for callers that name the file themselves.
class image_error : public std::runtime_error {
 public:
  image_error(const std::string& failed, std::string reason)
      : std::runtime_error(failed + ": " + reason), reason_(std::move(reason)) {}
  const std::string& reason() const { return reason_; }

 private:
  std::string reason_;
};

struct decoded_image {
  int width = 0;
  int height = 0;
  int channels = 0;             // 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA
  std::vector<uint8_t> pixels;  // height * width * channels, interleaved (HWC)
};

// Larger images are refused before decoding (a forged header must not make stb allocate
// gigabytes): 8192 x 8192 is far above any training resolution.
inline constexpr int64_t max_decoded_pixels = int64_t{8192} * 8192;

enum class image_format { png, jpeg, other };

// What the first bytes say the content is (the PNG signature, JPEG's SOI marker).
image_format detect_image_format(std::span<const uint8_t> bytes);

// Decodes PNG or JPEG (and the other formats stb reads) from memory; `name` goes into errors.
decoded_image decode_image_bytes(std::span<const uint8_t> bytes, const std::string& name);

// Reads and decodes a file; image_error with the path and stb's reason on failure.
decoded_image decode_image_file(const std::filesystem::path& file);

// The whole file, or image_error naming it.
std::vector<uint8_t> read_file_bytes(const std::filesystem::path& file);

// Resizes so the shorter side is `resolution` and crops the centre square: resolution x
// resolution pixels with `channels` (1 or 3) channels, CHW. The crop is taken in the source,
// at a whole-pixel offset (rounded down), so an image already at the resolution comes back
// unchanged. Downsampling averages the exact
// area each output pixel covers (a box filter, so a 2x reduction averages 2x2 blocks);
// upsampling interpolates linearly. Alpha is composited on white first; RGB becomes grey by
// Rec. 601 luma (0.299 R + 0.587 G + 0.114 B), grey becomes RGB by copying.
std::vector<uint8_t> fit_image(const decoded_image& image, int resolution, int channels);

// fit_image for a width x height target: resized so that it covers the target, the centre crop
// of the target's aspect ratio; CHW. fit_image is this with a square.
std::vector<uint8_t> fit_image_to(const decoded_image& image, int width, int height,
                                  int channels);

// Writes a PNG (HWC, 1 to 4 channels) through a temporary file in the same folder renamed over
// the target, so a reader never sees half a file. image_error on failure.
void write_png(const std::filesystem::path& file, std::span<const uint8_t> hwc, int width,
               int height, int channels);

// Lays out `count` images (CHW floats in [-1, 1], clamped; 1 or 3 channels) row-major in a grid
// of c = min(columns, count) columns and r = ceil(count / c) rows, with `padding` white pixels
// between images and around the border, and writes it as one PNG (atomically, as write_png):
// c * (width + padding) + padding wide, r * (height + padding) + padding high.
//
// With `row_labels`, a white column on the left carries label i (black, runtime/label_font,
// at most max_row_label_chars characters, longer ones cut with "..") centred on row i; labels
// past the last row are ignored, rows without one stay blank. The grid widens by that column.
void write_image_grid_png(const std::filesystem::path& file, std::span<const float> images,
                          int count, int channels, int height, int width, int columns,
                          int padding = 2, std::span<const std::string> row_labels = {});

// The same grid as PNG bytes in memory (for answers over HTTP or the network).
std::vector<uint8_t> encode_image_grid_png(std::span<const float> images, int count,
                                           int channels, int height, int width, int columns,
                                           int padding = 2,
                                           std::span<const std::string> row_labels = {});

inline constexpr size_t max_row_label_chars = 40;

// The scale of label glyphs next to images `height` pixels high: 7-pixel glyphs for small
// images, up to 4x for large ones.
int row_label_scale(int height);

// Pixels the label column of a grid adds on the left (0 without labels).
int row_label_column_width(std::span<const std::string> row_labels, int height, int padding);

// PNG bytes of an HWC image in memory.
std::vector<uint8_t> encode_png(std::span<const uint8_t> hwc, int width, int height,
                                int channels);

// A float in [-1, 1] as a byte: round((x + 1) * 127.5), clamped; the inverse of
// images_to_float's x / 127.5 - 1.
uint8_t float_to_byte(float x);

} // namespace ddactor
