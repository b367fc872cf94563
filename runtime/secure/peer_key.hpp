#pragma once
// A peer's Ed25519 key pair (libsodium) and the peer id derived from its public key: the first
// 16 bytes of BLAKE2b(public key) as 32 lowercase hex characters. Nobody picks their id: a peer
// proves it holds the key behind its id in every handshake (runtime/secure/handshake.hpp).

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace ddactor {

using public_key = std::array<uint8_t, 32>;
using signature = std::array<uint8_t, 64>;

class peer_key {
 public:
  /// A fresh key pair from the operating system's random source.
  static peer_key generate();
  /// The key pair whose 32-byte seed this is (the same seed, the same keys).
  static peer_key from_seed(std::span<const uint8_t, 32> seed);
  peer_key(const peer_key&) = default;
  peer_key& operator=(const peer_key&) = default;
  /// Zeroes the secret parts.
  ~peer_key();

  const public_key& public_part() const { return public_; }
  const std::array<uint8_t, 32>& seed() const { return seed_; }
  signature sign(std::span<const uint8_t> message) const;

 private:
  peer_key() = default;
  std::array<uint8_t, 32> seed_{};
  std::array<uint8_t, 64> secret_{};
  public_key public_{};
};

bool verify_signature(const public_key& key, std::span<const uint8_t> message,
                      const signature& sig);

/// The peer id of a public key (32 lowercase hex characters).
std::string peer_id_of(const public_key& key);

/// Lowercase hex of bytes, and back: false unless `text` is exactly 2 x out.size() hex
/// characters (either case).
std::string to_hex(std::span<const uint8_t> bytes);
bool parse_hex(std::string_view text, std::span<uint8_t> out);
template <size_t N>
std::optional<std::array<uint8_t, N>> from_hex(std::string_view text) {
  std::array<uint8_t, N> bytes{};
  if (!parse_hex(text, bytes))
    return std::nullopt;
  return bytes;
}

/// Initializes libsodium once; throws std::runtime_error if it cannot.
void require_sodium();

} // namespace ddactor
