// Signed claims; see signed_claim.hpp.
#include "runtime/secure/signed_claim.hpp"

#include <cstring>
#include <span>

namespace ddactor {

namespace {

std::span<const uint8_t> bytes_of(const std::string& text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

} // namespace

std::string signed_text(std::string_view domain, std::initializer_list<std::string> fields) {
  std::string text(domain);
  for (const auto& field : fields) {
    text.push_back('\0');
    text += field;
  }
  return text;
}

void sign_claim(const peer_key& key, const std::string& text, std::string& public_key,
                std::string& signature) {
  const auto& pk = key.public_part();
  public_key.assign(pk.begin(), pk.end());
  auto sig = key.sign(bytes_of(text));
  signature.assign(sig.begin(), sig.end());
}

bool claim_proven(const std::string& public_key, const std::string& signature,
                  const std::string& peer_id, const std::string& text) {
  if (public_key.size() != 32 || signature.size() != 64)
    return false;
  ddactor::public_key pk{};
  std::memcpy(pk.data(), public_key.data(), pk.size());
  if (peer_id_of(pk) != peer_id)
    return false;
  ddactor::signature sig{};
  std::memcpy(sig.data(), signature.data(), sig.size());
  return verify_signature(pk, bytes_of(text), sig);
}

} // namespace ddactor
