// tensor_blob: the checksum (a four-lane multiply/rotate hash of our own), sealing, validation of
// untrusted blobs, and float32 packing in little-endian order.
#include "runtime/tensor_blob.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <compare>
#include <cstring>
#include <iterator>
#include <limits>

#include "runtime/finite_values.hpp"

namespace ddactor {

namespace {

// Odd multipliers and lane seeds: the first 64 fractional bits of the square roots of the first
// primes (constants with no structure, chosen before looking at any test data).
constexpr std::array<std::uint64_t, 4> lane_multipliers = {
    0x6a09e667f3bcc909ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL};
constexpr std::array<std::uint64_t, 4> lane_seeds = {
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};
constexpr std::uint64_t mix_multiplier_a = 0xcbbb9d5dc1059ed9ULL;
constexpr std::uint64_t mix_multiplier_b = 0x629a292a367cd507ULL;

std::uint64_t load_little_endian(const char* p) noexcept {
  std::uint64_t word;
  std::memcpy(&word, p, sizeof word);
  if constexpr (std::endian::native == std::endian::big)
    word = __builtin_bswap64(word);
  return word;
}

// Bijective in `lane` for a fixed word and in `word` for a fixed lane: xor, odd multiply and
// rotation are all invertible. This is what makes single-word corruption certain to be detected.
std::uint64_t absorb(std::uint64_t lane, std::uint64_t word, std::uint64_t multiplier) noexcept {
  return std::rotl((lane ^ word) * multiplier, 29);
}

// A bijective avalanche: every input bit affects every output bit.
std::uint64_t avalanche(std::uint64_t h) noexcept {
  h ^= h >> 31;
  h *= mix_multiplier_a;
  h ^= h >> 29;
  h *= mix_multiplier_b;
  h ^= h >> 32;
  return h;
}

// Writes the low `bytes` bytes of value, little-endian, at out[at]; returns the next position.
std::size_t put_little_endian(std::vector<char>& out, std::size_t at, std::uint64_t value,
                              int bytes) {
  for (int i = 0; i < bytes; ++i)
    out[at++] = static_cast<char>((value >> (8 * i)) & 0xff);
  return at;
}

std::uint64_t header_seed(const tensor_blob& blob) noexcept {
  // Fixed little-endian layout so the seed is the same on every machine, in a buffer of exactly
  // its size (30 bytes and 8 per dimension).
  std::vector<char> header(30 + 8 * blob.shape.size());
  std::size_t at = put_little_endian(header, 0, blob.round_id, 8);
  at = put_little_endian(header, at, blob.part_index, 4);
  at = put_little_endian(header, at, blob.offset, 8);
  at = put_little_endian(header, at, blob.dtype, 1);
  at = put_little_endian(header, at, blob.codec, 1);
  at = put_little_endian(header, at, blob.shape.size(), 8);
  for (std::int64_t dim : blob.shape)
    at = put_little_endian(header, at, static_cast<std::uint64_t>(dim), 8);
  return blob_checksum(header, 0);
}

// blob_checksum's state, so that a pass that also copies or checks the bytes can hash them as it
// goes: absorb whole 32-byte blocks in order, then finish with the rest.
class checksum_lanes {
public:
  explicit checksum_lanes(std::uint64_t seed) noexcept {
    for (std::size_t k = 0; k < lanes_.size(); ++k)
      lanes_[k] = lane_seeds[k] + seed;
  }

  // `size` is a multiple of 32.
  void absorb_blocks(const char* p, std::size_t size) noexcept {
    // Four independent dependency chains keep the multiplier busy: ~32 bytes per multiply latency.
    for (const char* end = p + size; p != end; p += 32) {
      lanes_[0] = absorb(lanes_[0], load_little_endian(p), lane_multipliers[0]);
      lanes_[1] = absorb(lanes_[1], load_little_endian(p + 8), lane_multipliers[1]);
      lanes_[2] = absorb(lanes_[2], load_little_endian(p + 16), lane_multipliers[2]);
      lanes_[3] = absorb(lanes_[3], load_little_endian(p + 24), lane_multipliers[3]);
    }
  }

  // `left` < 32 bytes at p; `total` the size of everything hashed.
  std::uint64_t finish(const char* p, std::size_t left, std::size_t total) noexcept {
    std::size_t lane = 0;
    for (; left >= 8; p += 8, left -= 8, ++lane)
      lanes_[lane] = absorb(lanes_[lane], load_little_endian(p), lane_multipliers[lane]);
    if (left > 0) { // 1..7 bytes, zero-padded; lane < 4 here since at most 3 full words preceded
      std::uint64_t word = 0;
      for (std::size_t i = 0; i < left; ++i)
        word |= static_cast<std::uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
      lanes_[lane] = absorb(lanes_[lane], word, lane_multipliers[lane]);
    }
    // A sum of bijections of one lane each: changing one lane always changes the sum.
    std::uint64_t h = static_cast<std::uint64_t>(total) * mix_multiplier_a;
    for (std::size_t k = 0; k < lanes_.size(); ++k)
      h += std::rotl(avalanche(lanes_[k]), static_cast<int>(16 * k));
    return avalanche(h);
  }

private:
  std::array<std::uint64_t, 4> lanes_;
};

// Hashes `bytes` as blob_checksum does and hands each block to `visit(block, size)` right after
// hashing it, while it sits in the cache: a copy or check of the bytes costs no second pass
// through memory.
template <class Visit>
std::uint64_t checksum_visiting(std::span<const char> bytes, std::uint64_t seed, Visit&& visit) {
  constexpr std::size_t block = 16384; // a multiple of 32 that fits in L1
  checksum_lanes lanes(seed);
  std::size_t at = 0;
  for (; bytes.size() - at >= block; at += block) {
    lanes.absorb_blocks(bytes.data() + at, block);
    visit(bytes.data() + at, block);
  }
  const std::size_t left = bytes.size() - at;
  const std::size_t whole = left / 32 * 32;
  lanes.absorb_blocks(bytes.data() + at, whole);
  if (left > 0)
    visit(bytes.data() + at, left);
  return lanes.finish(bytes.data() + at + whole, left - whole, bytes.size());
}

} // namespace

std::uint64_t blob_checksum(std::span<const char> bytes, std::uint64_t seed) noexcept {
  return checksum_visiting(bytes, seed, [](const char*, std::size_t) {});
}

std::uint64_t blob_digest(const tensor_blob& blob) noexcept {
  return blob_checksum(blob.bytes, header_seed(blob));
}

void seal(tensor_blob& blob) noexcept {
  blob.checksum = blob_digest(blob);
}

std::optional<std::size_t> dtype_size(std::uint8_t dtype) noexcept {
  switch (static_cast<blob_dtype>(dtype)) {
    case blob_dtype::float32: return 4;
    case blob_dtype::float16: return 2;
    case blob_dtype::bfloat16: return 2;
    case blob_dtype::float64: return 8;
    case blob_dtype::int8: return 1;
    case blob_dtype::uint8: return 1;
    case blob_dtype::int32: return 4;
    case blob_dtype::int64: return 8;
  }
  return std::nullopt;
}

std::optional<std::uint64_t> shape_elements(std::span<const std::int64_t> shape,
                                            std::uint64_t limit) noexcept {
  if (std::any_of(shape.begin(), shape.end(), [](std::int64_t dim) { return dim < 0; }))
    return std::nullopt;
  // A zero dimension empties the shape, whatever the dimensions before it multiply to.
  if (std::find(shape.begin(), shape.end(), 0) != shape.end())
    return 0;
  std::uint64_t elements = 1;
  for (std::int64_t dim : shape) {
    const auto d = static_cast<std::uint64_t>(dim);
    // elements * d > limit, without overflowing.
    if (elements > limit / d)
      return std::nullopt;
    elements *= d;
  }
  if (elements > limit)
    return std::nullopt;
  return elements;
}

std::optional<std::string> validate_blob(const tensor_blob& blob,
                                         const blob_expectations& expected) {
  using std::to_string;
  const std::optional<std::size_t> element_size = dtype_size(blob.dtype);
  if (!element_size)
    return "unknown dtype code " + to_string(blob.dtype);
  if (blob.shape.size() > expected.max_rank)
    return "rank " + to_string(blob.shape.size()) + " exceeds the maximum of " +
           to_string(expected.max_rank);
  for (std::size_t i = 0; i < blob.shape.size(); ++i)
    if (blob.shape[i] < 0)
      return "dimension " + to_string(i) + " is negative (" + to_string(blob.shape[i]) + ")";
  const std::optional<std::uint64_t> elements = shape_elements(blob.shape, expected.max_elements);
  if (!elements)
    return "shape has more than the maximum of " + to_string(expected.max_elements) + " elements";
  if (blob.bytes.size() > expected.max_bytes)
    return "payload of " + to_string(blob.bytes.size()) + " bytes exceeds the maximum of " +
           to_string(expected.max_bytes);
  if (blob.codec == blob_codec_none && blob.bytes.size() != *elements * *element_size)
    return "payload of " + to_string(blob.bytes.size()) + " bytes does not match " +
           to_string(*elements) + " elements of " + to_string(*element_size) + " bytes";
  if (expected.check_checksum && blob_digest(blob) != blob.checksum)
    return "checksum mismatch (corrupted in transit or never sealed)";
  if (expected.round_id && blob.round_id != *expected.round_id)
    return "round " + to_string(blob.round_id) + ", expected " + to_string(*expected.round_id);
  if (expected.part_index && blob.part_index != *expected.part_index)
    return "part " + to_string(blob.part_index) + ", expected " +
           to_string(*expected.part_index);
  if (expected.dtype && blob.dtype != *expected.dtype)
    return "dtype code " + to_string(blob.dtype) + ", expected " + to_string(*expected.dtype);
  if (expected.codec && blob.codec != *expected.codec)
    return "codec code " + to_string(blob.codec) + ", expected " + to_string(*expected.codec);
  if (expected.part_length &&
      (blob.offset > *expected.part_length || *elements > *expected.part_length - blob.offset))
    return "elements [" + to_string(blob.offset) + ", " + to_string(blob.offset) + " + " +
           to_string(*elements) + ") run past the part's " + to_string(*expected.part_length) +
           " elements";
  return std::nullopt;
}

tensor_blob make_float32_blob(std::uint64_t round_id, std::uint32_t part_index,
                              std::uint64_t offset, std::span<const float> values) {
  static_assert(sizeof(float) == 4 && std::numeric_limits<float>::is_iec559);
  tensor_blob blob;
  blob.round_id = round_id;
  blob.part_index = part_index;
  blob.offset = offset;
  blob.shape = {static_cast<std::int64_t>(values.size())};
  blob.dtype = static_cast<std::uint8_t>(blob_dtype::float32);
  blob.codec = blob_codec_none;
  if constexpr (std::endian::native == std::endian::little) {
    // One pass: each block is hashed and appended while in the cache (no zero-filling first).
    const std::span<const char> bytes(reinterpret_cast<const char*>(values.data()),
                                      values.size() * sizeof(float));
    blob.bytes.reserve(bytes.size());
    blob.checksum = checksum_visiting(bytes, header_seed(blob),
                                      [&](const char* block, std::size_t size) {
                                        blob.bytes.insert(blob.bytes.end(), block, block + size);
                                      });
    return blob;
  }
  blob.bytes.resize(values.size() * sizeof(float));
  for (std::size_t i = 0; i < values.size(); ++i) {
    const auto word = __builtin_bswap32(std::bit_cast<std::uint32_t>(values[i]));
    std::memcpy(blob.bytes.data() + 4 * i, &word, 4);
  }
  seal(blob);
  return blob;
}

namespace {

// Reads little-endian float32 values from bytes, as a random-access iterator.
class little_endian_floats {
public:
  using iterator_category = std::random_access_iterator_tag;
  using value_type = float;
  using difference_type = std::ptrdiff_t;
  using pointer = void;
  using reference = float;

  explicit little_endian_floats(const unsigned char* at) : at_(at) {}
  float operator*() const noexcept {
    std::uint32_t word;
    std::memcpy(&word, at_, 4);
    if constexpr (std::endian::native == std::endian::big)
      word = __builtin_bswap32(word);
    return std::bit_cast<float>(word);
  }
  float operator[](difference_type k) const noexcept { return *(*this + k); }
  little_endian_floats& operator++() noexcept { at_ += 4; return *this; }
  little_endian_floats operator++(int) noexcept { auto old = *this; at_ += 4; return old; }
  little_endian_floats& operator--() noexcept { at_ -= 4; return *this; }
  little_endian_floats operator--(int) noexcept { auto old = *this; at_ -= 4; return old; }
  little_endian_floats& operator+=(difference_type k) noexcept { at_ += 4 * k; return *this; }
  little_endian_floats& operator-=(difference_type k) noexcept { at_ -= 4 * k; return *this; }
  little_endian_floats operator+(difference_type k) const noexcept {
    return little_endian_floats(at_ + 4 * k);
  }
  little_endian_floats operator-(difference_type k) const noexcept {
    return little_endian_floats(at_ - 4 * k);
  }
  difference_type operator-(const little_endian_floats& other) const noexcept {
    return (at_ - other.at_) / 4;
  }
  auto operator<=>(const little_endian_floats&) const = default;

private:
  const unsigned char* at_;
};

} // namespace

namespace {

// The number of floats of a float32, codec-none blob; throws blob_error for anything else.
std::size_t float32_count(const tensor_blob& blob) {
  if (blob.dtype != static_cast<std::uint8_t>(blob_dtype::float32) ||
      blob.codec != blob_codec_none)
    throw blob_error("float32_values: blob holds dtype code " + std::to_string(blob.dtype) +
                     " with codec code " + std::to_string(blob.codec) +
                     ", not raw float32");
  const std::size_t count = blob.bytes.size() / sizeof(float);
  const std::optional<std::uint64_t> elements = shape_elements(blob.shape, count);
  if (blob.bytes.size() % sizeof(float) != 0 || !elements || *elements != count)
    throw blob_error("float32_values: payload of " + std::to_string(blob.bytes.size()) +
                     " bytes does not match the blob's shape");
  return count;
}

} // namespace

std::vector<float> float32_values(const tensor_blob& blob) {
  const std::size_t count = float32_count(blob);
  // Each float is read from its four bytes as the vector is built: one pass, no zero-filling.
  const auto* bytes = reinterpret_cast<const unsigned char*>(blob.bytes.data());
  std::vector<float> values(little_endian_floats(bytes), little_endian_floats(bytes + 4 * count));
  return values;
}

checked_float32 read_checked_float32(const tensor_blob& blob) {
  checked_float32 out;
  out.values.reserve(float32_count(blob));
  bool finite = true;
  const auto checksum = checksum_visiting(
    blob.bytes, header_seed(blob), [&](const char* block, std::size_t size) {
      const auto* bytes = reinterpret_cast<const unsigned char*>(block);
      const auto from = out.values.size();
      out.values.insert(out.values.end(), little_endian_floats(bytes),
                        little_endian_floats(bytes + size));
      finite = finite && all_finite(std::span<const float>(out.values).subspan(from));
    });
  out.checksum_matches = checksum == blob.checksum;
  out.all_finite = finite;
  return out;
}

} // namespace ddactor
