// Stop signals for every command; see stop_signal.hpp.
#include "app/stop_signal.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <thread>

namespace ddactor {

namespace {

std::atomic<int> signals_received{0};
std::atomic<int> first_signal{0};

extern "C" void on_stop(int sig) {
  int none = 0;
  first_signal.compare_exchange_strong(none, sig);
  if (signals_received.fetch_add(1) >= 1)
    std::_Exit(128 + sig);
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

int stop_signal_number() {
  return first_signal.load();
}

const char* stop_signal_name() {
  return first_signal.load() == SIGTERM ? "SIGTERM" : "Ctrl-C";
}

void wait_for_stop() {
  while (!stop_requested())
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

int stopped_exit_code() {
  return 128 + (first_signal.load() == 0 ? SIGINT : first_signal.load());
}

} // namespace ddactor
