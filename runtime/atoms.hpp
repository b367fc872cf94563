#pragma once
// Every atom of ddactor (CAF 0.17: at most 10 characters each). Apart from the type-ID block
// (runtime/message_types.hpp) because the swarm's remote interfaces (runtime/swarm_messages.hpp)
// name them before the message types are complete.

#include "caf/all.hpp"

CAF_ADD_ATOM(ddactor, ddactor, fetch_atom, "fetch")
CAF_ADD_ATOM(ddactor, ddactor, credit_atom, "credit")
CAF_ADD_ATOM(ddactor, ddactor, stop_atom, "stop")
CAF_ADD_ATOM(ddactor, ddactor, save_atom, "save")
CAF_ADD_ATOM(ddactor, ddactor, done_atom, "done")
CAF_ADD_ATOM(ddactor, ddactor, restart_atom, "restart")
CAF_ADD_ATOM(ddactor, ddactor, attach_atom, "attach")
CAF_ADD_ATOM(ddactor, ddactor, status_atom, "status")
// Swarm protocol (runtime/swarm_messages.hpp has the message table).
CAF_ADD_ATOM(ddactor, ddactor, hello_atom, "hello")
CAF_ADD_ATOM(ddactor, ddactor, gossip_atom, "gossip")
CAF_ADD_ATOM(ddactor, ddactor, leave_atom, "leave")
CAF_ADD_ATOM(ddactor, ddactor, progress_atom, "progress")
CAF_ADD_ATOM(ddactor, ddactor, join_atom, "join")
CAF_ADD_ATOM(ddactor, ddactor, chunk_atom, "chunk")
CAF_ADD_ATOM(ddactor, ddactor, digest_atom, "digest")
CAF_ADD_ATOM(ddactor, ddactor, audit_atom, "audit")
CAF_ADD_ATOM(ddactor, ddactor, state_atom, "state")
CAF_ADD_ATOM(ddactor, ddactor, velocity_atom, "velocity")
CAF_ADD_ATOM(ddactor, ddactor, generate_atom, "generate")
// Local only: membership -> subscribers, timers.
CAF_ADD_ATOM(ddactor, ddactor, view_atom, "view")
CAF_ADD_ATOM(ddactor, ddactor, subscribe_atom, "subscribe")
CAF_ADD_ATOM(ddactor, ddactor, tick_atom, "tick")
CAF_ADD_ATOM(ddactor, ddactor, average_atom, "average")
CAF_ADD_ATOM(ddactor, ddactor, timeout_atom, "timeout")
CAF_ADD_ATOM(ddactor, ddactor, drain_atom, "drain")
CAF_ADD_ATOM(ddactor, ddactor, alive_atom, "alive")
CAF_ADD_ATOM(ddactor, ddactor, retry_atom, "retry")
CAF_ADD_ATOM(ddactor, ddactor, work_atom, "work")
CAF_ADD_ATOM(ddactor, ddactor, link_rate_atom, "linkrate")
CAF_ADD_ATOM(ddactor, ddactor, discard_atom, "discard")
