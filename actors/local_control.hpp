#pragma once
// Messages that only this process's own actors may send -- attach, subscribe, view, tick,
// timeout, put, get, an assignment to a group, a compressor's result -- are refused from any other
// node, checked by the sender's node id, not by convention. A peer that learned an actor's
// handle (handles travel in hellos and round requests) can still send it the messages of its
// remote interface (hello, gossip, leave, progress reports, joins, chunks, digests, state
// requests, status), and nothing else. An anonymous message counts as remote: local senders
// always send with their own handle. Refusals are counted in
// ddactor_remote_control_refused_total{actor} and logged (the first, then every 1000th).

#include "caf/all.hpp"

namespace ddactor {

/// Whether the message being handled comes from an actor of this process.
inline bool from_this_process(caf::local_actor* self) {
  const auto& sender = self->current_sender();
  return sender != nullptr && sender->node() == self->node();
}

/// True, counted and logged, when the message being handled did not come from this process:
/// the caller drops it. `actor` is the metric label, `message` names it in the log.
bool refuse_remote(caf::local_actor* self, const char* actor, const char* message);

} // namespace ddactor
