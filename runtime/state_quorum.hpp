#pragma once
// Which shared states a peer may take: only a state (epoch, weight digest) that several distinct
// peers vouch for, never one peer's word. A hostile peer that reports a far-future epoch, or
// serves forged weights under an honest epoch, is then one voice short of a quorum: the others
// neither fall "behind" it nor adopt what it serves.
//
// A peer vouches for the states it reported: its current (epoch, digest) and the digests of its
// earlier epochs (runtime/state_agreement.hpp's digest_history). The quorum is averaging.state_quorum distinct peers, or all the
// other live peers where fewer are there (two honest peers still follow each other). Digest 0
// means "not known" (lossy state compression: no digest is computed); such claims vouch for the
// epoch only.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace ddactor {

/// One peer's word: it held the state `digest` at the start of `epoch`.
struct state_claim {
  std::string peer_id;
  int64_t epoch = 0;
  uint64_t digest = 0;
};

/// Distinct vouchers a state needs: min(configured, other_peers), at least 1.
std::size_t required_vouchers(std::size_t configured, std::size_t other_peers) noexcept;

/// What a quorum vouches for.
struct vouched_states {
  std::size_t required = 1;
  /// Epoch -> the weight digests (never 0) at least `required` distinct peers vouch for.
  std::map<int64_t, std::set<uint64_t>> digests;
  /// The highest epoch at least `required` distinct peers have reached (each peer's highest
  /// claim counts); nullopt when fewer peers claim anything. A peer below it fell behind.
  std::optional<int64_t> quorum_epoch;
};
vouched_states vouch(const std::vector<state_claim>& claims, std::size_t required);

/// Whether a downloaded state of `epoch` whose weights have `digest` may be taken: its digest
/// is vouched for at that epoch, or (no digests computed: `digest` 0) a quorum reached it.
bool may_take(const vouched_states& vouched, int64_t epoch, uint64_t digest);

} // namespace ddactor
