#pragma once
// The byte stream of a link after its handshake: frames of at most max_frame_payload plaintext
// bytes, each sealed with ChaCha20-Poly1305 (IETF) under the direction's session key and a
// counter nonce, its 4-byte length header authenticated as associated data:
//
//   length (uint32 big-endian, ciphertext bytes incl. the 16-byte tag) | ciphertext | tag
//
// A receiver refuses a length above the limit before reading the frame (a peer never commits
// memory to a length it was told), and a frame that fails authentication (a flipped bit, a
// dropped, replayed or reordered frame: the nonce is the frame's position) ends the link.

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "runtime/secure/handshake.hpp"

namespace ddactor {

inline constexpr size_t max_frame_payload = 64 * 1024;
inline constexpr size_t frame_header_bytes = 4;
inline constexpr size_t frame_tag_bytes = 16;

class frame_sealer {
 public:
  explicit frame_sealer(const symmetric_key& key) : key_(key) {}
  ~frame_sealer();
  /// Appends `plaintext` to `out` as sealed frames (several when it exceeds max_frame_payload).
  void seal(std::span<const uint8_t> plaintext, std::vector<uint8_t>& out);

 private:
  symmetric_key key_;
  uint64_t counter_ = 0;
};

enum class frame_error { too_large, forged };
std::string_view to_string(frame_error error);

class frame_opener {
 public:
  explicit frame_opener(const symmetric_key& key) : key_(key) {}
  ~frame_opener();
  /// Takes received bytes (any split), appends every completed frame's plaintext to `out`;
  /// an error ends the stream (later calls return it again).
  std::optional<frame_error> open(std::span<const uint8_t> received, std::vector<uint8_t>& out);
  /// Bytes of an incomplete frame held (at most a header plus the largest frame).
  size_t buffered() const { return pending_.size(); }

 private:
  // Opens the complete frames at the start of `bytes`; returns the bytes they took (an error
  // is left in error_).
  size_t open_frames(std::span<const uint8_t> bytes, std::vector<uint8_t>& out);
  // Bytes a partial frame still lacks (0: complete, or a length open_frames will refuse).
  static size_t bytes_missing(std::span<const uint8_t> partial);
  static size_t sealed_length(const uint8_t* header);

  symmetric_key key_;
  uint64_t counter_ = 0;
  std::vector<uint8_t> pending_;
  std::optional<frame_error> error_;
};

} // namespace ddactor
