// Progress with rate and ETA; see progress_meter.hpp.
#include "runtime/progress_meter.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cmath>
#include <memory>
#include <cstdio>
#include <limits>

namespace ddactor {

namespace {

constexpr auto bar_redraw_interval = std::chrono::milliseconds(100);
constexpr int bar_width = 30;

std::string format_count(double value) {
  if (value >= 100)
    return fmt::format("{:.0f}", value);
  if (value >= 10)
    return fmt::format("{:.1f}", value);
  return fmt::format("{:.2f}", value);
}

} // namespace

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0)
    return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600)
    return fmt::format("{}h{:02}m", s / 3600, (s / 60) % 60);
  if (s >= 60)
    return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

void smoothed_rate::add(double units, double seconds) {
  if (!(seconds > 0))
    return;
  const double instant = units / seconds;
  seen_seconds_ += seconds;
  if (seen_seconds_ <= seconds) {
    rate_ = instant;
    return;
  }
  // Early on the horizon is what has been seen, so the first estimates settle quickly.
  const double alpha = 1.0 - std::exp(-seconds / std::min(horizon_, seen_seconds_));
  rate_ += alpha * (instant - rate_);
}

double smoothed_rate::seconds_for(double remaining) const {
  if (remaining <= 0)
    return 0;
  if (!(rate_ > 0))
    return std::numeric_limits<double>::infinity();
  return remaining / rate_;
}

progress_meter::options progress_meter::for_this_process() {
  options o;
  o.live_bar = ::isatty(STDERR_FILENO) == 1;
  return o;
}

progress_meter::progress_meter(std::string task, int64_t total, std::string unit, options opts)
  : task_(std::move(task)), total_(total), unit_(std::move(unit)), options_(std::move(opts)) {
  if (!options_.write_line)
    options_.write_line = [](const std::string& line) { spdlog::info("{}", line); };
  if (!options_.draw_bar)
    options_.draw_bar = [](const std::string& bar, bool final) {
      std::fprintf(stderr, "\r%s\033[K%s", bar.c_str(), final ? "\n" : "");
      std::fflush(stderr);
    };
  started_ = last_update_ = options_.now();
  last_report_ = started_;
  report(false);
}

progress_meter::~progress_meter() {
  if (!finished_)
    finish();
}

void progress_meter::set(int64_t done) {
  const auto now = options_.now();
  const double seconds = std::chrono::duration<double>(now - last_update_).count();
  if (done > done_at_last_update_ && seconds > 0) {
    rate_.add(static_cast<double>(done - done_at_last_update_), seconds);
    last_update_ = now;
    done_at_last_update_ = done;
  }
  done_ = done;
  const auto interval = options_.live_bar
                          ? std::chrono::duration_cast<std::chrono::milliseconds>(bar_redraw_interval)
                          : options_.line_interval;
  if (now - last_report_ >= interval) {
    last_report_ = now;
    report(false);
  }
}

void progress_meter::finish() {
  if (finished_)
    return;
  finished_ = true;
  report(true);
}

double progress_meter::eta_seconds() const {
  if (total_ <= 0)
    return std::numeric_limits<double>::infinity();
  return rate_.seconds_for(static_cast<double>(total_ - done_));
}

std::string progress_meter::describe() const {
  // Built with fmt: GCC 12 warns falsely (-Wrestrict) about "text" + std::string.
  const std::string unit = unit_.empty() ? std::string() : fmt::format(" {}", unit_);
  std::string text = fmt::format("{} {}", task_, done_);
  if (total_ > 0)
    text += fmt::format("/{}{} ({:.0f}%)", total_, unit,
                        100.0 * static_cast<double>(done_) / static_cast<double>(total_));
  else
    text += unit;
  if (rate_.value() > 0)
    text += fmt::format(", {}{}/s", format_count(rate_.value()), unit);
  if (total_ > 0 && done_ < total_)
    text += fmt::format(", ETA {}", format_duration(eta_seconds()));
  return text;
}

void progress_meter::report(bool final) {
  if (final) {
    const double elapsed = std::chrono::duration<double>(options_.now() - started_).count();
    const std::string text = fmt::format("{} done: {}{}{} in {}", task_, done_,
                                         unit_.empty() ? "" : " ", unit_,
                                         format_duration(elapsed));
    if (options_.live_bar)
      options_.draw_bar(text, true);
    else
      options_.write_line(text);
    return;
  }
  if (!options_.live_bar) {
    options_.write_line(describe());
    return;
  }
  std::string bar;
  if (total_ > 0) {
    const auto filled = static_cast<int>(bar_width * std::min<int64_t>(done_, total_) / total_);
    bar = fmt::format("[{}{}] ", std::string(static_cast<size_t>(filled), '='),
                      std::string(static_cast<size_t>(bar_width - filled), ' '));
  }
  options_.draw_bar(bar + describe(), false);
}

progress_callback show_progress(std::string task, std::string unit) {
  auto meter = std::make_shared<std::unique_ptr<progress_meter>>();
  return [meter, task = std::move(task), unit = std::move(unit)](int64_t done, int64_t total) {
    if (!*meter)
      *meter = std::make_unique<progress_meter>(task, total, unit);
    (*meter)->set(done);
    if (total > 0 && done >= total)
      (*meter)->finish();
  };
}

} // namespace ddactor
