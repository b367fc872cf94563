#pragma once
// The project's one error enum, carried in caf::error across actors and peers. One code per
// outcome a caller may handle differently; the detail goes in the error's context message.

#include <cstdint>
#include <string>

#include "caf/error.hpp"
#include "caf/make_message.hpp"

namespace ddactor {

enum class errc : uint8_t {
  /// A configuration file or value is invalid.
  invalid_config = 1,
  /// A checkpoint file is missing, truncated, corrupt or does not fit the model.
  invalid_checkpoint,
  /// The data set could not be read at all.
  data_unavailable,
  /// A message or tensor from another actor or peer failed validation (size, shape, finiteness,
  /// round or epoch id); it was rejected.
  invalid_message,
  /// A tensor does not have the shape the receiver expects.
  shape_mismatch,
  /// A training step or model call failed (LibTorch threw).
  training_failed,
  /// An averaging round did not complete within its deadline.
  round_timeout,
  /// A remote peer could not be reached or went away.
  peer_unreachable,
  /// The actor is shutting down and refused the request.
  shutting_down,
  /// Writing a file failed.
  io_failure,
  /// A round join reached a peer that knows a better leader for that epoch; ask the next one.
  not_leader,
  /// The service is at capacity (its queue is full); ask again later.
  overloaded,
  /// A round join came after the leader had formed that epoch's groups.
  round_closed,
  /// A training step ran out of memory (host or GPU); a smaller micro-batch may fit.
  out_of_memory,
};

std::string to_string(errc x);

/// An error of the ddactor category with a human-readable context.
caf::error make_error(errc code, std::string detail);

} // namespace ddactor

CAF_ERROR_CODE_ENUM(ddactor::errc, "ddactor")
