#pragma once
// A bounded end for an actor system. CAF 0.17's ~actor_system waits, without a limit, for the
// threads of detached actors, and such a thread ends only once its actor is destroyed, i.e. once
// nothing holds a strong reference to it any more. References that are only on their way out
// (messages still queued in the middleman, a timer not yet due) go away while the system runs,
// but not during its destructor: a system destroyed at the wrong moment waits forever.
//
// Every binary and test fixture therefore ends its actors, then calls await_detached_actors
// before the system's destructor runs: it returns once the detached actors are gone (at once, in
// the usual case), or says after `limit` that some are still referenced, so that the caller can
// fail with a message instead of hanging.

#include <chrono>
#include <cstddef>

#include "caf/actor_system.hpp"

namespace ddactor {

/// The exit code of a command whose actor system could not end (EX_SOFTWARE: an internal error).
constexpr int shutdown_failure_exit_code = 70;

/// Waits until `system` has at most `own` detached actors left (its own utility actors, such as
/// the printer of the scheduler, which its destructor ends itself), at most `limit`. Returns how
/// many more are left (0: the system's destructor will not wait on any of ours).
size_t await_detached_actors(caf::actor_system& system, size_t own,
                             std::chrono::milliseconds limit);

/// For tests and the command line: a guard declared right after the actor system it watches
/// (members end in reverse order, so it runs first). It waits for the detached actors; when
/// some are still there after `limit`, it prints why and ends the process with `exit_code`
/// rather than let the system's destructor hang.
class detached_actor_guard {
 public:
  /// Construct it right after the system: the detached actors counted now are the system's own.
  detached_actor_guard(caf::actor_system& system, std::chrono::milliseconds limit,
                       int exit_code = 1)
    : system_(system), own_(system.detached_actors()), limit_(limit), exit_code_(exit_code) {}
  ~detached_actor_guard();

  detached_actor_guard(const detached_actor_guard&) = delete;
  detached_actor_guard& operator=(const detached_actor_guard&) = delete;

 private:
  caf::actor_system& system_;
  size_t own_;
  std::chrono::milliseconds limit_;
  int exit_code_;
};

} // namespace ddactor
