#pragma once
// Runs one body per rank on its own thread, as the trainers of one node do, for the tests of the
// node's collective and of its training.

#include <exception>
#include <functional>
#include <thread>
#include <vector>

namespace ddactor {

/// Runs `body(rank)` on one thread per rank; rethrows the first failure on this thread.
inline void run_ranks(int ranks, const std::function<void(int)>& body) {
  std::vector<std::exception_ptr> failures(static_cast<size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      try {
        body(r);
      } catch (...) {
        failures[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  for (auto& t : threads)
    t.join();
  for (auto& failure : failures)
    if (failure)
      std::rethrow_exception(failure);
}

} // namespace ddactor
