#pragma once
// A peer's identity: a random 128-bit id (32 lowercase hex characters) created once and kept in
// `<state_dir>/peer_id`, and an incarnation counter in `<state_dir>/incarnation` that grows with
// every start of the process. Other peers key their view by the id and let a higher incarnation
// of the same id replace an older entry, so a restarted peer is recognised as the same peer and
// its stale entry is superseded.
//
// Owns those two files. Both are written atomically (temporary file, fsync, rename), and the
// whole load-or-create runs under an advisory lock on `<state_dir>/identity.lock`, so two
// processes started on the same folder never see a torn file or the same incarnation.

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ddactor {

/// A missing or unwritable state folder, or a corrupt identity file (the message names it).
class peer_identity_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct peer_identity {
  /// 32 lowercase hex characters; stable across restarts.
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

/// Reads the id from `<state_dir>/peer_id` (creating it, and the folder, if missing), increments
/// the counter in `<state_dir>/incarnation` (missing: 0) and returns both. Throws
/// peer_identity_error naming the file when a file is corrupt or cannot be written.
peer_identity load_or_create_identity(const std::filesystem::path& state_dir);

} // namespace ddactor
