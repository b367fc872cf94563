// Fuzz target for the codecs: whatever bytes a peer sends, decoding must either succeed
// with finite values or throw codec_error; never crash, read out of bounds, hang or allocate
// without bound. Each input is tried three ways:
//   1. as a whole frame, through decode_any and through every codec's own decode;
//   2. as a payload behind a valid header built from its first 5 bytes (codec and zstd flag, u16
//      element count, u16 codec parameter), so the fuzzer reaches payload parsing without having
//      to guess the magic and the size fields first;
//   3. as float32 values that every codec (zstd on and off) encodes, NaN/Inf refused, and whose
//      frame must decode, to exactly the input for `none`.
// A successful decode of an uncompressed none/fp16/bf16 frame must re-encode to the same payload
// (those decoders accept exactly the encoders' outputs). Violations abort via __builtin_trap.
// Built with a plain main() (fuzz_driver_main.cpp) for CI, or under libFuzzer with clang.
#include "runtime/compression/codec_factory.hpp"
#include "runtime/compression/codec_frame.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

namespace {

using namespace ddactor;

// Outputs are sized from the frame; beyond this the input is only checked against a small output.
constexpr std::uint64_t max_fuzz_elements = 1 << 16;

const std::vector<std::unique_ptr<tensor_codec>>& all_codecs() {
  static const std::vector<std::unique_ptr<tensor_codec>> codecs = [] {
    std::vector<std::unique_ptr<tensor_codec>> made;
    for (const char* name : {"none", "fp16", "bf16", "int8", "topk"})
      made.push_back(make_codec(name, codec_options{}));
    return made;
  }();
  return codecs;
}

void require_finite(std::span<const float> values) {
  for (const float v : values)
    if (!std::isfinite(v))
      __builtin_trap();
}

// Decoders that accept exactly what their encoder produces must reproduce the payload.
void require_canonical(std::span<const std::byte> frame, std::span<const float> decoded) {
  const frame_header header = read_frame_header(frame);
  if (header.zstd)
    return;
  std::unique_ptr<tensor_codec> codec;
  switch (header.codec) {
    case codec_id::none: codec = make_codec("none", codec_options{}); break;
    case codec_id::fp16: codec = make_codec("fp16", codec_options{}); break;
    case codec_id::bf16: codec = make_codec("bf16", codec_options{}); break;
    default: return;
  }
  const std::vector<std::byte> again = codec->encode(decoded);
  if (again.size() != frame.size() ||
      std::memcmp(again.data() + frame_header_size, frame.data() + frame_header_size,
                  frame.size() - frame_header_size) != 0)
    __builtin_trap();
}

void decode_everywhere(std::span<const std::byte> frame, std::size_t elements) {
  std::vector<float> out(elements);
  try {
    decode_any(frame, out);
    require_finite(out);
    require_canonical(frame, out);
  } catch (const codec_error&) {
    require_finite(out);
  }
  for (const auto& codec : all_codecs()) {
    try {
      codec->decode(frame, out);
    } catch (const codec_error&) {
    }
    require_finite(out);
  }
}

const std::vector<std::unique_ptr<tensor_codec>>& encoders() {
  static const std::vector<std::unique_ptr<tensor_codec>> codecs = [] {
    std::vector<std::unique_ptr<tensor_codec>> made;
    for (const int zstd_level : {0, 1}) {
      codec_options options;
      options.int8_block_size = 5;
      options.topk_fraction = 0.3;
      options.zstd_level = zstd_level;
      for (const char* name : {"none", "fp16", "bf16", "int8", "topk"})
        made.push_back(make_codec(name, options));
    }
    return made;
  }();
  return codecs;
}

void round_trip_everywhere(std::span<const float> values) {
  bool finite = true;
  for (const float v : values)
    finite = finite && std::isfinite(v);
  std::vector<float> out(values.size());
  for (const auto& codec : encoders()) {
    std::vector<std::byte> frame;
    try {
      frame = codec->encode(values);
    } catch (const codec_error&) {
      if (finite)  // every codec encodes finite values (top-k keeps no residual to overflow)
        __builtin_trap();
      continue;
    }
    if (!finite)
      __builtin_trap();
    try {
      decode_any(frame, out);
    } catch (const codec_error&) {
      __builtin_trap(); // an honest frame must always decode
    }
    require_finite(out);
    if (codec->id() == codec_id::none &&
        (!values.empty() && std::memcmp(out.data(), values.data(), values.size_bytes()) != 0))
      __builtin_trap();
  }
}

std::size_t declared_elements(std::span<const std::byte> frame) {
  if (frame.size() < frame_header_size)
    return 3;
  std::uint64_t count;
  std::memcpy(&count, frame.data() + 8, 8);
  return count <= max_fuzz_elements ? static_cast<std::size_t>(count) : 3;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  decode_everywhere(bytes, declared_elements(bytes));

  if (size >= 5) {
    // Small sizes and parameters keep the fuzzer in the region where payloads can be complete.
    const auto selector = std::to_integer<std::uint8_t>(bytes[0]);
    std::uint16_t elements;
    std::uint16_t parameter;
    std::memcpy(&elements, data + 1, 2);
    std::memcpy(&parameter, data + 3, 2);
    const frame_header header{static_cast<codec_id>(selector % 5), (selector & 0x80) != 0,
                              elements, parameter};
    std::vector<std::byte> frame = start_frame(header, size - 5);
    std::memcpy(frame.data() + frame_header_size, data + 5, size - 5);
    if (header.zstd)
      frame[4] = std::byte{frame_flag_zstd};
    decode_everywhere(frame, elements);
  }
  std::vector<float> values(size / 4);
  if (!values.empty())
    std::memcpy(values.data(), data, 4 * values.size());
  round_trip_everywhere(values);
  return 0;
}
