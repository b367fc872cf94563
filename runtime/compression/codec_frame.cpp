// Writing and validating frame headers, and the zstd stage around payloads. Every check here
// runs before a payload byte is read, so a codec's decoder only ever sees a payload whose length
// lies in the range it asked for.
#include "runtime/compression/codec_frame.hpp"

#include "runtime/compression/zstd_stage.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <string>

namespace ddactor {
namespace {

static_assert(std::endian::native == std::endian::little,
              "frames are little-endian and written with memcpy; add byte swaps for this host");

constexpr std::byte magic_0{'D'};
constexpr std::byte magic_1{'C'};
constexpr std::size_t flags_offset = 4;

template <class T> T load(const std::byte* at) noexcept {
  T value;
  std::memcpy(&value, at, sizeof(T));
  return value;
}

template <class T> void store(std::byte* at, T value) noexcept {
  std::memcpy(at, &value, sizeof(T));
}

bool is_wire_codec(std::uint8_t id) noexcept {
  return id <= static_cast<std::uint8_t>(codec_id::topk);
}

} // namespace

std::vector<std::byte> start_frame(const frame_header& header, std::size_t payload_bytes) {
  if (header.element_count > max_frame_elements)
    throw codec_error("cannot encode " + std::to_string(header.element_count) +
                      " values in one frame (at most " + std::to_string(max_frame_elements) + ")");
  std::vector<std::byte> frame(frame_header_size + payload_bytes);
  std::byte* at = frame.data();
  at[0] = magic_0;
  at[1] = magic_1;
  at[2] = std::byte{frame_version};
  at[3] = static_cast<std::byte>(header.codec);
  at[flags_offset] = std::byte{0};
  store<std::uint64_t>(at + 8, header.element_count);
  store<std::uint32_t>(at + 16, header.parameter);
  return frame;
}

void seal_frame(std::vector<std::byte>& frame, int zstd_level) {
  if (zstd_level <= 0 || frame.size() <= frame_header_size)
    return;
  const std::span<const std::byte> payload(frame.data() + frame_header_size,
                                           frame.size() - frame_header_size);
  const std::vector<std::byte> compressed = zstd_compress(payload, zstd_level);
  // Incompressible payloads (random mantissas) go raw: the receiver then skips decompression.
  if (compressed.size() >= payload.size())
    return;
  std::memcpy(frame.data() + frame_header_size, compressed.data(), compressed.size());
  frame.resize(frame_header_size + compressed.size());
  frame[flags_offset] |= std::byte{frame_flag_zstd};
}

frame_header read_frame_header(std::span<const std::byte> encoded) {
  if (encoded.size() < frame_header_size)
    throw codec_error("codec frame of " + std::to_string(encoded.size()) +
                      " bytes is shorter than its " + std::to_string(frame_header_size) +
                      "-byte header");
  const std::byte* at = encoded.data();
  if (at[0] != magic_0 || at[1] != magic_1)
    throw codec_error("codec frame does not start with the magic bytes 'DC'");
  if (at[2] != std::byte{frame_version})
    throw codec_error("codec frame has version " + std::to_string(std::to_integer<int>(at[2])) +
                      ", this build reads version " + std::to_string(frame_version));
  const auto id = std::to_integer<std::uint8_t>(at[3]);
  if (!is_wire_codec(id))
    throw codec_error("codec frame names unknown codec id " + std::to_string(id));
  const auto flags = std::to_integer<std::uint8_t>(at[flags_offset]);
  if ((flags & ~frame_flag_zstd) != 0)
    throw codec_error("codec frame has unknown flags " + std::to_string(flags));
  if (at[5] != std::byte{0} || at[6] != std::byte{0} || at[7] != std::byte{0})
    throw codec_error("codec frame has non-zero reserved header bytes");
  frame_header header;
  header.codec = static_cast<codec_id>(id);
  header.zstd = (flags & frame_flag_zstd) != 0;
  header.element_count = load<std::uint64_t>(at + 8);
  header.parameter = load<std::uint32_t>(at + 16);
  if (header.element_count > max_frame_elements)
    throw codec_error("codec frame declares " + std::to_string(header.element_count) +
                      " elements, more than a frame may hold");
  return header;
}

frame_header read_frame_header_of(std::span<const std::byte> encoded, codec_id expected) {
  const frame_header header = read_frame_header(encoded);
  if (header.codec != expected)
    throw codec_error(std::string(codec_name(expected)) + " codec cannot decode a " +
                      std::string(codec_name(header.codec)) + " frame");
  return header;
}

void check_element_count(const frame_header& header, std::size_t out_size) {
  if (header.element_count != out_size)
    throw codec_error(std::string(codec_name(header.codec)) + " frame declares " +
                      std::to_string(header.element_count) + " elements but the output holds " +
                      std::to_string(out_size));
}

std::span<const std::byte> open_frame_payload(const frame_header& header,
                                              std::span<const std::byte> encoded,
                                              std::size_t min_bytes, std::size_t max_bytes,
                                              std::vector<std::byte>& storage) {
  const std::span<const std::byte> stored = encoded.subspan(frame_header_size);
  std::span<const std::byte> payload = stored;
  if (header.zstd) {
    // The encoder never flags an empty payload; refusing it keeps one encoding per content.
    if (stored.empty())
      throw codec_error(std::string(codec_name(header.codec)) +
                        " frame is flagged zstd but carries no compressed payload");
    storage.resize(max_bytes);
    storage.resize(zstd_decompress(stored, storage));
    payload = storage;
  }
  if (payload.size() < min_bytes || payload.size() > max_bytes) {
    const std::string expected = min_bytes == max_bytes
                                   ? std::to_string(min_bytes)
                                   : std::to_string(min_bytes) + ".." + std::to_string(max_bytes);
    throw codec_error(std::string(codec_name(header.codec)) + " frame of " +
                      std::to_string(header.element_count) + " elements has a " +
                      std::to_string(payload.size()) + "-byte payload, expected " + expected);
  }
  return payload;
}

void reject_non_finite_payload(codec_id id, std::span<float> out) {
  std::fill(out.begin(), out.end(), 0.0f);
  throw codec_error(std::string(codec_name(id)) +
                    " frame decodes to NaN or Inf values; refused so the model is not poisoned");
}

void reject_non_finite_input(codec_id id) {
  throw codec_error(std::string(codec_name(id)) + " codec refuses to encode NaN or Inf values");
}

} // namespace ddactor
