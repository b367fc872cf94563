#pragma once
// Progress of one long piece of work (sampling a grid, an evaluation, clustering, caching
// latents) with its rate and time left: a live bar on a terminal, plain log lines elsewhere (a
// log file, CI), so that nobody waits minutes on a silent program.
//
//   progress_meter meter("eval: generating", 2000, "images");
//   for (...) { ...; meter.advance(batch); }
//   meter.finish();
//
// The rate is smoothed over time (an exponential average with a 20-second horizon), so the ETA
// does not jump with one slow batch. Where it goes:
//   - stderr is a terminal: a bar redrawn in place at most ten times a second, ended by finish();
//   - otherwise: an info line at the start, every `line_interval` and at the end.
// Not thread-safe: one thread reports.

#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>

namespace ddactor {

/// Thrown by long work that was asked to stop (Ctrl-C, SIGTERM) between two of its steps.
struct work_stopped : std::runtime_error {
  work_stopped() : std::runtime_error("stopped by a signal before the work was done") {}
};

/// A report hook for long work: (units done, total units).
using progress_callback = std::function<void(int64_t done, int64_t total)>;

/// A progress_callback that shows `task` through a progress_meter, created at the first report
/// and finished when done reaches total.
progress_callback show_progress(std::string task, std::string unit);

/// "3s", "4m05s", "2h07m"; "?" when unknown (infinite or negative).
std::string format_duration(double seconds);

/// Smooths a rate (units per second) over time: recent intervals weigh more, with a horizon of
/// `horizon_seconds`. Plain arithmetic, testable without a clock.
class smoothed_rate {
 public:
  explicit smoothed_rate(double horizon_seconds = 20.0) : horizon_(horizon_seconds) {}
  /// `units` happened over `seconds` (> 0).
  void add(double units, double seconds);
  /// Units per second, or 0 before the first interval.
  double value() const { return rate_; }
  /// Seconds until `remaining` units are done; infinity while the rate is unknown.
  double seconds_for(double remaining) const;

 private:
  double horizon_;
  double rate_ = 0;
  double seen_seconds_ = 0;
};

class progress_meter {
 public:
  using clock = std::chrono::steady_clock;
  struct options {
    /// Redraw a live bar (when stderr is a terminal) or write lines.
    bool live_bar = false;
    std::chrono::milliseconds line_interval{5000};
    /// Where lines and the bar go (the default: spdlog info lines, the bar to stderr).
    std::function<void(const std::string& line)> write_line;
    std::function<void(const std::string& bar, bool final)> draw_bar;
    std::function<clock::time_point()> now = [] { return clock::now(); };
  };
  /// The defaults for this process: live bar when stderr is a terminal.
  static options for_this_process();

  progress_meter(std::string task, int64_t total, std::string unit,
                 options opts = for_this_process());
  ~progress_meter();
  progress_meter(const progress_meter&) = delete;
  progress_meter& operator=(const progress_meter&) = delete;

  void advance(int64_t units = 1) { set(done_ + units); }
  void set(int64_t done);
  /// The final report (elapsed time); the destructor calls it if nobody did.
  void finish();

  int64_t done() const { return done_; }
  /// Smoothed seconds left; infinity while unknown.
  double eta_seconds() const;
  /// One report as it would be written now, e.g.
  /// "eval: generating 1234/2000 images (62%), 52.1 images/s, ETA 15s".
  std::string describe() const;

 private:
  void report(bool final);

  std::string task_;
  int64_t total_;
  std::string unit_;
  options options_;
  int64_t done_ = 0;
  clock::time_point started_;
  clock::time_point last_update_;
  int64_t done_at_last_update_ = 0;
  clock::time_point last_report_;
  smoothed_rate rate_;
  bool finished_ = false;
};

} // namespace ddactor
