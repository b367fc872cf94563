#pragma once
// SIGINT/SIGTERM for every command: the first signal asks the command to stop (training
// checkpoints first, sampling and evaluation stop between two steps, serving stops answering),
// a second one exits at once. OpenBLAS starts threads before main(), so a signal mask cannot
// route the signal to one thread: the handler only counts (async-signal-safe) and the command
// polls.

namespace ddactor {

void install_stop_handler();
bool stop_requested();
/// The first stop signal received (SIGINT or SIGTERM), or 0.
int stop_signal_number();
/// "Ctrl-C" or "SIGTERM", for messages.
const char* stop_signal_name();
/// Blocks until a stop signal arrives.
void wait_for_stop();
/// The exit code of a command stopped by a signal (128 + its number, as shells report it).
int stopped_exit_code();

} // namespace ddactor
