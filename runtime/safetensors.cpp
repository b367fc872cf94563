// The safetensors reader and writer: header validation, the data layout, and the atomic
// file write. Decoding never trusts a number from the file before checking it against what
// was actually read, so a corrupt or truncated file ends in a safetensors_error, never in an
// out-of-bounds read or an allocation larger than the file.
#include "runtime/safetensors.hpp"

#include "runtime/utf8.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <limits>
#include <numeric>
#include <utility>

namespace ddactor {

namespace {

using json = nlohmann::json;

constexpr std::size_t size_field_bytes = 8;
// Root object -> tensor entry -> shape array: no valid header nests deeper. Refusing deeper
// input while parsing keeps a hostile header from building huge nested documents.
constexpr int max_container_depth = 2;
constexpr std::string_view metadata_key = "__metadata__";

[[noreturn]] void fail(std::string message) { throw safetensors_error(std::move(message)); }

// A name as JSON would spell it, for error messages: quoted, control characters escaped,
// invalid UTF-8 replaced rather than thrown on, and cut short if long.
std::string json_quoted(std::string_view text) {
  constexpr std::size_t limit = 200;
  std::string result = json(std::string(text.substr(0, limit)))
                           .dump(-1, ' ', false, json::error_handler_t::replace);
  return text.size() > limit ? result + "..." : result;
}

// A JSON value for an error message, cut short: hostile headers can hold huge values.
std::string brief(const nlohmann::json& value) {
  constexpr std::size_t limit = 80;
  std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text.size() > limit) text = text.substr(0, limit) + "...";
  return text;
}

std::string shape_text(std::span<const int64_t> shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

// Element count of a shape, nullopt if an extent is negative or the product overflows int64.
std::optional<int64_t> checked_numel(std::span<const int64_t> shape) {
  int64_t numel = 1;
  for (int64_t extent : shape) {
    if (extent < 0 || __builtin_mul_overflow(numel, extent, &numel)) return std::nullopt;
  }
  return numel;
}

uint64_t decode_size_field(std::span<const std::byte> first_bytes) {
  uint64_t value = 0;
  for (std::size_t i = 0; i < size_field_bytes; ++i)
    value |= static_cast<uint64_t>(first_bytes[i]) << (8 * i);
  return value;
}

std::array<std::byte, size_field_bytes> encode_size_field(uint64_t value) {
  std::array<std::byte, size_field_bytes> bytes{};
  for (std::size_t i = 0; i < size_field_bytes; ++i)
    bytes[i] = static_cast<std::byte>((value >> (8 * i)) & 0xFF);
  return bytes;
}

void check_file_size(uint64_t file_size) {
  if (file_size < size_field_bytes)
    fail("file is " + std::to_string(file_size) + " bytes long, shorter than the " +
         std::to_string(size_field_bytes) + "-byte header size field");
}

void check_header_size(uint64_t header_size, uint64_t bytes_after_size_field) {
  if (header_size > safetensors_max_header_size)
    fail("header size " + std::to_string(header_size) + " exceeds the limit of " +
         std::to_string(safetensors_max_header_size) + " bytes");
  if (header_size > bytes_after_size_field)
    fail("header size " + std::to_string(header_size) + " is larger than the " +
         std::to_string(bytes_after_size_field) + " bytes that follow the size field");
}

// One header entry, checked against the data buffer but not yet against the other entries.
struct tensor_entry {
  std::string name;
  tensor_dtype dtype = tensor_dtype::f32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

struct header_layout {
  std::map<std::string, std::string> metadata;
  std::vector<tensor_entry> tensors; // header order
};

std::optional<uint64_t> as_non_negative_integer(const json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer() && value.get<int64_t>() >= 0) return value.get<uint64_t>();
  return std::nullopt;
}

// nlohmann keeps the last of duplicate keys and forgets the key order. This callback refuses
// duplicates (the reference reader does too, and silently dropping a tensor would hide a
// corrupt file), bounds nesting, and records the order of the root's keys.
class header_parse_observer {
public:
  bool operator()(int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
    case json::parse_event_t::object_start:
    case json::parse_event_t::array_start:
      if (depth > max_container_depth)
        fail("header nests objects or arrays " + std::to_string(depth + 1) +
             " levels deep; a safetensors header has at most " +
             std::to_string(max_container_depth + 1));
      if (event == json::parse_event_t::object_start) open_objects_.emplace_back();
      break;
    case json::parse_event_t::key:
      open_objects_.back().push_back(parsed.get<std::string>());
      break;
    case json::parse_event_t::object_end: {
      auto& keys = open_objects_.back();
      if (parsed.size() != keys.size()) report_duplicate(depth, keys);
      if (depth == 0) root_keys_ = std::move(keys);
      open_objects_.pop_back();
      break;
    }
    default:
      break;
    }
    return true;
  }

  std::vector<std::string> take_root_keys() { return std::move(root_keys_); }

private:
  [[noreturn]] static void report_duplicate(int depth, std::vector<std::string> keys) {
    std::sort(keys.begin(), keys.end());
    const auto duplicate = std::adjacent_find(keys.begin(), keys.end());
    const std::string name = duplicate == keys.end() ? std::string("?") : *duplicate;
    if (depth == 0) fail("header has two entries named " + json_quoted(name));
    fail("an object in the header has the key " + json_quoted(name) + " twice");
  }

  std::vector<std::vector<std::string>> open_objects_;
  std::vector<std::string> root_keys_;
};

std::map<std::string, std::string> parse_metadata(const json& value) {
  if (!value.is_object())
    fail(std::string("\"__metadata__\" is ") + value.type_name() +
         ", not an object of strings");
  std::map<std::string, std::string> metadata;
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string())
      fail("\"__metadata__\" value for " + json_quoted(key) + " is " + item.type_name() +
           ", not a string");
    metadata.emplace(key, item.get<std::string>());
  }
  return metadata;
}

tensor_entry parse_entry(const std::string& name, const json& value, uint64_t buffer_size) {
  const std::string where = "entry " + json_quoted(name);
  if (!value.is_object())
    fail(where + " is " + value.type_name() + ", not an object");
  for (const auto& [field, item] : value.items()) {
    if (field != "dtype" && field != "shape" && field != "data_offsets")
      fail(where + " has an unknown field " + json_quoted(field));
  }
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!value.contains(field)) fail(where + " lacks the field \"" + field + "\"");
  }

  tensor_entry entry;
  entry.name = name;

  const json& dtype = value.at("dtype");
  if (!dtype.is_string())
    fail(where + ": dtype is " + dtype.type_name() + ", not a string");
  const auto parsed_dtype = dtype_from_name(dtype.get_ref<const std::string&>());
  if (!parsed_dtype)
    fail(where + " has the unknown dtype " + json_quoted(dtype.get_ref<const std::string&>()));
  entry.dtype = *parsed_dtype;

  const json& shape = value.at("shape");
  if (!shape.is_array()) fail(where + ": shape is " + shape.type_name() + ", not an array");
  entry.shape.reserve(shape.size());
  for (std::size_t i = 0; i < shape.size(); ++i) {
    const auto extent = as_non_negative_integer(shape[i]);
    if (!extent)
      fail(where + ": shape element " + std::to_string(i) + " is " + brief(shape[i]) +
           ", not a non-negative integer");
    if (*extent > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(where + ": shape element " + std::to_string(i) + " (" + std::to_string(*extent) +
           ") does not fit in int64");
    entry.shape.push_back(static_cast<int64_t>(*extent));
  }
  const auto numel = checked_numel(entry.shape);
  if (!numel)
    fail(where + ": the element count of shape " + shape_text(entry.shape) +
         " overflows int64");
  int64_t expected_bytes = 0;
  if (__builtin_mul_overflow(*numel, static_cast<int64_t>(dtype_size(entry.dtype)),
                             &expected_bytes))
    fail(where + ": the byte size of shape " + shape_text(entry.shape) + " of " +
         std::string(dtype_name(entry.dtype)) + " overflows int64");

  const json& offsets = value.at("data_offsets");
  std::optional<uint64_t> begin, end;
  if (offsets.is_array() && offsets.size() == 2) {
    begin = as_non_negative_integer(offsets[0]);
    end = as_non_negative_integer(offsets[1]);
  }
  if (!begin || !end)
    fail(where + ": data_offsets is " + brief(offsets) +
         ", not an array of two non-negative integers");
  entry.begin = *begin;
  entry.end = *end;
  if (entry.begin > entry.end)
    fail(where + ": data_offsets " + brief(offsets) + " begins after it ends");
  if (entry.end > buffer_size)
    fail(where + ": data_offsets " + brief(offsets) + " ends past the " +
         std::to_string(buffer_size) + "-byte data buffer");
  if (entry.end - entry.begin != static_cast<uint64_t>(expected_bytes))
    fail(where + ": data_offsets " + brief(offsets) + " hold " +
         std::to_string(entry.end - entry.begin) + " bytes, but shape " +
         shape_text(entry.shape) + " of " + std::string(dtype_name(entry.dtype)) + " needs " +
         std::to_string(expected_bytes));
  return entry;
}

// The entries, taken in offset order, must tile the buffer exactly: each begins where the
// previous one ended and the last one ends at the end of the file. Anything else is a
// corrupt or hand-edited file, and the reference reader refuses it as well.
void check_entries_tile_buffer(const std::vector<tensor_entry>& tensors, uint64_t buffer_size) {
  std::vector<const tensor_entry*> by_offset;
  by_offset.reserve(tensors.size());
  for (const auto& entry : tensors) by_offset.push_back(&entry);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto* left, const auto* right) {
    return std::pair(left->begin, left->end) < std::pair(right->begin, right->end);
  });
  uint64_t covered_until = 0;
  const tensor_entry* last_nonempty = nullptr;
  for (const auto* entry : by_offset) {
    if (entry->begin < covered_until)
      fail("entries " + json_quoted(last_nonempty->name) + " [" +
           std::to_string(last_nonempty->begin) + ", " + std::to_string(last_nonempty->end) +
           ") and " + json_quoted(entry->name) + " [" + std::to_string(entry->begin) + ", " +
           std::to_string(entry->end) + ") overlap in the data buffer");
    if (entry->begin > covered_until)
      fail("bytes [" + std::to_string(covered_until) + ", " + std::to_string(entry->begin) +
           ") of the data buffer belong to no tensor (gap before entry " +
           json_quoted(entry->name) + ")");
    if (entry->end > entry->begin) last_nonempty = entry;
    covered_until = entry->end;
  }
  if (covered_until != buffer_size)
    fail("the data buffer has " + std::to_string(buffer_size - covered_until) +
         " trailing bytes after the last tensor");
}

header_layout parse_header(std::string_view header, uint64_t buffer_size) {
  if (const auto bad = first_invalid_utf8(header))
    fail("header is not valid UTF-8 (bad byte at header offset " + std::to_string(*bad) + ")");

  header_parse_observer observer;
  json root;
  try {
    root = json::parse(header.begin(), header.end(), std::ref(observer));
  } catch (const json::exception& error) {
    fail(std::string("header is not valid JSON: ") + error.what());
  }
  if (!root.is_object()) fail(std::string("header is ") + root.type_name() + ", not a JSON object");

  header_layout layout;
  const std::vector<std::string> keys = observer.take_root_keys();
  layout.tensors.reserve(keys.size());
  for (const auto& key : keys) {
    const json& value = root.at(key);
    if (key == metadata_key) {
      layout.metadata = parse_metadata(value);
    } else {
      layout.tensors.push_back(parse_entry(key, value, buffer_size));
    }
  }
  check_entries_tile_buffer(layout.tensors, buffer_size);
  return layout;
}

// What the writer needs: the padded header text and the order of the tensors' data.
struct encoding_plan {
  std::string header;
  std::vector<std::size_t> data_order; // indices into content.tensors
  uint64_t buffer_size = 0;
};

encoding_plan plan_encoding(const safetensors_content& content) {
  for (const auto& [key, value] : content.metadata) {
    if (first_invalid_utf8(key) || first_invalid_utf8(value))
      fail("metadata entry " + json_quoted(key) + " is not valid UTF-8");
  }
  std::vector<std::string_view> names;
  names.reserve(content.tensors.size());
  for (const auto& tensor : content.tensors) {
    if (first_invalid_utf8(tensor.name))
      fail("tensor name " + json_quoted(tensor.name) + " is not valid UTF-8");
    if (tensor.name == metadata_key)
      fail("tensor name \"__metadata__\" is reserved for the metadata");
    const auto numel = checked_numel(tensor.shape);
    int64_t expected_bytes = 0;
    if (!numel || __builtin_mul_overflow(*numel, static_cast<int64_t>(dtype_size(tensor.dtype)),
                                         &expected_bytes))
      fail("tensor " + json_quoted(tensor.name) + " has the invalid shape " +
           shape_text(tensor.shape));
    if (tensor.data.size() != static_cast<uint64_t>(expected_bytes))
      fail("tensor " + json_quoted(tensor.name) + " has " + std::to_string(tensor.data.size()) +
           " bytes of data, but shape " + shape_text(tensor.shape) + " of " +
           std::string(dtype_name(tensor.dtype)) + " needs " + std::to_string(expected_bytes));
    names.push_back(tensor.name);
  }
  std::sort(names.begin(), names.end());
  if (const auto duplicate = std::adjacent_find(names.begin(), names.end());
      duplicate != names.end())
    fail("two tensors are named " + json_quoted(*duplicate));

  encoding_plan plan;
  plan.data_order.resize(content.tensors.size());
  std::iota(plan.data_order.begin(), plan.data_order.end(), std::size_t{0});
  std::stable_sort(plan.data_order.begin(), plan.data_order.end(),
                   [&](std::size_t left, std::size_t right) {
                     return dtype_size(content.tensors[left].dtype) >
                            dtype_size(content.tensors[right].dtype);
                   });
  std::vector<std::pair<uint64_t, uint64_t>> offsets(content.tensors.size());
  for (std::size_t index : plan.data_order) {
    const uint64_t size = content.tensors[index].data.size();
    offsets[index] = {plan.buffer_size, plan.buffer_size + size};
    plan.buffer_size += size;
  }

  // Written by hand rather than through a JSON object: nlohmann would sort the keys, and the
  // header order is the order the caller gave.
  std::string& header = plan.header;
  header = "{";
  if (!content.metadata.empty()) header += "\"__metadata__\":" + json(content.metadata).dump();
  for (std::size_t i = 0; i < content.tensors.size(); ++i) {
    const auto& tensor = content.tensors[i];
    if (header.size() > 1) header += ',';
    header += json(tensor.name).dump();
    header += ":{\"dtype\":\"";
    header += dtype_name(tensor.dtype);
    header += "\",\"shape\":[";
    for (std::size_t d = 0; d < tensor.shape.size(); ++d) {
      if (d > 0) header += ',';
      header += std::to_string(tensor.shape[d]);
    }
    header += "],\"data_offsets\":[" + std::to_string(offsets[i].first) + "," +
              std::to_string(offsets[i].second) + "]}";
  }
  header += '}';
  // Pad with spaces (JSON whitespace) so the data buffer starts 8-byte aligned.
  header.append((size_field_bytes - header.size() % size_field_bytes) % size_field_bytes, ' ');
  if (header.size() > safetensors_max_header_size)
    fail("the header would be " + std::to_string(header.size()) + " bytes, over the limit of " +
         std::to_string(safetensors_max_header_size));
  return plan;
}

std::string errno_text() { return std::strerror(errno); }

// Owns a POSIX file descriptor; close errors that matter are checked by calling close().
class file_descriptor {
public:
  explicit file_descriptor(int fd) : fd_(fd) {}
  file_descriptor(const file_descriptor&) = delete;
  file_descriptor& operator=(const file_descriptor&) = delete;
  ~file_descriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  // Closes now and reports failure (on some file systems a failed write shows up only here).
  bool close() {
    const int fd = std::exchange(fd_, -1);
    return ::close(fd) == 0;
  }

private:
  int fd_;
};

void write_all(int fd, std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    const ssize_t written = ::write(fd, bytes.data(), bytes.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      fail("write failed: " + errno_text());
    }
    bytes = bytes.subspan(static_cast<std::size_t>(written));
  }
}

// Fills `bytes` completely; the file size was checked before, so a short read means the
// file changed while being read.
void read_exactly(int fd, std::span<std::byte> bytes) {
  while (!bytes.empty()) {
    const ssize_t got = ::read(fd, bytes.data(), bytes.size());
    if (got < 0) {
      if (errno == EINTR) continue;
      fail("read failed: " + errno_text());
    }
    if (got == 0) fail("file ended early (was it changed while being read?)");
    bytes = bytes.subspan(static_cast<std::size_t>(got));
  }
}

std::span<const std::byte> as_bytes(std::string_view text) {
  return std::as_bytes(std::span(text.data(), text.size()));
}

template <class Action>
auto naming_path(const std::filesystem::path& path, Action&& action) {
  try {
    return action();
  } catch (const safetensors_error& error) {
    fail(path.string() + ": " + error.what());
  }
}

std::atomic<uint64_t> temporary_file_counter{0};

} // namespace

std::string_view dtype_name(tensor_dtype dtype) {
  switch (dtype) {
  case tensor_dtype::f64: return "F64";
  case tensor_dtype::f32: return "F32";
  case tensor_dtype::f16: return "F16";
  case tensor_dtype::bf16: return "BF16";
  case tensor_dtype::i64: return "I64";
  case tensor_dtype::i32: return "I32";
  case tensor_dtype::i16: return "I16";
  case tensor_dtype::i8: return "I8";
  case tensor_dtype::u8: return "U8";
  case tensor_dtype::boolean: return "BOOL";
  }
  fail("invalid tensor_dtype value " + std::to_string(static_cast<int>(dtype)));
}

std::optional<tensor_dtype> dtype_from_name(std::string_view name) {
  for (auto dtype : {tensor_dtype::f64, tensor_dtype::f32, tensor_dtype::f16, tensor_dtype::bf16,
                     tensor_dtype::i64, tensor_dtype::i32, tensor_dtype::i16, tensor_dtype::i8,
                     tensor_dtype::u8, tensor_dtype::boolean}) {
    if (dtype_name(dtype) == name) return dtype;
  }
  return std::nullopt;
}

std::size_t dtype_size(tensor_dtype dtype) {
  switch (dtype) {
  case tensor_dtype::f64:
  case tensor_dtype::i64: return 8;
  case tensor_dtype::f32:
  case tensor_dtype::i32: return 4;
  case tensor_dtype::f16:
  case tensor_dtype::bf16:
  case tensor_dtype::i16: return 2;
  case tensor_dtype::i8:
  case tensor_dtype::u8:
  case tensor_dtype::boolean: return 1;
  }
  fail("invalid tensor_dtype value " + std::to_string(static_cast<int>(dtype)));
}

int64_t stored_tensor::numel() const {
  const auto numel = checked_numel(shape);
  if (!numel) fail("tensor " + json_quoted(name) + " has the invalid shape " + shape_text(shape));
  return *numel;
}

const stored_tensor* safetensors_content::find(std::string_view name) const {
  const auto found = std::find_if(tensors.begin(), tensors.end(),
                                  [&](const stored_tensor& tensor) { return tensor.name == name; });
  return found == tensors.end() ? nullptr : &*found;
}

std::vector<std::byte> encode_safetensors(const safetensors_content& content) {
  const encoding_plan plan = plan_encoding(content);
  std::vector<std::byte> out;
  out.reserve(size_field_bytes + plan.header.size() + plan.buffer_size);
  const auto size_field = encode_size_field(plan.header.size());
  out.insert(out.end(), size_field.begin(), size_field.end());
  const auto header_bytes = as_bytes(plan.header);
  out.insert(out.end(), header_bytes.begin(), header_bytes.end());
  for (std::size_t index : plan.data_order) {
    const auto& data = content.tensors[index].data;
    out.insert(out.end(), data.begin(), data.end());
  }
  return out;
}

safetensors_content decode_safetensors(std::span<const std::byte> file_bytes) {
  check_file_size(file_bytes.size());
  const uint64_t header_size = decode_size_field(file_bytes);
  check_header_size(header_size, file_bytes.size() - size_field_bytes);
  const std::string_view header(reinterpret_cast<const char*>(file_bytes.data()) + size_field_bytes,
                                header_size);
  const auto buffer = file_bytes.subspan(size_field_bytes + header_size);
  header_layout layout = parse_header(header, buffer.size());

  safetensors_content content;
  content.metadata = std::move(layout.metadata);
  content.tensors.reserve(layout.tensors.size());
  for (auto& entry : layout.tensors) {
    const auto bytes = buffer.subspan(entry.begin, entry.end - entry.begin);
    content.tensors.push_back({std::move(entry.name), entry.dtype, std::move(entry.shape),
                               std::vector<std::byte>(bytes.begin(), bytes.end())});
  }
  return content;
}

void write_safetensors_file(const std::filesystem::path& path, const safetensors_content& content) {
  naming_path(path, [&] {
    const encoding_plan plan = plan_encoding(content); // refuse bad content before touching disk
    const std::filesystem::path directory =
        path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    // Hidden, beside the target (rename is atomic only within one file system), and short
    // enough for NAME_MAX whatever the target's name.
    const std::string stem = path.filename().string().substr(0, 200);

    std::filesystem::path temporary;
    int fd = -1;
    for (int attempt = 0; fd < 0; ++attempt) {
      temporary = directory / ("." + stem + ".tmp-" + std::to_string(::getpid()) + "-" +
                               std::to_string(temporary_file_counter.fetch_add(1)));
      fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0 && (errno != EEXIST || attempt >= 100))
        fail("cannot create the temporary file " + temporary.string() + ": " + errno_text());
    }
    file_descriptor file(fd);
    bool renamed = false;
    try {
      write_all(file.get(), encode_size_field(plan.header.size()));
      write_all(file.get(), as_bytes(plan.header));
      for (std::size_t index : plan.data_order) write_all(file.get(), content.tensors[index].data);
      if (::fsync(file.get()) != 0) fail("fsync failed: " + errno_text());
      if (!file.close()) fail("close failed: " + errno_text());
      if (::rename(temporary.c_str(), path.c_str()) != 0)
        fail("cannot rename " + temporary.string() + " over it: " + errno_text());
      renamed = true;
      // Without this the rename itself may be lost on a crash, bringing the old file back.
      file_descriptor directory_fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (directory_fd.get() < 0 || ::fsync(directory_fd.get()) != 0)
        fail("written, but the directory could not be synced: " + errno_text());
    } catch (...) {
      if (!renamed) ::unlink(temporary.c_str());
      throw;
    }
  });
}

safetensors_content read_safetensors_file(const std::filesystem::path& path) {
  const safetensors_reader reader(path);
  safetensors_content content;
  content.metadata = reader.metadata();
  const auto& entries = reader.entries();
  content.tensors.resize(entries.size());
  // The entries tile the buffer, so reading them in offset order reads the file front to back,
  // each tensor straight into its own buffer.
  std::vector<std::size_t> by_offset(entries.size());
  std::iota(by_offset.begin(), by_offset.end(), std::size_t{0});
  std::sort(by_offset.begin(), by_offset.end(), [&](std::size_t left, std::size_t right) {
    return entries[left].offset < entries[right].offset;
  });
  for (std::size_t index : by_offset) {
    const auto& entry = entries[index];
    auto& tensor = content.tensors[index];
    tensor.name = entry.name;
    tensor.dtype = entry.dtype;
    tensor.shape = entry.shape;
    tensor.data.resize(entry.size);
    reader.read(entry, tensor.data);
  }
  return content;
}

safetensors_reader::safetensors_reader(const std::filesystem::path& path) : path_(path) {
  naming_path(path, [&] {
    file_descriptor file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (file.get() < 0) fail("cannot open: " + errno_text());
    struct stat status {};
    if (::fstat(file.get(), &status) != 0) fail("cannot stat: " + errno_text());
    if (!S_ISREG(status.st_mode)) fail("not a regular file");
    const auto file_size = static_cast<uint64_t>(status.st_size);
    check_file_size(file_size);
    std::array<std::byte, size_field_bytes> size_field{};
    read_exactly(file.get(), size_field);
    const uint64_t header_size = decode_size_field(size_field);
    check_header_size(header_size, file_size - size_field_bytes);
    std::string header(header_size, '\0');
    read_exactly(file.get(), std::as_writable_bytes(std::span(header.data(), header.size())));
    header_layout layout = parse_header(header, file_size - size_field_bytes - header_size);
    const uint64_t data_start = size_field_bytes + header_size;
    metadata_ = std::move(layout.metadata);
    entries_.reserve(layout.tensors.size());
    for (auto& t : layout.tensors)
      entries_.push_back({std::move(t.name), t.dtype, std::move(t.shape), data_start + t.begin,
                          t.end - t.begin});
    fd_ = file.release();
  });
}

safetensors_reader::~safetensors_reader() {
  if (fd_ >= 0) ::close(fd_);
}

const safetensors_entry* safetensors_reader::find(std::string_view name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

void safetensors_reader::read(const safetensors_entry& entry,
                              std::span<std::byte> destination) const {
  naming_path(path_, [&] {
    if (destination.size() != entry.size)
      fail("tensor '" + entry.name + "' has " + std::to_string(entry.size) + " bytes, not " +
           std::to_string(destination.size()));
    uint64_t offset = entry.offset;
    while (!destination.empty()) {
      const ssize_t got = ::pread(fd_, destination.data(), destination.size(),
                                  static_cast<off_t>(offset));
      if (got < 0) {
        if (errno == EINTR) continue;
        fail("read failed: " + errno_text());
      }
      if (got == 0) fail("file ended early in tensor '" + entry.name + "' (changed since opened?)");
      destination = destination.subspan(static_cast<std::size_t>(got));
      offset += static_cast<uint64_t>(got);
    }
  });
}

namespace {

// The pid in ".<stem>.tmp-<pid>-<counter>", if the name has that form.
std::optional<long> temporary_writer_pid(const std::string& name) {
  if (name.empty() || name[0] != '.') return std::nullopt;
  const auto tmp = name.rfind(".tmp-");
  if (tmp == std::string::npos) return std::nullopt;
  const auto dash = name.find('-', tmp + 5);
  if (dash == std::string::npos || dash == tmp + 5 || dash + 1 >= name.size()) return std::nullopt;
  const std::string pid_text = name.substr(tmp + 5, dash - tmp - 5);
  const std::string counter = name.substr(dash + 1);
  const auto digits = [](const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (!digits(pid_text) || !digits(counter) || pid_text.size() > 9) return std::nullopt;
  return std::stol(pid_text);
}

// When the process `pid` started (seconds since the epoch), if it exists.
std::optional<double> process_start_time(long pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  // After "pid (comm)": state is field 3; starttime is field 22, in clock ticks since boot.
  for (int index = 3; index <= 22 && fields >> field; ++index)
    if (index == 22) {
      std::ifstream uptime_file("/proc/uptime");
      double uptime = 0;
      uptime_file >> uptime;
      const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
      const double boot = static_cast<double>(::time(nullptr)) - uptime;
      return boot + std::stod(field) / ticks;
    }
  return std::nullopt;
}

} // namespace

removed_temporaries remove_stale_temporaries(const std::filesystem::path& directory) {
  removed_temporaries out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(directory, ec)) {
    const auto pid = temporary_writer_pid(entry.path().filename().string());
    if (!pid || !entry.is_regular_file(ec)) continue;
    if (*pid == static_cast<long>(::getpid())) continue;  // ours: a write in progress
    struct stat status {};
    if (::stat(entry.path().c_str(), &status) != 0) continue;
    const auto started = process_start_time(*pid);
    // A live process with that pid that existed before the file was last written may be writing
    // it still; give it a second of slack for clock granularity.
    if (started && *started <= static_cast<double>(status.st_mtime) + 1.0) continue;
    const auto size = static_cast<uint64_t>(status.st_size);
    if (std::filesystem::remove(entry.path(), ec)) {
      out.paths.push_back(entry.path());
      out.bytes += size;
    }
  }
  return out;
}

} // namespace ddactor
