// Stop signals for serving commands; see stop_signal.hpp.
#include "app/stop_signal.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <thread>

namespace ddactor {

namespace {

std::atomic<int> signals_received{0};

extern "C" void on_stop(int) {
  if (signals_received.fetch_add(1) >= 1)
    std::_Exit(130);
}

} // namespace

void install_stop_handler() {
  struct sigaction action {};
  action.sa_handler = on_stop;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

bool stop_requested() {
  return signals_received.load() > 0;
}

void wait_for_stop() {
  while (!stop_requested())
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

} // namespace ddactor
