#pragma once
// Building codecs by name (as the TOML config names them) and decoding any frame without knowing
// its codec in advance.
#include "runtime/compression/tensor_codec.hpp"

#include <memory>
#include <span>
#include <string_view>

namespace ddactor {

// "none", "fp16", "bf16", "int8" or "topk". Throws codec_error on an unknown name or
// invalid options. Each call returns a fresh instance (for top-k: a fresh error-feedback stream).
std::unique_ptr<tensor_codec> make_codec(std::string_view name, const codec_options& options);

// Decodes a frame of any codec into `out` (size = the frame's element count), dispatching on the
// codec id in its header. Same guarantees and errors as tensor_codec::decode. Thread-safe.
void decode_any(std::span<const std::byte> encoded, std::span<float> out);

} // namespace ddactor
