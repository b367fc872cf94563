// Tests of the safetensors reader and writer: round trips of every dtype and of edge shapes,
// byte-exact agreement with the reference format, a corpus of malformed files (one per check
// the decoder makes, each made by editing a valid encoding), truncation at every byte, random
// corruption, the atomic file write under failures, and a file read back by an independent
// Python reader (numpy and PyTorch).
#include "runtime/safetensors.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>

#include "tests/temporary_folder.hpp"

namespace ddactor {
namespace {

namespace fs = std::filesystem;
using string_map = std::map<std::string, std::string>;

std::vector<std::byte> to_bytes(std::string_view text) {
  const auto bytes = std::as_bytes(std::span(text.data(), text.size()));
  return {bytes.begin(), bytes.end()};
}

std::string to_text(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// Distinct bytes per tensor and position, so that data read from the wrong place shows.
std::vector<std::byte> pattern_bytes(std::size_t count, unsigned seed) {
  std::vector<std::byte> bytes(count);
  for (std::size_t i = 0; i < count; ++i)
    bytes[i] = static_cast<std::byte>((i * 31 + seed * 17 + 5) & 0xFF);
  return bytes;
}

stored_tensor patterned_tensor(std::string name, tensor_dtype dtype, std::vector<int64_t> shape,
                               unsigned seed) {
  stored_tensor tensor{std::move(name), dtype, std::move(shape), {}};
  tensor.data = pattern_bytes(static_cast<std::size_t>(tensor.numel()) * dtype_size(dtype), seed);
  return tensor;
}

template <class T>
stored_tensor tensor_of(std::string name, tensor_dtype dtype, std::vector<int64_t> shape,
                        const std::vector<T>& values) {
  EXPECT_EQ(sizeof(T), dtype_size(dtype));
  stored_tensor tensor{std::move(name), dtype, std::move(shape), {}};
  tensor.data.resize(values.size() * sizeof(T));
  if (!values.empty()) std::memcpy(tensor.data.data(), values.data(), tensor.data.size());
  return tensor;
}

void expect_same_content(const safetensors_content& expected, const safetensors_content& actual) {
  EXPECT_EQ(expected.metadata, actual.metadata);
  ASSERT_EQ(expected.tensors.size(), actual.tensors.size());
  for (std::size_t i = 0; i < expected.tensors.size(); ++i) {
    const auto& want = expected.tensors[i];
    const auto& got = actual.tensors[i];
    EXPECT_EQ(want.name, got.name) << "tensor " << i;
    EXPECT_EQ(want.dtype, got.dtype) << want.name;
    EXPECT_EQ(want.shape, got.shape) << want.name;
    EXPECT_EQ(want.data, got.data) << want.name;
  }
}

uint64_t size_field_of(std::span<const std::byte> file) {
  uint64_t size = 0;
  for (int i = 0; i < 8; ++i) size |= static_cast<uint64_t>(file[i]) << (8 * i);
  return size;
}

nlohmann::json header_of(std::span<const std::byte> file) {
  return nlohmann::json::parse(to_text(file.subspan(8, size_field_of(file))));
}

std::vector<std::byte> assemble(std::string_view header, std::span<const std::byte> buffer,
                                std::optional<uint64_t> size_field = std::nullopt) {
  const uint64_t size = size_field.value_or(header.size());
  std::vector<std::byte> file;
  for (int i = 0; i < 8; ++i) file.push_back(static_cast<std::byte>((size >> (8 * i)) & 0xFF));
  const auto header_bytes = to_bytes(header);
  file.insert(file.end(), header_bytes.begin(), header_bytes.end());
  file.insert(file.end(), buffer.begin(), buffer.end());
  return file;
}

void write_bytes(const fs::path& path, std::span<const std::byte> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::vector<std::byte> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  const auto bytes = std::as_bytes(std::span(chars));
  return {bytes.begin(), bytes.end()};
}

std::vector<std::string> listing(const fs::path& directory) {
  std::vector<std::string> names;
  for (const auto& item : fs::directory_iterator(directory)) names.push_back(item.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

// A fresh directory per test, removed afterwards.
struct temporary_directory : testing::temporary_folder {
  temporary_directory() : temporary_folder("ddactor_safetensors_test") {}
};

const std::vector<tensor_dtype> all_dtypes = {
    tensor_dtype::f64, tensor_dtype::f32, tensor_dtype::f16, tensor_dtype::bf16,
    tensor_dtype::i64, tensor_dtype::i32, tensor_dtype::i16, tensor_dtype::i8,
    tensor_dtype::u8,  tensor_dtype::boolean};

// --- dtypes ---------------------------------------------------------------------------------

TEST(safetensors_dtype, names_and_sizes_follow_the_spec) {
  const std::vector<std::pair<std::string, std::size_t>> expected = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
      {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1}};
  ASSERT_EQ(all_dtypes.size(), expected.size());
  for (std::size_t i = 0; i < all_dtypes.size(); ++i) {
    EXPECT_EQ(dtype_name(all_dtypes[i]), expected[i].first);
    EXPECT_EQ(dtype_size(all_dtypes[i]), expected[i].second) << expected[i].first;
    EXPECT_EQ(dtype_from_name(expected[i].first), all_dtypes[i]);
  }
  for (const char* unknown : {"f32", "F8_E4M3", "U16", "U64", "C64", "", "F32 "})
    EXPECT_EQ(dtype_from_name(unknown), std::nullopt) << unknown;
}

TEST(safetensors_tensor, numel_is_the_product_of_the_shape) {
  EXPECT_EQ((stored_tensor{"s", tensor_dtype::f32, {}, {}}.numel()), 1);
  EXPECT_EQ((stored_tensor{"e", tensor_dtype::f32, {2, 0, 3}, {}}.numel()), 0);
  EXPECT_EQ((stored_tensor{"m", tensor_dtype::f32, {2, 3, 4}, {}}.numel()), 24);
  EXPECT_THROW((stored_tensor{"n", tensor_dtype::f32, {2, -1}, {}}.numel()), safetensors_error);
  EXPECT_THROW((stored_tensor{"o", tensor_dtype::f32, {1ll << 40, 1ll << 40}, {}}.numel()),
               safetensors_error);
}

// --- round trips ----------------------------------------------------------------------------

class safetensors_dtype_round_trip : public ::testing::TestWithParam<tensor_dtype> {};

TEST_P(safetensors_dtype_round_trip, in_memory_and_through_a_file) {
  const tensor_dtype dtype = GetParam();
  safetensors_content content;
  content.tensors.push_back(patterned_tensor("matrix", dtype, {2, 3}, 1));
  content.tensors.push_back(patterned_tensor("scalar", dtype, {}, 2));
  content.tensors.push_back(patterned_tensor("empty", dtype, {0}, 3));
  content.tensors.push_back(patterned_tensor("empty_inside", dtype, {4, 0, 2}, 4));

  const auto bytes = encode_safetensors(content);
  const auto header = header_of(bytes);
  EXPECT_EQ(header["matrix"]["dtype"], std::string(dtype_name(dtype)));
  EXPECT_EQ(header["scalar"]["shape"], nlohmann::json::array());
  EXPECT_EQ(content.tensors[1].data.size(), dtype_size(dtype));
  expect_same_content(content, decode_safetensors(bytes));

  temporary_directory directory;
  const auto path = directory.path() / "round_trip.safetensors";
  write_safetensors_file(path, content);
  EXPECT_EQ(read_bytes(path), bytes);
  expect_same_content(content, read_safetensors_file(path));
}

INSTANTIATE_TEST_SUITE_P(every_dtype, safetensors_dtype_round_trip,
                         ::testing::ValuesIn(all_dtypes),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(safetensors_round_trip, mixed_dtypes_unicode_names_and_metadata_keep_their_order) {
  safetensors_content content;
  content.metadata = {{"format", "pt"}, {"ddactor.step", "1200"}, {"note", "ünïcødé ✓ \"quoted\"\n"},
                      {"", "empty key"}};
  unsigned seed = 10;
  content.tensors.push_back(patterned_tensor("mask", tensor_dtype::boolean, {3}, seed++));
  content.tensors.push_back(patterned_tensor("größe/μ.weight", tensor_dtype::f32, {3, 5}, seed++));
  content.tensors.push_back(patterned_tensor("日本語", tensor_dtype::i8, {7}, seed++));
  content.tensors.push_back(patterned_tensor("step", tensor_dtype::i64, {}, seed++));
  content.tensors.push_back(patterned_tensor("emoji 🙂 \t\"tab\"", tensor_dtype::f16, {1, 3}, seed++));
  content.tensors.push_back(patterned_tensor("zero", tensor_dtype::f64, {0, 4}, seed++));
  content.tensors.push_back(patterned_tensor("bf", tensor_dtype::bf16, {5}, seed++));
  content.tensors.push_back(patterned_tensor("", tensor_dtype::u8, {1}, seed++));
  content.tensors.push_back(patterned_tensor("d", tensor_dtype::f64, {3}, seed++));

  const auto bytes = encode_safetensors(content);
  const auto decoded = decode_safetensors(bytes);
  expect_same_content(content, decoded);
  ASSERT_NE(decoded.find("日本語"), nullptr);
  EXPECT_EQ(decoded.find("日本語")->data, content.tensors[2].data);
  EXPECT_EQ(decoded.find("missing"), nullptr);

  // The data buffer starts 8-byte aligned and every tensor at a multiple of its element size.
  const uint64_t header_size = size_field_of(bytes);
  EXPECT_EQ(header_size % 8, 0u);
  const auto header = header_of(bytes);
  for (const auto& tensor : content.tensors) {
    const uint64_t begin = header.at(tensor.name).at("data_offsets")[0];
    EXPECT_EQ(begin % dtype_size(tensor.dtype), 0u) << tensor.name;
  }
  EXPECT_EQ(header.at("__metadata__").get<string_map>(), content.metadata);
}

TEST(safetensors_round_trip, no_tensors_at_all) {
  const auto bytes = encode_safetensors({});
  EXPECT_EQ(to_text(bytes), std::string("\x08\0\0\0\0\0\0\0{}      ", 16));
  const auto decoded = decode_safetensors(bytes);
  EXPECT_TRUE(decoded.tensors.empty());
  EXPECT_TRUE(decoded.metadata.empty());
}

// The example of the reference implementation: I32 zeros of shape [2, 2].
TEST(safetensors_reference, encoding_matches_the_reference_byte_for_byte) {
  safetensors_content content;
  content.tensors.push_back(tensor_of<int32_t>("test", tensor_dtype::i32, {2, 2}, {0, 0, 0, 0}));
  const std::string header = R"({"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}})";
  ASSERT_EQ(header.size(), 60u);
  const auto expected = assemble(header + "    ", std::vector<std::byte>(16));
  EXPECT_EQ(encode_safetensors(content), expected);
}

TEST(safetensors_reference, unpadded_header_and_any_key_order_are_read) {
  const std::string header =
      R"({"b":{"data_offsets":[4,6],"shape":[1],"dtype":"F16"},)"
      R"("__metadata__":{"k":"v"},"a":{"shape":[],"dtype":"F32","data_offsets":[0,4]}})";
  const auto buffer = pattern_bytes(6, 3);
  const auto decoded = decode_safetensors(assemble(header, buffer));
  ASSERT_EQ(decoded.tensors.size(), 2u);
  EXPECT_EQ(decoded.tensors[0].name, "b"); // header order, not offset order
  EXPECT_EQ(decoded.tensors[1].name, "a");
  EXPECT_EQ(decoded.tensors[0].data, std::vector<std::byte>(buffer.begin() + 4, buffer.end()));
  EXPECT_EQ(decoded.tensors[1].data, std::vector<std::byte>(buffer.begin(), buffer.begin() + 4));
  EXPECT_EQ(decoded.metadata, (string_map{{"k", "v"}}));
}

// --- the writer's checks --------------------------------------------------------------------

void expect_encode_refused(const safetensors_content& content, std::string_view message) {
  try {
    encode_safetensors(content);
    ADD_FAILURE() << "encoded content that should be refused (" << message << ")";
  } catch (const safetensors_error& error) {
    EXPECT_NE(std::string(error.what()).find(message), std::string::npos) << error.what();
  }
}

TEST(safetensors_writer, refuses_inconsistent_content) {
  safetensors_content duplicate;
  duplicate.tensors.push_back(patterned_tensor("w", tensor_dtype::f32, {2}, 1));
  duplicate.tensors.push_back(patterned_tensor("v", tensor_dtype::u8, {2}, 2));
  duplicate.tensors.push_back(patterned_tensor("w", tensor_dtype::u8, {1}, 3));
  expect_encode_refused(duplicate, "two tensors are named \"w\"");

  safetensors_content too_short;
  too_short.tensors.push_back(patterned_tensor("w", tensor_dtype::f32, {2, 2}, 1));
  too_short.tensors[0].data.pop_back();
  expect_encode_refused(too_short, "has 15 bytes of data, but shape [2, 2] of F32 needs 16");

  safetensors_content too_long;
  too_long.tensors.push_back(patterned_tensor("w", tensor_dtype::bf16, {}, 1));
  too_long.tensors[0].data.push_back(std::byte{0});
  expect_encode_refused(too_long, "has 3 bytes of data, but shape [] of BF16 needs 2");

  safetensors_content negative;
  negative.tensors.push_back({"w", tensor_dtype::f32, {-1}, {}});
  expect_encode_refused(negative, "invalid shape [-1]");

  safetensors_content overflowing;
  overflowing.tensors.push_back({"w", tensor_dtype::f64, {1ll << 31, 1ll << 31}, {}});
  expect_encode_refused(overflowing, "invalid shape");

  safetensors_content reserved;
  reserved.tensors.push_back(patterned_tensor("__metadata__", tensor_dtype::u8, {1}, 1));
  expect_encode_refused(reserved, "reserved");

  safetensors_content bad_name;
  bad_name.tensors.push_back(patterned_tensor("bad\xff", tensor_dtype::u8, {1}, 1));
  expect_encode_refused(bad_name, "not valid UTF-8");

  safetensors_content bad_metadata;
  bad_metadata.metadata["key"] = "\xc0\x80";
  expect_encode_refused(bad_metadata, "not valid UTF-8");
}

// --- malformed files ------------------------------------------------------------------------

// A valid file of two tensors, taken apart so that the cases below can edit it.
struct valid_file {
  std::string header; // without padding
  std::vector<std::byte> buffer;
  std::vector<std::byte> bytes;
};

const valid_file& base_file() {
  static const valid_file file = [] {
    safetensors_content content;
    content.tensors.push_back(tensor_of<float>("a", tensor_dtype::f32, {2}, {1.5f, -2.0f}));
    content.tensors.push_back(patterned_tensor("b", tensor_dtype::u8, {3}, 7));
    valid_file result;
    result.bytes = encode_safetensors(content);
    const uint64_t header_size = size_field_of(result.bytes);
    result.header = to_text(std::span(result.bytes).subspan(8, header_size));
    result.header.erase(result.header.find_last_not_of(' ') + 1);
    result.buffer.assign(result.bytes.begin() + 8 + static_cast<std::ptrdiff_t>(header_size),
                         result.bytes.end());
    return result;
  }();
  return file;
}

std::string replaced(std::string text, std::string_view from, std::string_view to) {
  const auto position = text.find(from);
  if (position == std::string::npos) throw std::logic_error("edit target not in header: " + std::string(from));
  return text.replace(position, from.size(), to);
}

using file_edit = std::function<std::vector<std::byte>(const valid_file&)>;

file_edit edit_header(std::string from, std::string to) {
  return [=](const valid_file& file) { return assemble(replaced(file.header, from, to), file.buffer); };
}

file_edit replace_header(std::string header) {
  return [=](const valid_file& file) { return assemble(header, file.buffer); };
}

file_edit with_size_field(std::function<uint64_t(const valid_file&)> size) {
  return [=](const valid_file& file) {
    auto bytes = file.bytes;
    const uint64_t value = size(file);
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<std::byte>((value >> (8 * i)) & 0xFF);
    return bytes;
  };
}

struct malformed_case {
  std::string name;
  file_edit make;
  std::string message; // a part of the error message that names this check
};

std::ostream& operator<<(std::ostream& out, const malformed_case& c) { return out << c.name; }

const std::string entry_a = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

std::vector<malformed_case> malformed_cases() {
  const auto prefix = [](std::size_t size) {
    return [=](const valid_file& file) {
      return std::vector<std::byte>(file.bytes.begin(), file.bytes.begin() + size);
    };
  };
  return {
      {"empty_file", prefix(0), "0 bytes long, shorter than the 8-byte header size field"},
      {"shorter_than_size_field", prefix(7), "7 bytes long, shorter than the 8-byte"},
      {"header_size_over_limit", with_size_field([](auto&) { return 100ull * 1024 * 1024 + 1; }),
       "header size 104857601 exceeds the limit of 104857600 bytes"},
      {"header_size_all_ones", with_size_field([](auto&) { return ~0ull; }), "exceeds the limit"},
      {"header_size_past_file",
       with_size_field([](const valid_file& f) { return f.bytes.size() - 8 + 1; }),
       "bytes that follow the size field"},
      {"header_size_cuts_json",
       with_size_field([](const valid_file& f) { return f.header.size() - 4; }), "not valid JSON"},
      {"header_size_zero", with_size_field([](auto&) { return 0ull; }), "not valid JSON"},
      {"invalid_utf8_byte", edit_header("\"b\"", "\"\xff\""), "not valid UTF-8"},
      {"overlong_utf8", edit_header("\"b\"", "\"\xc0\xa2\""), "not valid UTF-8"},
      {"utf8_surrogate", edit_header("\"b\"", "\"\xed\xa0\x80\""), "not valid UTF-8"},
      {"utf8_cut_sequence", edit_header("\"b\"", "\"\xe6\x97\""), "not valid UTF-8"},
      {"json_unclosed", [](const valid_file& f) { return assemble(f.header.substr(0, f.header.size() - 1) + " ", f.buffer); },
       "not valid JSON"},
      {"json_trailing_garbage", [](const valid_file& f) { return assemble(f.header + "x", f.buffer); },
       "not valid JSON"},
      {"json_single_quotes", edit_header("\"b\"", "'b'"), "not valid JSON"},
      {"header_is_array", replace_header("[]"), "header is array, not a JSON object"},
      {"header_is_string", replace_header("\"a\""), "header is string, not a JSON object"},
      {"header_is_null", replace_header("null"), "header is null, not a JSON object"},
      {"entry_is_number", edit_header(entry_a, R"("a":5)"), "entry \"a\" is number, not an object"},
      {"entry_is_array", edit_header(entry_a, R"("a":["F32",[2],[0,8]])"), "entry \"a\" is array, not an object"},
      {"entry_lacks_dtype", edit_header(R"("dtype":"F32",)", ""), "entry \"a\" lacks the field \"dtype\""},
      {"entry_lacks_shape", edit_header(R"("shape":[2],)", ""), "entry \"a\" lacks the field \"shape\""},
      {"entry_lacks_data_offsets", edit_header(R"(,"data_offsets":[0,8])", ""),
       "entry \"a\" lacks the field \"data_offsets\""},
      {"entry_has_extra_field", edit_header(R"([0,8]})", R"([0,8],"align":8})"),
       "entry \"a\" has an unknown field \"align\""},
      {"dtype_unknown", edit_header("\"F32\"", "\"F8_E4M3\""), "entry \"a\" has the unknown dtype \"F8_E4M3\""},
      {"dtype_lowercase", edit_header("\"F32\"", "\"f32\""), "unknown dtype \"f32\""},
      {"dtype_not_string", edit_header("\"F32\"", "4"), "dtype is number, not a string"},
      {"shape_not_array", edit_header("\"shape\":[2]", "\"shape\":2"), "shape is number, not an array"},
      {"shape_negative", edit_header("\"shape\":[2]", "\"shape\":[-2]"),
       "shape element 0 is -2, not a non-negative integer"},
      {"shape_float", edit_header("\"shape\":[2]", "\"shape\":[2.0]"), "shape element 0 is 2.0, not a non-negative integer"},
      {"shape_string", edit_header("\"shape\":[2]", "\"shape\":[\"2\"]"), "not a non-negative integer"},
      {"shape_nested", edit_header("\"shape\":[2]", "\"shape\":[1,[2]]"), "nests objects or arrays 4 levels deep"},
      {"shape_null", edit_header("\"shape\":[2]", "\"shape\":[null]"), "not a non-negative integer"},
      {"shape_beyond_uint64", edit_header("\"shape\":[2]", "\"shape\":[18446744073709551616]"),
       "not a non-negative integer"},
      {"shape_beyond_int64", edit_header("\"shape\":[2]", "\"shape\":[9223372036854775808]"),
       "does not fit in int64"},
      {"element_count_overflow", edit_header("\"shape\":[2]", "\"shape\":[4294967296,4294967296]"),
       "element count of shape [4294967296, 4294967296] overflows"},
      {"byte_size_overflow", edit_header("\"shape\":[2]", "\"shape\":[4611686018427387904]"),
       "byte size of shape [4611686018427387904] of F32 overflows"},
      {"offsets_not_array", edit_header("[0,8]", "8"), "data_offsets is 8, not an array of two"},
      {"offsets_one_integer", edit_header("[0,8]", "[8]"), "not an array of two non-negative integers"},
      {"offsets_three_integers", edit_header("[0,8]", "[0,8,8]"), "not an array of two"},
      {"offsets_negative", edit_header("[0,8]", "[-1,8]"), "not an array of two non-negative integers"},
      {"offsets_float", edit_header("[0,8]", "[0,8.0]"), "not an array of two non-negative integers"},
      {"offsets_strings", edit_header("[0,8]", "[\"0\",\"8\"]"), "not an array of two"},
      {"offsets_huge", edit_header("[8,11]", "[8,18446744073709551615]"), "ends past the 11-byte data buffer"},
      {"offsets_reversed", edit_header("[0,8]", "[8,0]"), "data_offsets [8,0] begins after it ends"},
      {"offsets_past_buffer", edit_header(R"("shape":[3],"data_offsets":[8,11])", R"("shape":[4],"data_offsets":[8,12])"),
       "entry \"b\": data_offsets [8,12] ends past the 11-byte data buffer"},
      {"byte_length_mismatch", edit_header("\"shape\":[2]", "\"shape\":[1]"),
       "data_offsets [0,8] hold 8 bytes, but shape [1] of F32 needs 4"},
      {"entries_overlap", edit_header("[8,11]", "[4,7]"), "entries \"a\" [0, 8) and \"b\" [4, 7) overlap"},
      {"empty_entry_inside_another", edit_header(R"("shape":[3],"data_offsets":[8,11])", R"("shape":[0],"data_offsets":[4,4])"),
       "overlap"},
      {"gap_between_entries", edit_header(R"("shape":[3],"data_offsets":[8,11])", R"("shape":[2],"data_offsets":[9,11])"),
       "bytes [8, 9) of the data buffer belong to no tensor"},
      {"gap_at_start", edit_header("[0,8]", "[1,9]"), "bytes [0, 1) of the data buffer belong to no tensor"},
      {"trailing_bytes",
       [](const valid_file& f) {
         auto buffer = f.buffer;
         buffer.push_back(std::byte{0});
         return assemble(f.header, buffer);
       },
       "the data buffer has 1 trailing bytes after the last tensor"},
      {"buffer_without_tensors", replace_header("{}"), "the data buffer has 11 trailing bytes"},
      {"duplicate_tensor_name", edit_header("\"b\"", "\"a\""), "header has two entries named \"a\""},
      {"duplicate_field", edit_header(R"("shape":[2],)", R"("shape":[2],"dtype":"F32",)"),
       "has the key \"dtype\" twice"},
      {"metadata_is_string", edit_header("{\"a\"", R"({"__metadata__":"x","a")"),
       "\"__metadata__\" is string, not an object of strings"},
      {"metadata_is_array", edit_header("{\"a\"", R"({"__metadata__":["k","v"],"a")"),
       "\"__metadata__\" is array, not an object of strings"},
      {"metadata_value_number", edit_header("{\"a\"", R"({"__metadata__":{"k":1},"a")"),
       "\"__metadata__\" value for \"k\" is number, not a string"},
      {"metadata_value_object", edit_header("{\"a\"", R"({"__metadata__":{"k":{}},"a")"),
       "value for \"k\" is object, not a string"},
      {"metadata_value_null", edit_header("{\"a\"", R"({"__metadata__":{"k":null},"a")"),
       "value for \"k\" is null, not a string"},
      {"metadata_duplicate_key", edit_header("{\"a\"", R"({"__metadata__":{"k":"1","k":"2"},"a")"),
       "has the key \"k\" twice"},
      {"metadata_twice", edit_header("{\"a\"", R"({"__metadata__":{},"__metadata__":{},"a")"),
       "two entries named \"__metadata__\""},
      {"nesting_too_deep", edit_header("{\"a\"", "{\"__metadata__\":{\"k\":{\"deeper\":{}}},\"a\""),
       "nests objects or arrays 4 levels deep"},
      {"nesting_hostile", edit_header("{\"a\"", "{\"x\":" + std::string(100000, '[') + std::string(100000, ']') + ",\"a\""),
       "nests objects or arrays 4 levels deep"},
  };
}

class safetensors_malformed : public ::testing::TestWithParam<malformed_case> {};

TEST_P(safetensors_malformed, decode_refuses_with_a_clear_message) {
  const auto bytes = GetParam().make(base_file());
  try {
    decode_safetensors(bytes);
    ADD_FAILURE() << "accepted a malformed file: " << to_text(bytes);
  } catch (const safetensors_error& error) {
    EXPECT_NE(std::string(error.what()).find(GetParam().message), std::string::npos)
        << "message: " << error.what() << "\nexpected to contain: " << GetParam().message;
  }
}

TEST_P(safetensors_malformed, read_file_refuses_and_names_the_path) {
  temporary_directory directory;
  const auto path = directory.path() / "corrupt.safetensors";
  write_bytes(path, GetParam().make(base_file()));
  try {
    read_safetensors_file(path);
    ADD_FAILURE() << "accepted a malformed file";
  } catch (const safetensors_error& error) {
    const std::string message = error.what();
    EXPECT_EQ(message.rfind(path.string() + ": ", 0), 0u) << message;
    EXPECT_NE(message.find(GetParam().message), std::string::npos) << message;
  }
}

INSTANTIATE_TEST_SUITE_P(corpus, safetensors_malformed, ::testing::ValuesIn(malformed_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(safetensors_malformed_base, the_unedited_file_is_valid) {
  EXPECT_EQ(base_file().header,
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
            R"("b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}})");
  const auto decoded = decode_safetensors(assemble(base_file().header, base_file().buffer));
  ASSERT_EQ(decoded.tensors.size(), 2u);
  EXPECT_EQ(decoded.tensors[1].data.size(), 3u);
}

safetensors_content small_content() {
  safetensors_content content;
  content.metadata["format"] = "pt";
  content.tensors.push_back(patterned_tensor("w", tensor_dtype::f32, {2, 2}, 1));
  content.tensors.push_back(patterned_tensor("empty", tensor_dtype::f16, {0}, 2));
  content.tensors.push_back(patterned_tensor("b", tensor_dtype::u8, {3}, 3));
  return content;
}

TEST(safetensors_truncation, every_prefix_of_a_valid_file_is_refused) {
  const auto bytes = encode_safetensors(small_content());
  ASSERT_NO_THROW(decode_safetensors(bytes));
  for (std::size_t size = 0; size < bytes.size(); ++size) {
    // A copy of exactly that size, so that an over-read would hit the sanitizer's red zone.
    const std::vector<std::byte> prefix(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(size));
    EXPECT_THROW(decode_safetensors(prefix), safetensors_error) << "prefix of " << size << " bytes";
  }
}

TEST(safetensors_truncation, every_truncated_file_is_refused) {
  const auto bytes = encode_safetensors(small_content());
  temporary_directory directory;
  const auto path = directory.path() / "truncated.safetensors";
  for (std::size_t size = 0; size < bytes.size(); ++size) {
    write_bytes(path, std::span(bytes).first(size));
    EXPECT_THROW(read_safetensors_file(path), safetensors_error) << "file of " << size << " bytes";
  }
}

TEST(safetensors_corruption, random_byte_changes_are_decoded_or_refused_never_crash) {
  const auto bytes = encode_safetensors(small_content());
  std::mt19937 random(20240531);
  int refused = 0;
  for (int trial = 0; trial < 5000; ++trial) {
    auto corrupt = bytes;
    const int changes = 1 + trial % 4;
    for (int c = 0; c < changes; ++c) {
      const std::size_t position = random() % corrupt.size();
      corrupt[position] = static_cast<std::byte>(random() & 0xFF);
    }
    try {
      const auto decoded = decode_safetensors(corrupt);
      for (const auto& tensor : decoded.tensors)
        EXPECT_EQ(tensor.data.size(), static_cast<std::size_t>(tensor.numel()) * dtype_size(tensor.dtype));
    } catch (const safetensors_error&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 1000); // most changes land in the header or size field
}

// --- files ----------------------------------------------------------------------------------

TEST(safetensors_file, write_leaves_only_the_target_and_replaces_an_old_file) {
  temporary_directory directory;
  const auto path = directory.path() / "model.safetensors";
  write_safetensors_file(path, small_content());
  EXPECT_EQ(listing(directory.path()), std::vector<std::string>{"model.safetensors"});
  expect_same_content(small_content(), read_safetensors_file(path));

  safetensors_content replacement;
  replacement.tensors.push_back(patterned_tensor("other", tensor_dtype::i64, {5}, 9));
  write_safetensors_file(path, replacement);
  EXPECT_EQ(listing(directory.path()), std::vector<std::string>{"model.safetensors"});
  expect_same_content(replacement, read_safetensors_file(path));
}

// A writer killed in the middle of a write leaves its temporary file; the next start removes the
// files of dead writers and keeps those of live ones, and everything that is not a temporary.
TEST(safetensors_file, temporaries_of_dead_writers_are_removed_and_others_kept) {
  temporary_directory directory;
  const auto write = [&](const std::string& name, size_t bytes) {
    std::ofstream(directory.path() / name) << std::string(bytes, 'x');
  };
  // 4194305 is above any Linux pid: that writer is dead.
  write(".step_000000000010.safetensors.tmp-4194305-0", 1000);
  write(".step_000000000020.safetensors.tmp-4194305-7", 500);
  // Our own pid (a write in progress) and pid 1 (alive since before the file was written).
  write(".step_000000000030.safetensors.tmp-" + std::to_string(::getpid()) + "-0", 10);
  write(".step_000000000040.safetensors.tmp-1-0", 10);
  write("step_000000000050.safetensors", 10);
  write(".notes.tmp-12x-0", 10);
  const auto removed = remove_stale_temporaries(directory.path());
  EXPECT_EQ(removed.paths.size(), 2u);
  EXPECT_EQ(removed.bytes, 1500u);
  EXPECT_EQ(listing(directory.path()),
            (std::vector<std::string>{".notes.tmp-12x-0",
                                      ".step_000000000030.safetensors.tmp-" +
                                        std::to_string(::getpid()) + "-0",
                                      ".step_000000000040.safetensors.tmp-1-0",
                                      "step_000000000050.safetensors"}));
  EXPECT_TRUE(remove_stale_temporaries(directory.path() / "missing").paths.empty());
}

TEST(safetensors_file, write_into_a_missing_directory_fails_naming_the_path) {
  temporary_directory directory;
  const auto path = directory.path() / "missing" / "model.safetensors";
  try {
    write_safetensors_file(path, small_content());
    ADD_FAILURE() << "wrote into a missing directory";
  } catch (const safetensors_error& error) {
    const std::string message = error.what();
    EXPECT_EQ(message.rfind(path.string() + ": ", 0), 0u) << message;
    EXPECT_NE(message.find("cannot create the temporary file"), std::string::npos) << message;
  }
  EXPECT_TRUE(listing(directory.path()).empty());
}

TEST(safetensors_file, refused_content_leaves_the_old_file_untouched) {
  temporary_directory directory;
  const auto path = directory.path() / "model.safetensors";
  write_safetensors_file(path, small_content());
  const auto old_bytes = read_bytes(path);
  auto bad = small_content();
  bad.tensors.push_back(bad.tensors[0]);
  EXPECT_THROW(write_safetensors_file(path, bad), safetensors_error);
  EXPECT_EQ(read_bytes(path), old_bytes);
  EXPECT_EQ(listing(directory.path()), std::vector<std::string>{"model.safetensors"});
}

// Restores the file size limit and SIGXFSZ's disposition however the test ends.
class file_size_limit {
public:
  explicit file_size_limit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    saved_handler_ = std::signal(SIGXFSZ, SIG_IGN); // make write() fail with EFBIG instead
    rlimit limited = saved_;
    limited.rlim_cur = bytes;
    active_ = ::setrlimit(RLIMIT_FSIZE, &limited) == 0;
  }
  ~file_size_limit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, saved_handler_);
  }
  bool active() const { return active_; }

private:
  rlimit saved_{};
  void (*saved_handler_)(int) = nullptr;
  bool active_ = false;
};

TEST(safetensors_file, a_write_failing_midway_removes_its_temporary_and_keeps_the_old_file) {
  temporary_directory directory;
  const auto path = directory.path() / "model.safetensors";
  write_safetensors_file(path, small_content());
  const auto old_bytes = read_bytes(path);

  safetensors_content large;
  large.tensors.push_back(patterned_tensor("big", tensor_dtype::f32, {256, 1024}, 5)); // 1 MiB
  {
    file_size_limit limit(64 * 1024);
    ASSERT_TRUE(limit.active());
    try {
      write_safetensors_file(path, large);
      ADD_FAILURE() << "a write past the file size limit succeeded";
    } catch (const safetensors_error& error) {
      EXPECT_NE(std::string(error.what()).find("write failed"), std::string::npos) << error.what();
    }
  }
  EXPECT_EQ(read_bytes(path), old_bytes);
  EXPECT_EQ(listing(directory.path()), std::vector<std::string>{"model.safetensors"});
}

TEST(safetensors_file, a_failed_rename_removes_the_temporary) {
  temporary_directory directory;
  const auto path = directory.path() / "model.safetensors";
  fs::create_directories(path / "occupied"); // a non-empty directory cannot be renamed over
  EXPECT_THROW(write_safetensors_file(path, small_content()), safetensors_error);
  EXPECT_EQ(listing(directory.path()), std::vector<std::string>{"model.safetensors"});
  EXPECT_TRUE(fs::is_directory(path / "occupied"));
}

TEST(safetensors_file, write_into_a_read_only_directory_keeps_the_old_file) {
  if (::geteuid() == 0)
    GTEST_SKIP() << "root ignores directory permissions; the file size limit test covers a failed write";
  temporary_directory directory;
  const auto path = directory.path() / "model.safetensors";
  write_safetensors_file(path, small_content());
  const auto old_bytes = read_bytes(path);
  fs::permissions(directory.path(), fs::perms::owner_read | fs::perms::owner_exec);
  EXPECT_THROW(write_safetensors_file(path, {}), safetensors_error);
  fs::permissions(directory.path(), fs::perms::owner_all);
  EXPECT_EQ(read_bytes(path), old_bytes);
  EXPECT_EQ(listing(directory.path()), std::vector<std::string>{"model.safetensors"});
}

TEST(safetensors_file, reading_what_is_not_a_file_names_the_path) {
  temporary_directory directory;
  const auto missing = directory.path() / "absent.safetensors";
  try {
    read_safetensors_file(missing);
    ADD_FAILURE();
  } catch (const safetensors_error& error) {
    EXPECT_NE(std::string(error.what()).find(missing.string() + ": cannot open"), std::string::npos)
        << error.what();
  }
  try {
    read_safetensors_file(directory.path());
    ADD_FAILURE();
  } catch (const safetensors_error& error) {
    EXPECT_NE(std::string(error.what()).find("not a regular file"), std::string::npos) << error.what();
  }
}

// --- Python and PyTorch read what ddactor writes -------------------------------------------

std::string shell_quoted(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string run_and_capture(const std::string& command, int& status) {
  std::string output;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) {
    status = -1;
    return output;
  }
  char chunk[4096];
  while (const std::size_t got = std::fread(chunk, 1, sizeof chunk, pipe)) output.append(chunk, got);
  status = ::pclose(pipe);
  return output;
}

TEST(safetensors_interop, python_and_pytorch_read_what_ddactor_writes) {
#ifndef DDACTOR_SOURCE_DIR
  GTEST_SKIP() << "DDACTOR_SOURCE_DIR is not defined for this test binary";
#else
  const std::string python = "/usr/bin/python3";
  if (std::system((python + " -c 'import numpy' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << python << " cannot import numpy; the Python interoperability check is skipped";
  const bool has_torch = std::system((python + " -c 'import torch' >/dev/null 2>&1").c_str()) == 0;

  struct expectation {
    std::string name;
    std::string torch_dtype;
    double sum;
  };
  safetensors_content content;
  content.metadata = {{"format", "pt"}, {"note", "ünïcødé ✓"}};
  std::vector<expectation> expected;
  const auto add = [&](stored_tensor tensor, std::string torch_dtype, double sum) {
    expected.push_back({tensor.name, std::move(torch_dtype), sum});
    content.tensors.push_back(std::move(tensor));
  };
  add(tensor_of<float>("weights.f32", tensor_dtype::f32, {2, 3}, {1.5f, -2.25f, 3.0f, 0.125f, 100.0f, -0.5f}),
      "torch.float32", 101.875);
  add(tensor_of<double>("f64", tensor_dtype::f64, {2}, {1e10, -2.5}), "torch.float64", 1e10 - 2.5);
  // F16 bits of 1, 2, -0.5, 0.25; BF16 bits of 1, 3, -2, 0.5.
  add(tensor_of<uint16_t>("half", tensor_dtype::f16, {4}, {0x3C00, 0x4000, 0xB800, 0x3400}),
      "torch.float16", 2.75);
  add(tensor_of<uint16_t>("brain", tensor_dtype::bf16, {2, 2}, {0x3F80, 0x4040, 0xC000, 0x3F00}),
      "torch.bfloat16", 2.5);
  add(tensor_of<int64_t>("step", tensor_dtype::i64, {}, {int64_t{1} << 40}), "torch.int64",
      static_cast<double>(int64_t{1} << 40));
  add(tensor_of<int32_t>("i32", tensor_dtype::i32, {3}, {-7, 100000, 3}), "torch.int32", 99996);
  add(tensor_of<int16_t>("i16", tensor_dtype::i16, {2}, {-300, 1200}), "torch.int16", 900);
  add(tensor_of<int8_t>("i8", tensor_dtype::i8, {4}, {-128, 127, 1, -1}), "torch.int8", -1);
  add(tensor_of<uint8_t>("u8", tensor_dtype::u8, {2, 2}, {255, 1, 2, 3}), "torch.uint8", 261);
  add(tensor_of<uint8_t>("mask", tensor_dtype::boolean, {3}, {1, 0, 1}), "torch.bool", 2);
  add(tensor_of<float>("empty", tensor_dtype::f32, {0, 3}, {}), "torch.float32", 0);
  add(tensor_of<float>("größe/μ", tensor_dtype::f32, {1}, {4.0f}), "torch.float32", 4);

  temporary_directory directory;
  const auto path = directory.path() / "interop.safetensors";
  write_safetensors_file(path, content);
  const std::string script = std::string(DDACTOR_SOURCE_DIR) + "/tests/tools/read_safetensors.py";
  int status = 0;
  const std::string output =
      run_and_capture(shell_quoted(python) + " " + shell_quoted(script) + " " + shell_quoted(path.string()), status);
  ASSERT_EQ(status, 0) << "the Python reader failed; its output: " << output;
  const auto summary = nlohmann::json::parse(output);

  EXPECT_EQ(summary.at("__metadata__").get<string_map>(), content.metadata);
  ASSERT_EQ(summary.size(), expected.size() + 1);
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto& tensor = content.tensors[i];
    const auto& entry = summary.at(expected[i].name);
    EXPECT_EQ(entry.at("dtype"), std::string(dtype_name(tensor.dtype))) << tensor.name;
    EXPECT_EQ(entry.at("shape").get<std::vector<int64_t>>(), tensor.shape) << tensor.name;
    if (entry.at("sum").is_number_integer())
      EXPECT_EQ(entry.at("sum").get<int64_t>(), static_cast<int64_t>(expected[i].sum)) << tensor.name;
    else
      EXPECT_DOUBLE_EQ(entry.at("sum").get<double>(), expected[i].sum) << tensor.name;
    if (has_torch) {
      EXPECT_EQ(entry.at("torch_dtype"), expected[i].torch_dtype) << tensor.name;
    }
  }
#endif
}

} // namespace
} // namespace ddactor
