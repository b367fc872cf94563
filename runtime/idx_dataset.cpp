// IDX parsing over zlib's gz* streams (which read gzip and plain files alike), and the
// Fashion-MNIST loader on top of it.
#include "runtime/idx_dataset.hpp"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace ddactor {

namespace {

constexpr int fashion_mnist_side = 28;
constexpr uint64_t max_idx_data_bytes = uint64_t{1} << 40;  // no real IDX file comes near
constexpr size_t read_chunk_bytes = size_t{4} << 20;
constexpr size_t max_initial_reserve = size_t{64} << 20;

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// One open IDX file; every failure becomes an idx_error that names it.
class idx_reader {
 public:
  explicit idx_reader(const std::filesystem::path& file) : file_(file) {
    if (!std::filesystem::exists(file_)) fail("file does not exist");
    errno = 0;
    gz_ = gzopen(file_.c_str(), "rb");
    if (gz_ == nullptr)
      fail(std::string("cannot open: ") + (errno != 0 ? std::strerror(errno) : "out of memory"));
    gzbuffer(gz_, 256 * 1024);
  }
  ~idx_reader() {
    if (gz_ != nullptr) gzclose(gz_);
  }
  idx_reader(const idx_reader&) = delete;
  idx_reader& operator=(const idx_reader&) = delete;

  [[noreturn]] void fail(const std::string& what) const {
    throw idx_error("IDX file " + file_.string() + ": " + what);
  }

  // Reads up to n bytes; fewer only at the end of the data. A zlib error (corrupt or
  // truncated gzip stream, failed CRC) is reported as such.
  size_t read_some(uint8_t* out, size_t n) {
    size_t got = 0;
    while (got < n) {
      const auto want = static_cast<unsigned>(std::min(n - got, read_chunk_bytes));
      const int r = gzread(gz_, out + got, want);
      if (r < 0) fail_with_zlib_error();
      if (r == 0) {
        int code = Z_OK;
        gzerror(gz_, &code);
        // A gzip stream that ends early leaves Z_BUF_ERROR behind a short read.
        if (code != Z_OK && code != Z_STREAM_END) fail_with_zlib_error();
        break;
      }
      got += static_cast<size_t>(r);
    }
    return got;
  }

  uint32_t read_u32_be(const char* what) {
    uint8_t b[4];
    if (read_some(b, 4) != 4) fail(std::string("truncated in the header (") + what + ")");
    return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
  }

  void expect_magic(uint32_t expected, const char* kind) {
    const uint32_t magic = read_u32_be("magic number");
    if (magic != expected)
      fail("bad magic number " + hex32(magic) + ", expected " + hex32(expected) + " (" + kind +
           ")");
  }

  // Exactly `bytes` of data, then the end of the file. Memory grows with what is read, not
  // with what the header claims.
  std::vector<uint8_t> read_data(uint64_t bytes) {
    if (bytes > max_idx_data_bytes)
      fail("header declares " + std::to_string(bytes) + " bytes of data, which is absurd");
    std::vector<uint8_t> data;
    data.reserve(static_cast<size_t>(std::min<uint64_t>(bytes, max_initial_reserve)));
    while (data.size() < bytes) {
      const size_t old = data.size();
      const size_t chunk = static_cast<size_t>(std::min<uint64_t>(bytes - old, read_chunk_bytes));
      data.resize(old + chunk);
      const size_t got = read_some(data.data() + old, chunk);
      if (got < chunk)
        fail("truncated: the header declares " + std::to_string(bytes) +
             " bytes of data, the file holds " + std::to_string(old + got));
    }
    // One byte more: there must be none, and reaching the end makes zlib check the CRC.
    uint8_t extra = 0;
    if (read_some(&extra, 1) != 0)
      fail("longer than its header says (more than " + std::to_string(bytes) + " data bytes)");
    return data;
  }

 private:
  [[noreturn]] void fail_with_zlib_error() {
    int code = Z_OK;
    const char* raw = gzerror(gz_, &code);
    std::string message = raw != nullptr ? raw : "zlib error";
    const std::string prefix = file_.string() + ": ";  // zlib names the file itself
    if (message.rfind(prefix, 0) == 0) message.erase(0, prefix.size());
    if (code == Z_ERRNO) fail("cannot read (" + message + ")");
    fail("cannot decompress (" + message + "); the file is corrupt or truncated");
  }

  std::filesystem::path file_;
  gzFile gz_ = nullptr;
};

} // namespace

idx_images load_idx_images(const std::filesystem::path& file) {
  idx_reader reader(file);
  reader.expect_magic(idx_images_magic, "IDX uint8 images of 3 dimensions");
  const uint32_t count = reader.read_u32_be("image count");
  const uint32_t rows = reader.read_u32_be("rows");
  const uint32_t columns = reader.read_u32_be("columns");
  constexpr uint32_t max_side = 1u << 16;
  if (rows == 0 || columns == 0 || rows > max_side || columns > max_side)
    reader.fail("image size " + std::to_string(rows) + "x" + std::to_string(columns) +
                " is impossible");
  idx_images out;
  out.count = count;
  out.rows = static_cast<int>(rows);
  out.columns = static_cast<int>(columns);
  out.pixels = reader.read_data(uint64_t{count} * rows * columns);
  return out;
}

std::vector<uint8_t> load_idx_labels(const std::filesystem::path& file) {
  idx_reader reader(file);
  reader.expect_magic(idx_labels_magic, "IDX uint8 labels of 1 dimension");
  const uint32_t count = reader.read_u32_be("label count");
  return reader.read_data(count);
}

std::filesystem::path find_idx_file(const std::filesystem::path& dir, std::string_view base) {
  const auto compressed = dir / (std::string(base) + ".gz");
  if (std::filesystem::exists(compressed)) return compressed;
  const auto plain = dir / std::string(base);
  if (std::filesystem::exists(plain)) return plain;
  throw idx_error("IDX file " + compressed.string() + " does not exist (nor " + plain.string() +
                  ")");
}

image_dataset load_fashion_mnist(const std::filesystem::path& dir, dataset_split split) {
  const std::string prefix = split == dataset_split::train ? "train" : "t10k";
  const auto images_file = find_idx_file(dir, prefix + "-images-idx3-ubyte");
  const auto labels_file = find_idx_file(dir, prefix + "-labels-idx1-ubyte");

  idx_images images = load_idx_images(images_file);
  if (images.rows != fashion_mnist_side || images.columns != fashion_mnist_side)
    throw idx_error("IDX file " + images_file.string() + ": images are " +
                    std::to_string(images.rows) + "x" + std::to_string(images.columns) +
                    ", Fashion-MNIST's are 28x28");
  const std::vector<uint8_t> labels = load_idx_labels(labels_file);
  if (static_cast<int64_t>(labels.size()) != images.count)
    throw idx_error("IDX file " + labels_file.string() + " has " + std::to_string(labels.size()) +
                    " labels but " + images_file.string() + " has " +
                    std::to_string(images.count) + " images");

  image_dataset data;
  data.count = images.count;
  data.channels = 1;
  data.height = images.rows;
  data.width = images.columns;
  data.pixels = std::move(images.pixels);
  data.labels.resize(labels.size());
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= fashion_mnist_class_names.size())
      throw idx_error("IDX file " + labels_file.string() + ": label " + std::to_string(labels[i]) +
                      " of item " + std::to_string(i) + " is not a Fashion-MNIST class (0..9)");
    data.labels[i] = labels[i];
  }
  data.class_names.assign(fashion_mnist_class_names.begin(), fashion_mnist_class_names.end());
  data.check_consistent();
  return data;
}

} // namespace ddactor
