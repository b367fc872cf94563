#pragma once
// A peer's identity: an Ed25519 key pair created once and kept in `<state_dir>/peer_key` (or the
// file network.identity_file names; the 32-byte seed in hex, mode 0600), the peer id derived from
// its public key (runtime/secure/peer_key.hpp), and an incarnation counter in
// `<state_dir>/incarnation` that grows with every start of the process. Other peers key their
// view by the id and let a higher incarnation of the same id replace an older entry, so a
// restarted peer is recognised as the same peer and its stale entry is superseded. The id and
// the public key are also written to `<state_dir>/peer_id` and `<state_dir>/public_key` for
// people and tools (an allowlist entry); they are derived, never read back.
//
// Owns those files. Both are written atomically (temporary file, fsync, rename), and the
// whole load-or-create runs under an advisory lock on `<state_dir>/identity.lock`, so two
// processes started on the same folder never see a torn file or the same incarnation.

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

#include "runtime/secure/peer_key.hpp"

namespace ddactor {

/// A missing or unwritable state folder, or a corrupt identity file (the message names it).
class peer_identity_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct peer_identity {
  /// The key pair that proves this identity in handshakes.
  peer_key key;
  /// peer_id_of(key.public_part()): 32 lowercase hex characters; stable across restarts.
  std::string peer_id;
  /// 1 at the first start, then one more at each call of load_or_create_identity.
  uint64_t incarnation = 0;
};

inline constexpr std::size_t peer_id_length = 32;

/// Whether `text` has the form of a peer id: exactly 32 lowercase hex characters.
bool is_valid_peer_id(std::string_view text) noexcept;

/// The first 8 characters of an id, for log lines.
std::string short_peer_id(std::string_view peer_id);

/// A fresh random id from the operating system's random source (getrandom, else
/// std::random_device).
std::string make_random_peer_id();

/// The key pair in `path` (the seed in hex), created with mode 0600 when missing; refused when
/// other users may read it (as ssh does). Throws peer_identity_error naming the file.
peer_key load_or_create_peer_key(const std::filesystem::path& path);

/// Reads the key from `key_file` (empty: `<state_dir>/peer_key`; created with mode 0600, and the
/// folder, if missing), increments the counter in `<state_dir>/incarnation` (missing: 0) and
/// returns the identity. Throws peer_identity_error naming the file when a file is corrupt,
/// cannot be written, or (the key) can be read by other users.
peer_identity load_or_create_identity(const std::filesystem::path& state_dir,
                                      const std::filesystem::path& key_file = {});

} // namespace ddactor
