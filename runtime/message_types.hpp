#pragma once
// Every message type and atom of ddactor, in one CAF type-ID block that every binary and test
// loads (through ddactor_system_config): a node without it hangs in remote_actor.
//
// Types that travel between peers are plain data with an inspect() overload and never hold a
// torch::Tensor (tensors cross the wire as tensor_blob bytes). Types marked "local only" carry
// pointers between actors of one process and are rejected by CAF's serializer by design.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "runtime/errors.hpp"
#include "runtime/swarm_messages.hpp"
#include "runtime/training_batch.hpp"

namespace ddactor {

struct safetensors_content;

/// Local only: a batch from the data loader to the trainer (shared, never copied).
struct batch_message {
  std::shared_ptr<const training_batch> batch;
};

/// Local only: a checkpoint's tensors and metadata, copied out of the model by the trainer so
/// that the checkpointer can write them while training goes on.
struct checkpoint_snapshot {
  std::shared_ptr<const safetensors_content> content;
  int64_t step = 0;
};

/// How often a peer's supervisor restarted each child.
struct supervision_report {
  int32_t trainer_restarts = 0;
  int32_t data_loader_restarts = 0;
  int32_t checkpointer_restarts = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, supervision_report& x) {
  return f(caf::meta::type_name("supervision_report"), x.trainer_restarts,
           x.data_loader_restarts, x.checkpointer_restarts);
}

} // namespace ddactor

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ddactor::batch_message)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ddactor::checkpoint_snapshot)

CAF_BEGIN_TYPE_ID_BLOCK(ddactor, caf::first_custom_type_id)
  CAF_ADD_TYPE_ID(ddactor, (ddactor::batch_message))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::checkpoint_snapshot))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::supervision_report))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::peer_info))
  CAF_ADD_TYPE_ID(ddactor, (std::vector<ddactor::peer_info>))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::swarm_member))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::progress_report))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::round_request))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::group_member))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::group_assignment))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::tensor_blob))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::allreduce_chunk))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::round_digest))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::state_manifest))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::state_chunk))
CAF_END_TYPE_ID_BLOCK(ddactor)

// Atoms (CAF 0.17: at most 10 characters).
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
CAF_ADD_ATOM(ddactor, ddactor, state_atom, "state")
// Local only: membership -> subscribers, timers.
CAF_ADD_ATOM(ddactor, ddactor, view_atom, "view")
CAF_ADD_ATOM(ddactor, ddactor, subscribe_atom, "subscribe")
CAF_ADD_ATOM(ddactor, ddactor, tick_atom, "tick")
CAF_ADD_ATOM(ddactor, ddactor, average_atom, "average")
CAF_ADD_ATOM(ddactor, ddactor, timeout_atom, "timeout")
