// The name -> codec table and the dispatch of decode_any on a frame's codec id.
#include "runtime/compression/codec_factory.hpp"

#include "runtime/compression/codec_frame.hpp"
#include "runtime/compression/half_codec.hpp"
#include "runtime/compression/int8_blockwise_codec.hpp"
#include "runtime/compression/none_codec.hpp"
#include "runtime/compression/topk_codec.hpp"

#include <string>

namespace ddactor {

std::unique_ptr<tensor_codec> make_codec(std::string_view name, const codec_options& options) {
  validate_codec_options(options);
  if (name == "none")
    return std::make_unique<none_codec>(options);
  if (name == "fp16")
    return std::make_unique<half_codec>(half_format::fp16, options);
  if (name == "bf16")
    return std::make_unique<half_codec>(half_format::bf16, options);
  if (name == "int8")
    return std::make_unique<int8_blockwise_codec>(options);
  if (name == "topk")
    return std::make_unique<topk_codec>(options);
  throw codec_error("unknown codec '" + std::string(name) +
                    "' (known: none, fp16, bf16, int8, topk)");
}

void decode_any(std::span<const std::byte> encoded, std::span<float> out) {
  const frame_header header = read_frame_header(encoded);
  switch (header.codec) {
    case codec_id::none: none_codec::decode_frame(header, encoded, out); return;
    case codec_id::fp16: half_codec::decode_frame(half_format::fp16, header, encoded, out); return;
    case codec_id::bf16: half_codec::decode_frame(half_format::bf16, header, encoded, out); return;
    case codec_id::int8_blockwise: int8_blockwise_codec::decode_frame(header, encoded, out); return;
    case codec_id::topk: topk_codec::decode_frame(header, encoded, out); return;
  }
  throw codec_error("codec frame names codec " + std::string(codec_name(header.codec)) +
                    ", which never appears on the wire");
}

} // namespace ddactor
