// A compressor actor; see compressor.hpp.
#include "actors/compressor.hpp"

#include "runtime/message_types.hpp"

namespace ddactor {

namespace {

caf::behavior compressor(caf::event_based_actor* self) {
  auto reply = [self](uint64_t tag, coded_chunk chunk) {
    auto to = caf::actor_cast<caf::actor>(self->current_sender());
    if (to)
      self->send(to, compressor_result{tag, std::move(chunk)});
  };
  return {
    [=](compressor_encode& work) { reply(work.tag, run_chunk_job(std::move(work.job))); },
    [=](compressor_decode& work) { reply(work.tag, run_chunk_job(std::move(work.job))); },
  };
}

} // namespace

caf::actor spawn_compressor(caf::actor_system& system) {
  return system.spawn<caf::detached>(compressor);
}

} // namespace ddactor
