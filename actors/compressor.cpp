// A compressor actor; see compressor.hpp.
#include "actors/compressor.hpp"

namespace ddactor {

namespace {

compressor_actor::behavior_type compressor(compressor_actor::pointer self) {
  auto reply = [self](uint64_t tag, coded_chunk chunk) {
    auto to = caf::actor_cast<compressor_client>(self->current_sender());
    if (to)
      self->send(to, compressor_result{tag, std::move(chunk)});
  };
  return {
    [=](compressor_encode& work) { reply(work.tag, run_chunk_job(std::move(work.job))); },
    [=](compressor_decode& work) { reply(work.tag, run_chunk_job(std::move(work.job))); },
  };
}

} // namespace

compressor_actor spawn_compressor(caf::actor_system& system) {
  return system.spawn<caf::detached>(compressor);
}

} // namespace ddactor
