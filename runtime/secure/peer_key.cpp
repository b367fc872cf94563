// Ed25519 keys and key-derived peer ids; see peer_key.hpp.
#include "runtime/secure/peer_key.hpp"

#include <sodium.h>

#include <stdexcept>

namespace ddactor {

void require_sodium() {
  static const bool ready = sodium_init() >= 0;
  if (!ready)
    throw std::runtime_error("libsodium cannot be initialized");
}

peer_key peer_key::generate() {
  require_sodium();
  std::array<uint8_t, 32> seed{};
  randombytes_buf(seed.data(), seed.size());
  auto key = from_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  return key;
}

peer_key peer_key::from_seed(std::span<const uint8_t, 32> seed) {
  require_sodium();
  peer_key key;
  std::copy(seed.begin(), seed.end(), key.seed_.begin());
  crypto_sign_seed_keypair(key.public_.data(), key.secret_.data(), key.seed_.data());
  return key;
}

peer_key::~peer_key() {
  sodium_memzero(seed_.data(), seed_.size());
  sodium_memzero(secret_.data(), secret_.size());
}

signature peer_key::sign(std::span<const uint8_t> message) const {
  signature sig{};
  crypto_sign_detached(sig.data(), nullptr, message.data(), message.size(), secret_.data());
  return sig;
}

bool verify_signature(const public_key& key, std::span<const uint8_t> message,
                      const signature& sig) {
  require_sodium();
  return crypto_sign_verify_detached(sig.data(), message.data(), message.size(), key.data()) ==
         0;
}

std::string peer_id_of(const public_key& key) {
  require_sodium();
  std::array<uint8_t, 16> digest{};
  crypto_generichash(digest.data(), digest.size(), key.data(), key.size(), nullptr, 0);
  return to_hex(digest);
}

std::string to_hex(std::span<const uint8_t> bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string text;
  text.reserve(bytes.size() * 2);
  for (auto b : bytes) {
    text.push_back(digits[b >> 4]);
    text.push_back(digits[b & 0x0fu]);
  }
  return text;
}

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

} // namespace

bool parse_hex(std::string_view text, std::span<uint8_t> out) {
  if (text.size() != out.size() * 2)
    return false;
  for (size_t i = 0; i < out.size(); ++i) {
    int high = hex_value(text[2 * i]);
    int low = hex_value(text[2 * i + 1]);
    if (high < 0 || low < 0)
      return false;
    out[i] = static_cast<uint8_t>(high * 16 + low);
  }
  return true;
}

} // namespace ddactor
