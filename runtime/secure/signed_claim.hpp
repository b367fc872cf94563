#pragma once
// What signed hellos and signed progress reports share: the fields a receiver acts on, joined
// into one text under a domain string, signed with the Ed25519 key an id derives from, and the
// check that a key proves an id and signed that text (peer_key.hpp).

#include <initializer_list>
#include <string>
#include <string_view>

#include "runtime/secure/peer_key.hpp"

namespace ddactor {

/// `domain`, then every field after a 0 byte (fields hold none: ids are hex, numbers are
/// digits, and hosts and swarm ids are validated).
std::string signed_text(std::string_view domain, std::initializer_list<std::string> fields);

/// Signs `text` with `key`: its public key and the signature (raw bytes), for a message's
/// fields.
void sign_claim(const peer_key& key, const std::string& text, std::string& public_key,
                std::string& signature);

/// Whether `public_key` (32 bytes) derives `peer_id` and `signature` (64 bytes) signs `text`.
bool claim_proven(const std::string& public_key, const std::string& signature,
                  const std::string& peer_id, const std::string& text);

} // namespace ddactor
