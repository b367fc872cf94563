#pragma once
// SIGINT/SIGTERM for long-running commands that have nothing to save (serving): the first
// signal asks them to stop, a second one exits at once. OpenBLAS starts threads before main(),
// so the handler only counts (async-signal-safe) and the command polls.

namespace ddactor {

void install_stop_handler();
bool stop_requested();
/// Blocks until a stop signal arrives.
void wait_for_stop();

} // namespace ddactor
