// Top-k selection with error feedback, and the sparse frame format.
//
// Selection is O(n): std::nth_element on the magnitudes (of a sampled candidate set when that is
// safe, see find_threshold) finds the k-th largest (the threshold), then one pass in index order
// takes every entry above it and as many entries equal to it as needed to make exactly k. That
// pass emits indices already sorted, so delta coding needs no sort.
// Magnitudes are compared as the bit patterns of |x| (for finite floats the order is the same),
// which is faster than float comparisons and makes ties exact.
#include "runtime/compression/topk_codec.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>

namespace ddactor {
namespace {

constexpr std::size_t max_varint_bytes = 5; // a u32 in 7-bit groups

std::size_t write_varint(std::uint32_t value, std::byte* at) noexcept {
  std::size_t written = 0;
  while (value >= 0x80u) {
    at[written++] = static_cast<std::byte>((value & 0x7fu) | 0x80u);
    value >>= 7;
  }
  at[written++] = static_cast<std::byte>(value);
  return written;
}

std::size_t varint_size(std::uint64_t value) noexcept {
  std::size_t size = 1;
  while (value >= 0x80u) {
    value >>= 7;
    ++size;
  }
  return size;
}

inline std::uint32_t magnitude_bits(float value) noexcept {
  return std::bit_cast<std::uint32_t>(value) & 0x7fffffffu;
}

// The k-th largest magnitude, and how many magnitudes are strictly larger (fewer than k).
struct selection_threshold {
  std::uint32_t magnitude = 0;
  std::size_t above = 0;
};

selection_threshold threshold_among(std::vector<std::uint32_t>& magnitudes, std::size_t k) {
  const auto kth = magnitudes.begin() + static_cast<std::ptrdiff_t>(k - 1);
  std::nth_element(magnitudes.begin(), kth, magnitudes.end(), std::greater<>());
  const std::uint32_t threshold = *kth;
  const auto above = static_cast<std::size_t>(std::count_if(
    magnitudes.begin(), kth, [threshold](std::uint32_t m) { return m > threshold; }));
  return {threshold, above};
}

// nth_element over all n magnitudes costs ~10 ns per value. Instead, a strided sample of 16384
// magnitudes gives a cut expected to pass ~2k values (plus a margin of several standard deviations
// of the sample quantile); nth_element then runs on those candidates only. If the cut passes fewer
// than k values (adversarial or periodic data), the result would be wrong, so the full selection
// runs instead: the outcome is always the exact k-th largest, only the speed depends on the sample.
selection_threshold find_threshold(std::span<const float> accumulated, std::size_t k) {
  constexpr std::size_t sample_size = 16384;
  const std::size_t n = accumulated.size();
  std::vector<std::uint32_t> candidates;
  if (n >= 4 * sample_size && k <= n / 8) {
    const std::size_t stride = n / sample_size;
    std::vector<std::uint32_t> sample(sample_size);
    for (std::size_t j = 0; j < sample_size; ++j)
      sample[j] = magnitude_bits(accumulated[j * stride]);
    const std::size_t rank =
      std::min(sample_size - 1, 2 * k * sample_size / n + 32);
    std::nth_element(sample.begin(), sample.begin() + static_cast<std::ptrdiff_t>(rank),
                     sample.end(), std::greater<>());
    const std::uint32_t cut = sample[rank];
    candidates.reserve(3 * k);
    for (const float value : accumulated) {
      const std::uint32_t magnitude = magnitude_bits(value);
      if (magnitude >= cut)
        candidates.push_back(magnitude);
    }
    if (candidates.size() >= k)
      return threshold_among(candidates, k);
  }
  candidates.resize(n);
  for (std::size_t i = 0; i < n; ++i)
    candidates[i] = magnitude_bits(accumulated[i]);
  return threshold_among(candidates, k);
}

// Decoder state over hostile bytes: every read is bounds-checked, and any error zero-fills the
// output before throwing so a half-decoded frame is never mistaken for a result.
class sparse_payload_reader {
 public:
  sparse_payload_reader(std::span<const std::byte> payload, std::span<float> out)
    : payload_(payload), out_(out) {}

  [[noreturn]] void fail(const std::string& what) const {
    std::fill(out_.begin(), out_.end(), 0.0f);
    throw codec_error("topk frame rejected: " + what);
  }

  std::uint32_t read_varint(std::size_t& position) const {
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < max_varint_bytes; ++i) {
      if (position >= payload_.size())
        fail("index list ends inside a varint");
      const auto byte = std::to_integer<std::uint32_t>(payload_[position++]);
      value |= static_cast<std::uint64_t>(byte & 0x7fu) << (7 * i);
      if ((byte & 0x80u) == 0) {
        if (value > 0xffffffffu)
          fail("index gap exceeds 32 bits");
        return static_cast<std::uint32_t>(value);
      }
    }
    fail("varint longer than 5 bytes");
  }

 private:
  std::span<const std::byte> payload_;
  std::span<float> out_;
};

} // namespace

topk_codec::topk_codec(const codec_options& options)
  : fraction_(options.topk_fraction), zstd_level_(options.zstd_level) {
  validate_codec_options(options);
}

std::size_t topk_codec::kept_count(std::size_t elements) const noexcept {
  if (elements == 0)
    return 0;
  const auto wanted =
    static_cast<std::size_t>(std::llround(fraction_ * static_cast<double>(elements)));
  return std::clamp<std::size_t>(wanted, 1, elements);
}

std::vector<std::byte> topk_codec::encode(std::span<const float> values) {
  const std::size_t n = values.size();
  if (n > max_frame_elements)
    throw codec_error("topk codec cannot encode " + std::to_string(n) + " values in one frame");
  std::uint32_t non_finite = 0;
  for (const float value : values)
    non_finite |= (std::bit_cast<std::uint32_t>(value) & 0x7f800000u) == 0x7f800000u ? 1u : 0u;
  if (non_finite != 0)
    reject_non_finite_input(id());

  // Selection zeroes what it sends; what is left is the caller's error feedback to keep.
  std::vector<float> remaining(values.begin(), values.end());
  float* accumulated = remaining.data();
  const std::size_t k = kept_count(n);
  std::vector<std::byte> frame = start_frame(
    {codec_id::topk, false, n, static_cast<std::uint32_t>(k)}, k * (4 + max_varint_bytes));
  if (k == 0)
    return frame;
  const selection_threshold selected = find_threshold(std::span<const float>(accumulated, n), k);
  const std::uint32_t threshold = selected.magnitude;
  std::size_t ties_left = k - selected.above;

  std::byte* value_bytes = frame.data() + frame_header_size;
  std::byte* index_bytes = value_bytes + 4 * k;
  std::size_t index_size = 0;
  std::size_t taken = 0;
  std::size_t next_index = 0; // previous kept index + 1
  for (std::size_t i = 0; i < n && taken < k; ++i) {
    const std::uint32_t magnitude = magnitude_bits(accumulated[i]);
    if (magnitude < threshold || (magnitude == threshold && ties_left == 0))
      continue;
    if (magnitude == threshold)
      --ties_left;
    std::memcpy(value_bytes + 4 * taken, &accumulated[i], 4);
    const auto gap = static_cast<std::uint32_t>(i - next_index);
    index_size += write_varint(gap, index_bytes + index_size);
    next_index = i + 1;
    accumulated[i] = 0.0f; // sent exactly, nothing left over
    ++taken;
  }
  frame.resize(frame_header_size + 4 * k + index_size);
  seal_frame(frame, zstd_level_);
  return frame;
}

void topk_codec::decode(std::span<const std::byte> encoded, std::span<float> out) const {
  decode_frame(read_frame_header_of(encoded, codec_id::topk), encoded, out);
}

void topk_codec::decode_frame(const frame_header& header, std::span<const std::byte> encoded,
                              std::span<float> out) {
  check_element_count(header, out.size());
  const std::size_t n = out.size();
  const std::size_t k = header.parameter;
  if (k > n || (k == 0 && n > 0))
    throw codec_error("topk frame of " + std::to_string(n) + " elements declares " +
                      std::to_string(k) + " kept entries");
  std::vector<std::byte> storage;
  const std::span<const std::byte> payload =
    open_frame_payload(header, encoded, 5 * k, (4 + max_varint_bytes) * k, storage);

  std::fill(out.begin(), out.end(), 0.0f);
  const sparse_payload_reader reader(payload, out);
  std::size_t position = 4 * k;
  std::uint64_t next_index = 0;
  for (std::size_t j = 0; j < k; ++j) {
    const std::uint64_t index = next_index + reader.read_varint(position);
    if (index >= n)
      reader.fail("index " + std::to_string(index) + " is outside " + std::to_string(n) +
                  " elements");
    float value;
    std::memcpy(&value, payload.data() + 4 * j, 4);
    if (!std::isfinite(value))
      reject_non_finite_payload(codec_id::topk, out);
    out[index] = value;
    next_index = index + 1;
  }
  if (position != payload.size())
    reader.fail(std::to_string(payload.size() - position) + " bytes after the last index");
}

double topk_codec::estimated_ratio(std::size_t elements) const {
  if (elements == 0)
    return 1.0;
  const std::size_t k = kept_count(elements);
  const std::size_t index_bytes = varint_size(elements / k);
  return static_cast<double>(frame_header_size + k * (4 + index_bytes)) / (4.0 * elements);
}

} // namespace ddactor
