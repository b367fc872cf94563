#pragma once
// CAF's BASP reads a 32-byte header and then allocates the payload size the header announces,
// up to 4 GiB, before anything can look at it. Sealed links keep strangers out, but an admitted
// peer (a holder of the swarm key) could still make another peer allocate gigabytes per message.
// The gateway sees each link's plaintext on its way to CAF, so it follows the same framing and
// ends a link whose next message would exceed a bound, before CAF allocates for it.
//
// BASP (CAF 0.17) header, big-endian: operation (1 byte), 2 bytes of padding, flags (1),
// payload length (4), operation data (8), source actor (8), destination actor (8); then the
// payload. Every BASP message, handshakes and heartbeats included, has this header.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace ddactor {

class basp_guard {
 public:
  static constexpr std::size_t header_bytes = 32;
  static constexpr std::size_t length_offset = 4;

  explicit basp_guard(uint64_t max_payload) : max_payload_(max_payload) {}

  /// Follows the next bytes of the stream (cut anywhere). Returns the announced length of the
  /// first message whose payload exceeds the bound; the stream must then end.
  std::optional<uint64_t> feed(std::span<const uint8_t> bytes) noexcept;

  /// Complete headers seen so far.
  uint64_t messages() const noexcept { return messages_; }

 private:
  uint64_t max_payload_;
  std::array<uint8_t, header_bytes> header_{};
  std::size_t header_filled_ = 0;
  uint64_t payload_left_ = 0;
  uint64_t messages_ = 0;
};

} // namespace ddactor
