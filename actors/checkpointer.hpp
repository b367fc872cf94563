#pragma once
// The checkpointer actor: writes checkpoint snapshots to disk atomically and prunes old ones, on
// its own thread, so that training goes on while tens of megabytes are written. At start it
// removes the temporary files of earlier writers that died in the middle of a write.
//
//   trainer --(save, snapshot)--> checkpointer --> "<path>"  (or an io_failure error)

#include <filesystem>

#include "caf/all.hpp"

#include "runtime/message_types.hpp"

namespace ddactor {

using checkpointer_actor =
  caf::typed_actor<caf::replies_to<save_atom, checkpoint_snapshot>::with<std::string>>;

struct checkpointer_options {
  std::filesystem::path run_dir;
  int keep_checkpoints = 3;
};

checkpointer_actor spawn_checkpointer(caf::actor_system& system, checkpointer_options options);

} // namespace ddactor
