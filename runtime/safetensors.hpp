#pragma once
// Reading and writing the safetensors file format, the format of ddactor's checkpoints, so that
// Python's `safetensors` and PyTorch read them as they are. Pure code: no LibTorch here; tensors
// are named byte buffers with a dtype and a shape, and the LibTorch side converts.
//
// The format: an 8-byte little-endian unsigned size N, N bytes of UTF-8 JSON (tensor name ->
// {"dtype", "shape", "data_offsets": [begin, end]}, plus an optional "__metadata__" object of
// strings), then the data buffer the offsets point into. Files from disk are hostile input: the
// decoder checks every field, bound and offset, and refuses anything off-spec with a
// `safetensors_error` that says what is wrong, before it allocates or copies tensor data.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ddactor {

enum class tensor_dtype : uint8_t { f64, f32, f16, bf16, i64, i32, i16, i8, u8, boolean };

// The name the format uses ("F32", "BF16", "BOOL", ...).
std::string_view dtype_name(tensor_dtype dtype);
// The inverse of dtype_name; nullopt for any name ddactor does not support.
std::optional<tensor_dtype> dtype_from_name(std::string_view name);
// Bytes per element.
std::size_t dtype_size(tensor_dtype dtype);

// One tensor: its elements in row-major order, each element's bytes little-endian (the layout
// of the host on every platform ddactor runs on).
struct stored_tensor {
  std::string name;
  tensor_dtype dtype = tensor_dtype::f32;
  std::vector<int64_t> shape; // empty: a scalar
  std::vector<std::byte> data;

  // The product of the shape (1 for a scalar); throws safetensors_error for a negative
  // extent or a product that does not fit in int64.
  int64_t numel() const;
};

struct safetensors_content {
  std::map<std::string, std::string> metadata; // the "__metadata__" object
  std::vector<stored_tensor> tensors;          // header order; decoding returns this order

  // The tensor with that name, or nullptr.
  const stored_tensor* find(std::string_view name) const;
};

class safetensors_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// Headers larger than this are refused (as the reference reader does, near 100 MB): no real
// header comes close, and it bounds what a hostile size field can make us allocate.
inline constexpr uint64_t safetensors_max_header_size = 100ull * 1024 * 1024;

// The whole file in memory. Throws safetensors_error for duplicate names, the reserved name
// "__metadata__", invalid UTF-8 in names or metadata, or data whose size is not
// numel * dtype_size. Header keys follow `content.tensors`; in the data buffer tensors are
// ordered by descending element size (stable), as the reference writer does, so that every
// tensor starts aligned to its element size for readers that map the file.
std::vector<std::byte> encode_safetensors(const safetensors_content& content);

// Parses and validates a whole file; copies each tensor's bytes once. Throws safetensors_error.
safetensors_content decode_safetensors(std::span<const std::byte> file_bytes);

// Atomic: writes a temporary file in the target's directory, fsyncs it, renames it over
// `path` and fsyncs the directory. On failure the temporary file is removed, an existing file
// at `path` is left as it was, and safetensors_error (naming the path) is thrown.
void write_safetensors_file(const std::filesystem::path& path, const safetensors_content& content);

// Validates the header first, then reads each tensor's bytes straight into its buffer (no
// whole-file copy). Errors name the path.
safetensors_content read_safetensors_file(const std::filesystem::path& path);

// The temporary files write_safetensors_file leaves when its process dies in the middle of a
// write (".<name>.tmp-<pid>-<n>" beside the target), whose writer is gone: a process with that
// pid no longer exists, or it started after the file was last written. Removes them from
// `directory` (not recursively) and says what it removed; files of live writers stay.
struct removed_temporaries {
  std::vector<std::filesystem::path> paths;
  uint64_t bytes = 0;
};
removed_temporaries remove_stale_temporaries(const std::filesystem::path& directory);

// A tensor of a file as its header describes it: where its bytes are, not the bytes.
struct safetensors_entry {
  std::string name;
  tensor_dtype dtype = tensor_dtype::f32;
  std::vector<int64_t> shape;
  uint64_t offset = 0; // in the file
  uint64_t size = 0;   // bytes
};

// A file opened for reading tensor by tensor, for files too large to hold twice (a 3.4 GB UNet):
// the header is validated at once (as read_safetensors_file does), each tensor's bytes are
// read when asked for, straight into the caller's memory. Not thread-safe.
class safetensors_reader {
public:
  // Throws safetensors_error naming the path.
  explicit safetensors_reader(const std::filesystem::path& path);
  ~safetensors_reader();
  safetensors_reader(const safetensors_reader&) = delete;
  safetensors_reader& operator=(const safetensors_reader&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Header order.
  const std::vector<safetensors_entry>& entries() const { return entries_; }
  const safetensors_entry* find(std::string_view name) const;
  // Reads the entry's bytes into `destination` (exactly entry.size bytes). Throws
  // safetensors_error naming the path when the file cannot be read (truncated since opening).
  void read(const safetensors_entry& entry, std::span<std::byte> destination) const;

private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::map<std::string, std::string> metadata_;
  std::vector<safetensors_entry> entries_;
};

} // namespace ddactor
