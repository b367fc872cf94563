#pragma once
// A compressor: encodes and decodes all-reduce chunks (codecs, checksums, validation of hostile
// bytes) on its own thread, so that an averaging group keeps sending and receiving while chunks
// are coded, and several chunks are coded at once. The averager owns a pool of them
// (averaging.compressor_threads) and lends it to each round's group.
//
//   group --compressor_encode / compressor_decode--> compressor --compressor_result--> group
//
// Stateless: a job carries everything it needs (top-k's error feedback travels in the job and
// its leftover comes back in the result), so any compressor can take any job, in any order.
// Detached: coding megabytes never blocks CAF's scheduler.

#include "caf/all.hpp"

#include "runtime/message_types.hpp"

namespace ddactor {

/// Local only (jobs hold pointers into the group's buffers).
using compressor_actor =
  caf::typed_actor<caf::reacts_to<compressor_encode>, caf::reacts_to<compressor_decode>>;

/// Whoever sends a compressor jobs gets their results.
using compressor_client = caf::typed_actor<caf::reacts_to<compressor_result>>;

compressor_actor spawn_compressor(caf::actor_system& system);

} // namespace ddactor
