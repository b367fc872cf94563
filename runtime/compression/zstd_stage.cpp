// ZSTD_compress/ZSTD_decompress behind codec_error. Decompression is single-shot into a buffer
// whose capacity the caller derived from the element count it expects; zstd refuses to write past
// it ("destination buffer too small"), so the content size a frame declares is never trusted.
#include "runtime/compression/zstd_stage.hpp"

#include "runtime/compression/tensor_codec.hpp"

#include <string>

#include <zstd.h>

namespace ddactor {

int zstd_max_level() noexcept {
  return ZSTD_maxCLevel();
}

std::vector<std::byte> zstd_compress(std::span<const std::byte> input, int level) {
  std::vector<std::byte> output(ZSTD_compressBound(input.size()));
  const std::size_t written =
    ZSTD_compress(output.data(), output.size(), input.data(), input.size(), level);
  if (ZSTD_isError(written) != 0)
    throw codec_error(std::string("zstd compression failed: ") + ZSTD_getErrorName(written));
  output.resize(written);
  return output;
}

std::size_t zstd_decompress(std::span<const std::byte> input, std::span<std::byte> output) {
  const std::size_t written =
    ZSTD_decompress(output.data(), output.size(), input.data(), input.size());
  if (ZSTD_isError(written) != 0)
    throw codec_error(std::string("zstd payload rejected (") + ZSTD_getErrorName(written) +
                      ", at most " + std::to_string(output.size()) + " bytes expected)");
  return written;
}

} // namespace ddactor
