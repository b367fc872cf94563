#pragma once
// The frame every codec emits: a fixed 20-byte header followed by the codec's payload, optionally
// zstd-compressed. This file owns the header layout, its validation and the zstd stage around the
// payload, so that the codecs only produce and consume raw payloads.
//
// Header, all little-endian:
//   offset 0  u8[2] magic 'D' 'C'
//   offset 2  u8    version (1)
//   offset 3  u8    codec id (codec_id)
//   offset 4  u8    flags: bit 0 = payload is zstd-compressed; other bits must be 0
//   offset 5  u8[3] reserved, must be 0
//   offset 8  u64   element count (<= 2^32 - 1)
//   offset 16 u32   codec parameter: int8 block size, top-k kept count, else 0
#include "runtime/compression/tensor_codec.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace ddactor {

inline constexpr std::size_t frame_header_size = 20;
inline constexpr std::uint8_t frame_version = 1;
inline constexpr std::uint8_t frame_flag_zstd = 0x01;
// Top-k indices are u32; no chunk of a flat vector comes near 16 GiB of float32.
inline constexpr std::uint64_t max_frame_elements = 0xffffffffu;

struct frame_header {
  codec_id codec = codec_id::none;
  bool zstd = false;
  std::uint64_t element_count = 0;
  std::uint32_t parameter = 0;
};

// A frame of `payload_bytes` raw payload bytes with the header written and zstd flag clear; the
// payload starts at frame_header_size. Throws codec_error if element_count is too large.
std::vector<std::byte> start_frame(const frame_header& header, std::size_t payload_bytes);

// Compresses the payload of a frame made by start_frame in place when zstd_level > 0 and the
// result is smaller, and sets the zstd flag then.
void seal_frame(std::vector<std::byte>& frame, int zstd_level);

// Parses the header, checking the length, magic, version, codec id, flags and reserved bytes.
frame_header read_frame_header(std::span<const std::byte> encoded);

// read_frame_header, then throws codec_error unless the frame is of codec `expected` (a codec's
// own decode() refuses other codecs' frames; decode_any dispatches on the id instead).
frame_header read_frame_header_of(std::span<const std::byte> encoded, codec_id expected);

// Throws codec_error unless the frame's element count equals the caller's output size.
void check_element_count(const frame_header& header, std::size_t out_size);

// The raw payload of a frame, whose size must lie in [min_bytes, max_bytes]: a view into `encoded`,
// or into `storage` after zstd decompression bounded by max_bytes (the bound comes from the
// element count the caller checked, never from the zstd frame's own declarations).
std::span<const std::byte> open_frame_payload(const frame_header& header,
                                              std::span<const std::byte> encoded,
                                              std::size_t min_bytes, std::size_t max_bytes,
                                              std::vector<std::byte>& storage);

// Called by a decoder that found a non-finite value while writing `out`: zero-fills `out` so that
// no NaN/Inf survives, then throws codec_error naming the codec.
[[noreturn]] void reject_non_finite_payload(codec_id id, std::span<float> out);

// Called by an encoder that found a NaN or Inf in its input.
[[noreturn]] void reject_non_finite_input(codec_id id);

} // namespace ddactor
