// Local control messages stay local; see local_control.hpp.
#include "actors/local_control.hpp"

#include <spdlog/spdlog.h>

#include <atomic>

#include "monitoring/ddactor_metrics.hpp"

namespace ddactor {

bool refuse_remote(caf::local_actor* self, const char* actor, const char* message) {
  if (from_this_process(self))
    return false;
  static std::atomic<uint64_t> refused{0};
  swarm_metrics(global_metrics()).remote_control_refused.with({actor}).inc();
  const auto count = refused.fetch_add(1) + 1;
  if (count == 1 || count % 1000 == 0) {
    const auto& sender = self->current_sender();
    spdlog::warn("{}: refused '{}' from {} (only this peer's own actors may send it; {} refused "
                 "so far)",
                 actor, message,
                 sender ? "node " + caf::to_string(sender->node()) : std::string("an anonymous sender"),
                 count);
  }
  return true;
}

} // namespace ddactor
