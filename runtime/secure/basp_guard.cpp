// BASP framing on the gateway's plaintext path; see basp_guard.hpp.
#include "runtime/secure/basp_guard.hpp"

#include <algorithm>

namespace ddactor {

std::optional<uint64_t> basp_guard::feed(std::span<const uint8_t> bytes) noexcept {
  while (!bytes.empty()) {
    if (payload_left_ > 0) {
      const auto skipped =
        static_cast<std::size_t>(std::min<uint64_t>(payload_left_, bytes.size()));
      payload_left_ -= skipped;
      bytes = bytes.subspan(skipped);
      continue;
    }
    const auto copied = std::min(header_bytes - header_filled_, bytes.size());
    std::copy_n(bytes.begin(), copied,
                header_.begin() + static_cast<std::ptrdiff_t>(header_filled_));
    header_filled_ += copied;
    bytes = bytes.subspan(copied);
    if (header_filled_ < header_bytes)
      break;
    header_filled_ = 0;
    ++messages_;
    uint64_t length = 0;
    for (std::size_t i = 0; i < 4; ++i)
      length = (length << 8) | header_[length_offset + i];
    if (length > max_payload_)
      return length;
    payload_left_ = length;
  }
  return std::nullopt;
}

} // namespace ddactor
