// Codec names and the validation of codec options; the interface itself is in the header.
#include "runtime/compression/tensor_codec.hpp"

#include "runtime/compression/zstd_stage.hpp"

#include <cmath>
#include <string>

namespace ddactor {

std::string_view codec_name(codec_id id) noexcept {
  switch (id) {
    case codec_id::none: return "none";
    case codec_id::fp16: return "fp16";
    case codec_id::bf16: return "bf16";
    case codec_id::int8_blockwise: return "int8";
    case codec_id::topk: return "topk";
  }
  return "unknown";
}

void validate_codec_options(const codec_options& options) {
  // Large blocks would let one outlier flatten a whole tensor; 2^20 is far past any useful size.
  if (options.int8_block_size < 1 || options.int8_block_size > (1 << 20))
    throw codec_error("codec option int8_block_size = " + std::to_string(options.int8_block_size) +
                      " is outside 1 .. 1048576");
  if (!(options.topk_fraction > 0.0 && options.topk_fraction <= 1.0))
    throw codec_error("codec option topk_fraction = " + std::to_string(options.topk_fraction) +
                      " is outside (0, 1]");
  if (options.zstd_level < 0 || options.zstd_level > zstd_max_level())
    throw codec_error("codec option zstd_level = " + std::to_string(options.zstd_level) +
                      " is outside 0 (off) .. " + std::to_string(zstd_max_level()));
}

} // namespace ddactor
