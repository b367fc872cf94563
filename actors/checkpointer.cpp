// The checkpointer actor; see checkpointer.hpp.
#include "actors/checkpointer.hpp"

#include <spdlog/spdlog.h>

#include "runtime/checkpoint_files.hpp"
#include "runtime/safetensors.hpp"

namespace ddactor {

namespace {

struct checkpointer_state {
  checkpointer_options options;
  static inline const char* name = "checkpointer";
};

checkpointer_actor::behavior_type
checkpointer(checkpointer_actor::stateful_pointer<checkpointer_state> self,
             checkpointer_options options) {
  self->state.options = std::move(options);
  return {
    [=](save_atom, const checkpoint_snapshot& snapshot) -> caf::result<std::string> {
      const auto& opts = self->state.options;
      auto path = checkpoint_path(opts.run_dir, snapshot.step);
      try {
        std::filesystem::create_directories(path.parent_path());
        write_safetensors_file(path, *snapshot.content);
      } catch (const std::exception& e) {
        spdlog::error("checkpoint at step {} not written: {}", snapshot.step, e.what());
        return make_error(errc::io_failure, e.what());
      }
      for (const auto& removed : prune_checkpoints(opts.run_dir, opts.keep_checkpoints))
        spdlog::debug("removed old checkpoint {}", removed.string());
      return path.string();
    },
  };
}

} // namespace

checkpointer_actor spawn_checkpointer(caf::actor_system& system, checkpointer_options options) {
  return system.spawn<caf::detached>(checkpointer, std::move(options));
}

} // namespace ddactor
