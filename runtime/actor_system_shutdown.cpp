// A bounded end for an actor system; see actor_system_shutdown.hpp.
#include "runtime/actor_system_shutdown.hpp"

#include <cstdio>
#include <cstdlib>
#include <thread>

namespace ddactor {

size_t await_detached_actors(caf::actor_system& system, size_t own,
                             std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const size_t now = system.detached_actors();
    const size_t left = now > own ? now - own : 0;
    if (left == 0 || std::chrono::steady_clock::now() >= until)
      return left;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

detached_actor_guard::~detached_actor_guard() {
  const size_t left = await_detached_actors(system_, own_, limit_);
  if (left == 0)
    return;
  std::fprintf(stderr,
               "ddactor: %zu detached actor(s) still referenced %.1f s after shutdown began; the "
               "actor system cannot end (an actor was not stopped, or something still holds its "
               "handle). Exiting with %d instead of hanging.\n",
               left, static_cast<double>(limit_.count()) / 1000.0, exit_code_);
  std::fflush(nullptr);
  std::_Exit(exit_code_);
}

} // namespace ddactor
