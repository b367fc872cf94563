#pragma once
// Which shared state the peers of one epoch should hold, as a plain rule without actors.
//
// When a whole swarm fits in one averaging group, every peer of an epoch should hold bit-identical
// weights: each completed round gives its members the same result. Views are only eventually
// consistent, though, so matchmaking can now and then split the swarm into two groups that both
// complete a round (a joiner with a low id leads some peers while the usual leader leads the
// rest). Both halves then step consistently but differently, forever. Every peer therefore
// reports a digest of its weights with its progress, and a peer whose digest is not the agreed
// one downloads the state from a peer that holds it.
//
// The agreed digest is the one most peers of the epoch report; a tie goes to the digest held by
// the lowest peer id, so every peer that sees the same reports picks the same one. Digest 0
// means "not known yet" and does not take part.

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ddactor {

struct state_digest_report {
  std::string peer_id;
  uint64_t digest = 0;
};

struct state_agreement {
  uint64_t digest = 0;
  /// Peers that report the agreed digest, sorted by id.
  std::vector<std::string> holders;
};

/// The agreed state among `reports` (all of one epoch), or nullopt if none reports a digest.
std::optional<state_agreement> agreed_state(std::span<const state_digest_report> reports);

/// The agreed state a peer holding `mine` should take, judged among `reports` of one epoch (its
/// own included): only where that epoch's peers fit in one averaging group (larger swarms
/// average in several groups, whose results differ by design), and only when the agreed digest
/// is not its own. nullopt: keep its state.
std::optional<state_agreement> state_to_take(std::span<const state_digest_report> reports,
                                             uint64_t mine, std::size_t group_size);

/// The digests one peer reported for its recent epochs (its weights at the start of each). Peers
/// of a fast swarm are rarely at the same epoch at the moment one compares, so agreement is
/// judged at the newest epoch that several peers have reported, not at each one's current epoch.
/// A report that skips epochs, goes back, or changes the digest of its epoch means the peer
/// took another state (a download, a restart): what it reported before no longer describes it
/// and is dropped.
class digest_history {
 public:
  static constexpr std::size_t max_epochs = 64;

  /// Notes (epoch, digest); digest 0 ("not known") is ignored. Returns true when the history
  /// started over because the peer took another state.
  bool record(int64_t epoch, uint64_t digest);
  /// The digest reported for `epoch`, if known.
  std::optional<uint64_t> at(int64_t epoch) const;
  /// Epoch -> digest, oldest first.
  const std::map<int64_t, uint64_t>& entries() const noexcept { return by_epoch_; }

 private:
  std::map<int64_t, uint64_t> by_epoch_;
};

/// The digest peers report and vouch for: BLAKE2b of the weights' bytes, as a tree of 4 MiB
/// pieces hashed on several cores for large models, cut to 64 bits (never 0).
uint64_t state_digest_of(std::span<const float> weights) noexcept;

/// Whether a downloaded state can match the agreed digest at all: the state travels losslessly
/// (averaging.state_compression "none" or "zstd") and is served every epoch (state_every = 1).
bool split_repair_possible(std::string_view state_compression, int64_t state_every) noexcept;

} // namespace ddactor
