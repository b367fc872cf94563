#pragma once
// How an averaging round ended for one peer: what the averager tells the trainer, what the status
// page shows and what ddactor_averaging_rounds_total{result} counts.

#include <cstdint>
#include <string_view>

namespace ddactor {

enum class round_result : uint8_t {
  averaged, ///< the group's average: apply it
  alone,    ///< no partner in time: the peer's own values
  failed,   ///< the round failed (deadline, a crashed group): the peer's own values
  /// The swarm's round of this epoch formed without this peer (a leader had closed it): the
  /// others move on with an average this peer lacks, so it applies nothing and takes their state.
  missed,
};

constexpr std::string_view to_string(round_result value) noexcept {
  switch (value) {
    case round_result::averaged: return "averaged";
    case round_result::alone: return "alone";
    case round_result::failed: return "failed";
    case round_result::missed: return "missed";
  }
  return "failed";
}

} // namespace ddactor
