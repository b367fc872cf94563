// stb-based decoding and PNG writing, and the separable resampler behind fit_image.
#include "runtime/image_io.hpp"

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <system_error>
#include "runtime/label_font.hpp"

namespace ddactor {

namespace {

constexpr int max_resolution = 16384;
constexpr uintmax_t max_image_file_bytes = uintmax_t{1} << 30;
constexpr float white = 255.0f;

// For one axis: which source pixels each output pixel reads, with what weights.
struct resample_axis {
  std::vector<int> first;       // first source index per output
  std::vector<int> length;      // number of source indices per output
  std::vector<int> offset;      // into weights, per output
  std::vector<float> weights;
};

// Output pixel i of `out` covers source interval [start + i*s, start + (i+1)*s), s = in/out.
// Shrinking (s >= 1) averages that interval exactly, partial pixels weighted by their overlap;
// enlarging interpolates linearly between the two source pixels around the output's centre.
resample_axis make_axis(int start, int in, int out) {
  resample_axis axis;
  axis.first.resize(static_cast<size_t>(out));
  axis.length.resize(static_cast<size_t>(out));
  axis.offset.resize(static_cast<size_t>(out));
  const double scale = static_cast<double>(in) / out;
  for (int i = 0; i < out; ++i) {
    axis.offset[static_cast<size_t>(i)] = static_cast<int>(axis.weights.size());
    if (in >= out) {
      // In units of 1/out of a source pixel the interval is [i*in, (i+1)*in): exact integers.
      const int64_t a = int64_t{i} * in, b = int64_t{i + 1} * in;
      const int p0 = static_cast<int>(a / out);
      const int p1 = static_cast<int>((b + out - 1) / out);
      axis.first[static_cast<size_t>(i)] = start + p0;
      axis.length[static_cast<size_t>(i)] = p1 - p0;
      for (int p = p0; p < p1; ++p) {
        const int64_t overlap = std::min(b, int64_t{p + 1} * out) - std::max(a, int64_t{p} * out);
        axis.weights.push_back(static_cast<float>(static_cast<double>(overlap) / in));
      }
    } else {
      const double centre = std::clamp((i + 0.5) * scale - 0.5, 0.0, in - 1.0);
      const int p0 = std::min(static_cast<int>(std::floor(centre)), in - 1);
      const float frac = static_cast<float>(centre - p0);
      axis.first[static_cast<size_t>(i)] = start + p0;
      if (p0 + 1 < in) {
        axis.length[static_cast<size_t>(i)] = 2;
        axis.weights.push_back(1.0f - frac);
        axis.weights.push_back(frac);
      } else {
        axis.length[static_cast<size_t>(i)] = 1;
        axis.weights.push_back(1.0f);
      }
    }
  }
  return axis;
}

// One source pixel (1-4 channels) as `channels` (1 or 3) floats, alpha composited on white.
inline void convert_pixel(const uint8_t* px, int source_channels, int channels, float* out) {
  float r, g, b;
  switch (source_channels) {
    case 1: r = g = b = px[0]; break;
    case 2: {
      const float a = px[1] / 255.0f;
      r = g = b = px[0] * a + white * (1.0f - a);
      break;
    }
    case 3: r = px[0]; g = px[1]; b = px[2]; break;
    default: {
      const float a = px[3] / 255.0f;
      r = px[0] * a + white * (1.0f - a);
      g = px[1] * a + white * (1.0f - a);
      b = px[2] * a + white * (1.0f - a);
      break;
    }
  }
  if (channels == 3) {
    out[0] = r;
    out[1] = g;
    out[2] = b;
  } else if (source_channels <= 2) {
    out[0] = r;  // grey stays exactly grey
  } else {
    out[0] = 0.299f * r + 0.587f * g + 0.114f * b;
  }
}

inline uint8_t round_to_byte(float v) {
  return static_cast<uint8_t>(std::clamp(v, 0.0f, 255.0f) + 0.5f);
}

std::string stb_reason() {
  const char* reason = stbi_failure_reason();
  return reason != nullptr ? reason : "unknown reason";
}

void check_image_shape(const std::filesystem::path& file, int width, int height, int channels,
                       size_t bytes) {
  if (width <= 0 || height <= 0 || channels < 1 || channels > 4)
    throw image_error("cannot write " + file.string(), "bad image shape " +
                      std::to_string(width) + "x" + std::to_string(height) + "x" +
                      std::to_string(channels));
  if (int64_t{width} * channels > INT_MAX / 2 ||
      bytes != static_cast<size_t>(width) * static_cast<size_t>(height) * channels)
    throw image_error("cannot write " + file.string(), std::to_string(bytes) +
                      " bytes for an image of " + std::to_string(width) + "x" +
                      std::to_string(height) + "x" + std::to_string(channels));
}

void append_to_vector(void* context, void* data, int size) {
  auto* out = static_cast<std::vector<uint8_t>*>(context);
  const auto* bytes = static_cast<const uint8_t*>(data);
  out->insert(out->end(), bytes, bytes + size);
}

// A name in the target's folder that no other writer (thread or process) uses at once.
std::filesystem::path temporary_name_for(const std::filesystem::path& file) {
  static std::atomic<uint64_t> counter{0};
  auto name = file;
  name += ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
  return name;
}

void write_file_atomically(const std::filesystem::path& file, std::span<const uint8_t> bytes) {
  const auto temporary = temporary_name_for(file);
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) throw image_error("cannot write " + file.string(), "cannot create " +
                                temporary.string() + ": " + std::strerror(errno));
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::error_code ignored;
      std::filesystem::remove(temporary, ignored);
      throw image_error("cannot write " + file.string(), "writing " + temporary.string() +
                        " failed");
    }
  }
  std::error_code error;
  std::filesystem::rename(temporary, file, error);
  if (error) {
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    throw image_error("cannot write " + file.string(), error.message());
  }
}

} // namespace

image_format detect_image_format(std::span<const uint8_t> bytes) {
  static constexpr uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), png_signature, 8) == 0)
    return image_format::png;
  if (bytes.size() >= 3 && bytes[0] == 0xff && bytes[1] == 0xd8 && bytes[2] == 0xff)
    return image_format::jpeg;
  return image_format::other;
}

std::vector<uint8_t> read_file_bytes(const std::filesystem::path& file) {
  std::error_code error;
  const auto size = std::filesystem::file_size(file, error);
  if (error) throw image_error("cannot read " + file.string(), error.message());
  if (size > max_image_file_bytes)
    throw image_error("cannot read " + file.string(), std::to_string(size) +
                      " bytes is too large for an image file");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw image_error("cannot read " + file.string(), std::strerror(errno));
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
  if (in.gcount() != static_cast<std::streamsize>(size))
    throw image_error("cannot read " + file.string(), "read " + std::to_string(in.gcount()) +
                      " of " + std::to_string(size) + " bytes");
  return bytes;
}

decoded_image decode_image_bytes(std::span<const uint8_t> bytes, const std::string& name) {
  if (bytes.empty()) throw image_error("cannot decode " + name, "the file is empty");
  if (bytes.size() > static_cast<size_t>(INT_MAX))
    throw image_error("cannot decode " + name, "too large");
  const int length = static_cast<int>(bytes.size());
  int width = 0, height = 0, channels = 0;
  if (stbi_info_from_memory(bytes.data(), length, &width, &height, &channels) == 0)
    throw image_error("cannot decode " + name, stb_reason());
  if (int64_t{width} * height > max_decoded_pixels)
    throw image_error("cannot decode " + name, std::to_string(width) + "x" +
                      std::to_string(height) + " is larger than the " +
                      std::to_string(max_decoded_pixels) + " pixels accepted");
  uint8_t* data = stbi_load_from_memory(bytes.data(), length, &width, &height, &channels, 0);
  if (data == nullptr) throw image_error("cannot decode " + name, stb_reason());
  decoded_image image;
  image.width = width;
  image.height = height;
  image.channels = channels;
  const size_t size = static_cast<size_t>(width) * static_cast<size_t>(height) * channels;
  image.pixels.assign(data, data + size);
  stbi_image_free(data);
  return image;
}

decoded_image decode_image_file(const std::filesystem::path& file) {
  return decode_image_bytes(read_file_bytes(file), file.string());
}

std::vector<uint8_t> fit_image(const decoded_image& image, int resolution, int channels) {
  return fit_image_to(image, resolution, resolution, channels);
}

std::vector<uint8_t> fit_image_to(const decoded_image& image, int width, int height,
                                  int channels) {
  for (const int side : {width, height})
    if (side < 1 || side > max_resolution)
      throw image_error("fit_image", "resolution " + std::to_string(side) +
                        " is outside 1.." + std::to_string(max_resolution));
  if (channels != 1 && channels != 3)
    throw image_error("fit_image", std::to_string(channels) +
                      " channels requested, only 1 or 3 are supported");
  const int w = image.width, h = image.height, sc = image.channels;
  if (w <= 0 || h <= 0 || sc < 1 || sc > 4 ||
      image.pixels.size() != static_cast<size_t>(w) * static_cast<size_t>(h) * sc)
    throw image_error("fit_image", "inconsistent decoded image " + std::to_string(w) + "x" +
                      std::to_string(h) + "x" + std::to_string(sc));

  // The centre of the source with the target's aspect ratio (the square for square targets); a
  // whole-pixel offset keeps same-size images exact.
  const bool source_wider = int64_t{w} * height >= int64_t{h} * width;
  const int crop_w = source_wider
                       ? std::max(1, static_cast<int>(int64_t{h} * width / height))
                       : w;
  const int crop_h = source_wider
                       ? h
                       : std::max(1, static_cast<int>(int64_t{w} * height / width));
  const int x0 = (w - crop_w) / 2;
  const int y0 = (h - crop_h) / 2;
  const resample_axis across = make_axis(x0, crop_w, width);
  const resample_axis down = make_axis(y0, crop_h, height);
  const auto ow = static_cast<size_t>(width);
  const auto oh = static_cast<size_t>(height);

  // Pass 1, rows: each source row the vertical pass needs, converted, resampled across.
  // rows_out[c][y - y0][i]; only `crop_h` rows are touched, never the cropped-away ones.
  std::vector<float> rows_out(static_cast<size_t>(channels) * crop_h * ow);
  std::vector<float> row(static_cast<size_t>(w) * channels);
  const int first = across.first.front();
  const int last = across.first.back() + across.length.back();
  for (int y = y0; y < y0 + crop_h; ++y) {
    const uint8_t* src = image.pixels.data() + static_cast<size_t>(y) * w * sc;
    for (int x = first; x < last; ++x)
      convert_pixel(src + static_cast<size_t>(x) * sc, sc, channels,
                    row.data() + static_cast<size_t>(x) * channels);
    for (size_t i = 0; i < ow; ++i) {
      const float* wt = across.weights.data() + across.offset[i];
      const int p0 = across.first[i];
      const int n = across.length[i];
      for (int c = 0; c < channels; ++c) {
        float sum = 0.0f;
        for (int k = 0; k < n; ++k) sum += wt[k] * row[static_cast<size_t>(p0 + k) * channels + c];
        rows_out[(static_cast<size_t>(c) * crop_h + (y - y0)) * ow + i] = sum;
      }
    }
  }

  // Pass 2, columns.
  std::vector<uint8_t> out(static_cast<size_t>(channels) * oh * ow);
  std::vector<float> acc(ow);
  for (int c = 0; c < channels; ++c) {
    const float* plane = rows_out.data() + static_cast<size_t>(c) * crop_h * ow;
    for (size_t j = 0; j < oh; ++j) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      const float* wt = down.weights.data() + down.offset[j];
      for (int k = 0; k < down.length[j]; ++k) {
        const float* src = plane + static_cast<size_t>(down.first[j] - y0 + k) * ow;
        for (size_t i = 0; i < ow; ++i) acc[i] += wt[k] * src[i];
      }
      uint8_t* dst = out.data() + (static_cast<size_t>(c) * oh + j) * ow;
      for (size_t i = 0; i < ow; ++i) dst[i] = round_to_byte(acc[i]);
    }
  }
  return out;
}

std::vector<uint8_t> encode_png(std::span<const uint8_t> hwc, int width, int height,
                                int channels) {
  check_image_shape("(in memory)", width, height, channels, hwc.size());
  std::vector<uint8_t> encoded;
  if (stbi_write_png_to_func(append_to_vector, &encoded, width, height, channels, hwc.data(),
                             width * channels) == 0)
    throw image_error("cannot encode a PNG", "PNG encoding failed");
  return encoded;
}

void write_png(const std::filesystem::path& file, std::span<const uint8_t> hwc, int width,
               int height, int channels) {
  check_image_shape(file, width, height, channels, hwc.size());
  std::vector<uint8_t> encoded;
  if (stbi_write_png_to_func(append_to_vector, &encoded, width, height, channels, hwc.data(),
                             width * channels) == 0)
    throw image_error("cannot write " + file.string(), "PNG encoding failed");
  write_file_atomically(file, encoded);
}

uint8_t float_to_byte(float x) {
  if (!(x > -1.0f)) return 0;  // also NaN
  if (x >= 1.0f) return 255;
  return static_cast<uint8_t>((x + 1.0f) * 127.5f + 0.5f);
}

namespace {

struct grid_pixels {
  std::vector<uint8_t> hwc;
  int width = 0;
  int height = 0;
};

// A label cut to max_row_label_chars characters.
std::string fitted_label(const std::string& label) {
  if (label.size() <= max_row_label_chars) return label;
  return label.substr(0, max_row_label_chars - 2) + "..";
}

grid_pixels build_grid(const std::filesystem::path& file, std::span<const float> images,
                       int count, int channels, int height, int width, int columns,
                       int padding, std::span<const std::string> row_labels) {
  if (count <= 0 || columns <= 0 || padding < 0 || height <= 0 || width <= 0 ||
      (channels != 1 && channels != 3))
    throw image_error("cannot write grid " + file.string(), "bad layout (" +
                      std::to_string(count) + " images of " + std::to_string(channels) + "x" +
                      std::to_string(height) + "x" + std::to_string(width) + ", " +
                      std::to_string(columns) + " columns, padding " + std::to_string(padding) +
                      ")");
  const size_t image_size = static_cast<size_t>(channels) * height * width;
  if (images.size() != static_cast<size_t>(count) * image_size)
    throw image_error("cannot write grid " + file.string(),
                      std::to_string(images.size()) + " floats for " + std::to_string(count) +
                      " images of " + std::to_string(image_size));
  const int cols = std::min(columns, count);
  const int rows = (count + cols - 1) / cols;

  std::vector<std::string> labels;
  for (size_t r = 0; r < row_labels.size() && r < static_cast<size_t>(rows); ++r)
    labels.push_back(fitted_label(row_labels[r]));
  const int scale = row_label_scale(height);
  const int label_column = row_label_column_width(labels, height, padding);

  const int64_t grid_width = label_column + int64_t{cols} * (width + padding) + padding;
  const int64_t grid_height = int64_t{rows} * (height + padding) + padding;
  if (grid_width * grid_height > max_decoded_pixels)
    throw image_error("cannot write grid " + file.string(), std::to_string(grid_width) +
                      "x" + std::to_string(grid_height) + " is too large");

  std::vector<uint8_t> grid(static_cast<size_t>(grid_width * grid_height) * channels, 255);
  for (int n = 0; n < count; ++n) {
    const float* img = images.data() + static_cast<size_t>(n) * image_size;
    const int64_t left = label_column + padding + int64_t{n % cols} * (width + padding);
    const int64_t top = padding + int64_t{n / cols} * (height + padding);
    for (int y = 0; y < height; ++y) {
      uint8_t* dst = grid.data() + static_cast<size_t>(((top + y) * grid_width + left) * channels);
      for (int x = 0; x < width; ++x)
        for (int c = 0; c < channels; ++c)
          dst[static_cast<size_t>(x) * channels + c] =
              float_to_byte(img[(static_cast<size_t>(c) * height + y) * width + x]);
    }
  }
  for (size_t r = 0; r < labels.size(); ++r) {
    const int top = padding + static_cast<int>(r) * (height + padding) +
                    (height - glyph_height * scale) / 2;
    draw_text(grid, static_cast<int>(grid_width), static_cast<int>(grid_height), channels,
              padding, top, labels[r], scale, 0);
  }
  return {std::move(grid), static_cast<int>(grid_width), static_cast<int>(grid_height)};
}

} // namespace

int row_label_scale(int height) { return std::clamp(height / 14, 1, 4); }

int row_label_column_width(std::span<const std::string> row_labels, int height, int padding) {
  const int scale = row_label_scale(height);
  int widest = 0;
  for (const auto& label : row_labels)
    widest = std::max(widest, text_width(fitted_label(label), scale));
  return widest > 0 ? widest + std::max(padding, 2 * scale) : 0;
}

void write_image_grid_png(const std::filesystem::path& file, std::span<const float> images,
                          int count, int channels, int height, int width, int columns,
                          int padding, std::span<const std::string> row_labels) {
  auto grid =
      build_grid(file, images, count, channels, height, width, columns, padding, row_labels);
  write_png(file, grid.hwc, grid.width, grid.height, channels);
}

std::vector<uint8_t> encode_image_grid_png(std::span<const float> images, int count,
                                           int channels, int height, int width, int columns,
                                           int padding,
                                           std::span<const std::string> row_labels) {
  auto grid = build_grid("(in memory)", images, count, channels, height, width, columns, padding,
                         row_labels);
  return encode_png(grid.hwc, grid.width, grid.height, channels);
}

} // namespace ddactor
