#pragma once
// Progress of a long loop (encoding a data set's latents, the steps of a sampling) as log lines
// every few seconds: what, done/total, the rate, and the time left at that rate:
//
//   caching latents: 120/1000 (12%), 3.2/s, ETA 4m35s
//
// The first line comes after the first interval, so a loop that ends sooner logs only its
// summary (finish()). Not thread-safe: one thread advances it.

#include <chrono>
#include <cstdint>
#include <string>

namespace ddactor {

/// "4s", "3m05s", "2h07m"; "?" for a negative or unknown (non-finite) duration.
std::string format_duration(double seconds);

class progress_meter {
 public:
  using clock = std::chrono::steady_clock;

  progress_meter(std::string what, int64_t total,
                 std::chrono::milliseconds interval = std::chrono::seconds(5));

  /// Counts `n` more items done; logs when the interval has passed since the last line.
  void advance(int64_t n = 1);
  /// Logs the summary line (items, seconds, rate).
  void finish();

  int64_t done() const { return done_; }
  /// Items per second so far, and the seconds left at that rate (infinite before any item).
  double rate() const;
  double seconds_left() const;

 private:
  std::string what_;
  int64_t total_;
  std::chrono::milliseconds interval_;
  clock::time_point started_ = clock::now();
  clock::time_point last_line_ = started_;
  int64_t done_ = 0;
};

} // namespace ddactor
