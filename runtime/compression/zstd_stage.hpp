#pragma once
// The zstd stage of the codecs: compression of a payload at a level, and decompression into a
// buffer of a size the caller bounds (so a hostile frame cannot make us allocate or write more).
#include <cstddef>
#include <span>
#include <vector>

namespace ddactor {

// Highest level libzstd accepts; codec options are checked against it.
int zstd_max_level() noexcept;

// ZSTD_compress at `level` (1 .. zstd_max_level()). Throws codec_error if zstd fails.
std::vector<std::byte> zstd_compress(std::span<const std::byte> input, int level);

// Decompresses every zstd frame in `input` into `output` and returns the bytes written. Throws
// codec_error if the data is corrupt or would not fit in `output`.
std::size_t zstd_decompress(std::span<const std::byte> input, std::span<std::byte> output);

} // namespace ddactor
