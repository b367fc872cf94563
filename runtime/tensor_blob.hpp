#pragma once
// The wire form of a tensor chunk: how a part of the flat vector (or any tensor) crosses the network
// between peers, as bytes with a shape, a dtype, a codec and a checksum. Tensors never travel as
// torch::Tensor or as std::vector<float> (CAF serializes those element by element, ~20x slower than
// a byte buffer). This file knows nothing of CAF or LibTorch; the CAF `inspect` overload lives with
// the project's type-ID block.
//
// The checksum detects corruption (a flipped bit in memory, a buggy codec, a truncated buffer
// reassembled wrongly), not attackers: it is a fast non-cryptographic hash, and anyone can compute a
// matching checksum for forged bytes. Authenticity is the transport's job.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace ddactor {

// Thrown when a blob is used as something it is not (e.g. read as float32 when it holds int8).
class blob_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// Element types, as stored in tensor_blob::dtype. Values are part of the wire format: append only.
enum class blob_dtype : std::uint8_t {
  float32 = 0,
  float16 = 1,
  bfloat16 = 2,
  float64 = 3,
  int8 = 4,
  uint8 = 5,
  int32 = 6,
  int64 = 7,
};

// Bytes per element of a dtype code, or nothing for an unknown code.
std::optional<std::size_t> dtype_size(std::uint8_t dtype) noexcept;

// tensor_blob::codec for raw little-endian elements. The compression codecs own the other codes;
// for them the byte count is the codec's business and validate_blob only bounds it.
inline constexpr std::uint8_t blob_codec_none = 0;

struct tensor_blob {
  std::uint64_t round_id = 0;    // the averaging round the chunk belongs to (stale chunks are refused)
  std::uint32_t part_index = 0;  // which butterfly part
  std::uint64_t offset = 0;      // element offset of this chunk inside its part
  std::vector<std::int64_t> shape; // logical shape of the decoded chunk; {n} for a flat chunk
  std::uint8_t dtype = static_cast<std::uint8_t>(blob_dtype::float32); // of the decoded elements
  std::uint8_t codec = blob_codec_none;
  std::vector<char> bytes;       // payload: raw little-endian elements, or the codec's encoding
  std::uint64_t checksum = 0;    // set by seal(); covers the header fields above and the bytes
};

// A fast 64-bit hash of bytes, for detecting corruption. Four independent lanes each absorb one
// 8-byte little-endian word at a time (xor, multiply by an odd constant, rotate); a final mix
// combines them with the length. Every step is a bijection of a lane's state, so any change confined
// to one aligned 8-byte word -- every single-bit flip in particular -- always changes the result;
// other corruptions escape with probability ~2^-64. The same bytes give the same value on any
// machine. Not cryptographic.
std::uint64_t blob_checksum(std::span<const char> bytes, std::uint64_t seed = 0) noexcept;

// The checksum seal() stores: blob_checksum of the bytes, seeded with a hash of the header fields
// (round, part, offset, shape, dtype, codec), so a corrupted header is caught too.
std::uint64_t blob_digest(const tensor_blob& blob) noexcept;

// Sets blob.checksum. Call after the last change to the blob.
void seal(tensor_blob& blob) noexcept;

// What a receiver expects of a blob. Limits bound what hostile input can make it allocate or walk.
struct blob_expectations {
  std::optional<std::uint64_t> round_id;
  std::optional<std::uint32_t> part_index;
  std::optional<std::uint8_t> dtype;
  std::optional<std::uint8_t> codec;
  // When set, [offset, offset + numel) must lie inside a part of this many elements.
  std::optional<std::uint64_t> part_length;
  std::size_t max_rank = 8;
  std::uint64_t max_elements = std::uint64_t{1} << 28; // 256 Mi elements, 1 GiB of float32
  std::uint64_t max_bytes = std::uint64_t{1} << 30;    // 1 GiB
  // false where the caller reads the payload with read_checked_float32, which checks the checksum
  // in the same pass (a chunk is then refused after that read, not by validate_blob).
  bool check_checksum = true;
};

// Number of elements of a shape (1 for rank 0), or nothing when a dimension is negative or the
// product exceeds `limit`.
std::optional<std::uint64_t> shape_elements(std::span<const std::int64_t> shape,
                                            std::uint64_t limit) noexcept;

// Why the blob must be refused, or nothing when it is fine. Checks, in order: dtype known, rank,
// negative dimensions, element count and byte count against the limits, byte count against
// dtype size * elements (codec none), the checksum (unless told not to), then the expectations
// (round, part, dtype, codec, range inside the part). Never reads past the blob's vectors; does
// no allocation that depends on the blob's claims.
std::optional<std::string> validate_blob(const tensor_blob& blob,
                                         const blob_expectations& expected);

// A sealed float32 blob of shape {values.size()}, codec none.
tensor_blob make_float32_blob(std::uint64_t round_id, std::uint32_t part_index,
                              std::uint64_t offset, std::span<const float> values);

// The elements of a float32, codec-none blob. Throws blob_error for another dtype or codec, or when
// the byte count is not a whole number of floats matching the shape. Does not check the checksum:
// validate_blob first.
std::vector<float> float32_values(const tensor_blob& blob);

// A float32, codec-none blob's elements read in one pass through memory that also recomputes its
// checksum and checks every value for NaN and infinity: what validate_blob's checksum,
// float32_values and all_finite would do in three. Throws blob_error as float32_values does.
struct checked_float32 {
  std::vector<float> values;
  bool checksum_matches = false; // blob_digest(blob) == blob.checksum
  bool all_finite = false;
};
checked_float32 read_checked_float32(const tensor_blob& blob);

} // namespace ddactor
