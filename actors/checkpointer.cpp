// The checkpointer actor; see checkpointer.hpp.
#include "actors/checkpointer.hpp"

#include <spdlog/spdlog.h>

#include "monitoring/ddactor_metrics.hpp"
#include "runtime/checkpoint_files.hpp"
#include "runtime/safetensors.hpp"

namespace ddactor {

namespace {

struct checkpointer_state {
  checkpointer_options options;
  checkpoint_metrics metrics{global_metrics()};
  static inline const char* name = "checkpointer";
};

checkpointer_actor::behavior_type
checkpointer(checkpointer_actor::stateful_pointer<checkpointer_state> self,
             checkpointer_options options) {
  self->state.options = std::move(options);
  // A process killed while writing leaves its temporary file behind; earlier incarnations'
  // files would otherwise pile up forever.
  const auto dir = checkpoint_directory(self->state.options.run_dir);
  if (auto removed = remove_stale_temporaries(dir); !removed.paths.empty())
    spdlog::info("removed {} unfinished checkpoint file(s) ({:.1f} MB) left in {} by processes "
                 "that died while writing",
                 removed.paths.size(), static_cast<double>(removed.bytes) / 1e6, dir.string());
  return {
    [=](save_atom, const checkpoint_snapshot& snapshot) -> caf::result<std::string> {
      auto& st = self->state;
      auto path = checkpoint_path(st.options.run_dir, snapshot.step);
      auto started = std::chrono::steady_clock::now();
      try {
        std::filesystem::create_directories(path.parent_path());
        write_safetensors_file(path, *snapshot.content);
      } catch (const std::exception& e) {
        spdlog::error("checkpoint at step {} not written: {}", snapshot.step, e.what());
        st.metrics.failed.inc();
        return make_error(errc::io_failure, e.what());
      }
      st.metrics.write_seconds.observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      st.metrics.written.inc();
      st.metrics.last_success.set(unix_time_seconds());
      std::error_code ec;
      st.metrics.bytes.set(static_cast<double>(std::filesystem::file_size(path, ec)));
      const auto& opts = st.options;
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
