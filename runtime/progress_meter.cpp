// Progress lines with an ETA; see progress_meter.hpp.
#include "runtime/progress_meter.hpp"

#include <spdlog/spdlog.h>

#include <cmath>
#include <limits>

namespace ddactor {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0)
    return "?";
  auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600)
    return fmt::format("{}h{:02}m", s / 3600, (s / 60) % 60);
  if (s >= 60)
    return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

progress_meter::progress_meter(std::string what, int64_t total,
                               std::chrono::milliseconds interval)
  : what_(std::move(what)), total_(total), interval_(interval) {}

double progress_meter::rate() const {
  const double elapsed = std::chrono::duration<double>(clock::now() - started_).count();
  return elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
}

double progress_meter::seconds_left() const {
  const double r = rate();
  if (r <= 0)
    return std::numeric_limits<double>::infinity();
  return static_cast<double>(total_ - done_) / r;
}

void progress_meter::advance(int64_t n) {
  done_ += n;
  const auto now = clock::now();
  if (now - last_line_ < interval_)
    return;
  last_line_ = now;
  const double percent =
    total_ > 0 ? 100.0 * static_cast<double>(done_) / static_cast<double>(total_) : 100.0;
  spdlog::info("{}: {}/{} ({:.0f}%), {:.2f}/s, ETA {}", what_, done_, total_, percent, rate(),
               format_duration(seconds_left()));
}

void progress_meter::finish() {
  const double elapsed = std::chrono::duration<double>(clock::now() - started_).count();
  spdlog::info("{}: {}/{} done in {}", what_, done_, total_, format_duration(elapsed));
}

} // namespace ddactor
