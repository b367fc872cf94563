#pragma once
// metrics_registry: ddactor's own Prometheus-style metrics (Debian ships no prometheus-cpp).
//
// Owns the metric families of one process or one test (counters, gauges, histograms and gauges
// computed on scrape), their children per label values, the Prometheus naming rules, and the
// switch that turns instrumentation off. Rendering the text format lives in
// prometheus_exposition.hpp, serving it over HTTP in metrics_http_server.hpp.
//
// Every actor of a peer updates metrics from its own thread, many times a second, so the update
// path is one relaxed load of the registry's `enabled` flag plus one or two atomic
// read-modify-writes, never a lock. Looking a child up by its label values (`family.with(...)`)
// may lock; callers look a child up once and keep the reference, which stays valid as long as
// its registry lives (children are never removed).
//
//   auto& steps = global_metrics().counter("ddactor_train_steps_total", "Optimizer steps.",
//                                          {"expert"}).with({"0"});
//   steps.inc();  // lock-free, from any thread
//
// Families without label names have exactly one child, created with the family, so they are
// exported (as 0) from the first scrape on.

#include <atomic>
#include <concepts>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace ddactor {

/// Misuse of the metrics API: an invalid or conflicting name, a wrong number of label values,
/// a negative counter increment, bad histogram buckets.
class metrics_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class metric_type { counter, gauge, histogram };

/// "counter", "gauge", "histogram": the word of the `# TYPE` line.
std::string_view to_string(metric_type type) noexcept;

/// A monotonic counter. Thread-safe: every member may be called from any thread at once.
/// Integer increments are one atomic add; fractional ones a compare-exchange loop on a double.
class alignas(64) counter {
 public:
  explicit counter(const std::atomic<bool>& enabled) noexcept : enabled_(enabled) {}
  counter(const counter&) = delete;
  counter& operator=(const counter&) = delete;

  void inc() noexcept {
    if (enabled_.load(std::memory_order_relaxed))
      integer_part_.fetch_add(1, std::memory_order_relaxed);
  }
  /// Throws metrics_error if `amount` is negative: counters only go up.
  template <std::integral T>
  void inc(T amount) {
    if constexpr (std::is_signed_v<T>) {
      if (amount < 0) throw_negative(static_cast<double>(amount));
    }
    if (enabled_.load(std::memory_order_relaxed))
      integer_part_.fetch_add(static_cast<std::uint64_t>(amount), std::memory_order_relaxed);
  }
  /// Throws metrics_error if `amount` is negative, NaN or infinite.
  void inc(double amount);

  /// The total so far (integer and fractional increments together).
  double value() const noexcept;

 private:
  [[noreturn]] static void throw_negative(double amount);

  const std::atomic<bool>& enabled_;
  std::atomic<std::uint64_t> integer_part_{0};
  std::atomic<double> fractional_part_{0.0};
};

/// A value that goes up and down. Thread-safe: every member may be called from any thread.
class alignas(64) gauge {
 public:
  explicit gauge(const std::atomic<bool>& enabled) noexcept : enabled_(enabled) {}
  gauge(const gauge&) = delete;
  gauge& operator=(const gauge&) = delete;

  void set(double value) noexcept {
    if (enabled_.load(std::memory_order_relaxed)) value_.store(value, std::memory_order_relaxed);
  }
  void inc(double amount = 1.0) noexcept {
    if (enabled_.load(std::memory_order_relaxed))
      value_.fetch_add(amount, std::memory_order_relaxed);
  }
  void dec(double amount = 1.0) noexcept { inc(-amount); }
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  const std::atomic<bool>& enabled_;
  std::atomic<double> value_{0.0};
};

/// Counts observations into buckets fixed at creation. Thread-safe: observe() from any thread.
/// A scrape that races with observe() may see the sum and the counts one observation apart;
/// the buckets and the count of one snapshot always agree with each other.
class alignas(64) histogram {
 public:
  /// `upper_bounds` (strictly increasing, finite, without +Inf) must outlive the histogram;
  /// its family owns them.
  histogram(const std::atomic<bool>& enabled, std::span<const double> upper_bounds);
  histogram(const histogram&) = delete;
  histogram& operator=(const histogram&) = delete;

  /// Adds `value` to the first bucket whose upper bound is >= value (NaN: only the +Inf one).
  void observe(double value) noexcept;

  struct snapshot {
    /// One count per upper bound, then the +Inf bucket; each includes the ones before it.
    std::vector<std::uint64_t> cumulative_counts;
    double sum = 0.0;
    std::uint64_t count = 0;
  };
  snapshot collect() const;
  std::span<const double> upper_bounds() const noexcept { return upper_bounds_; }

 private:
  const std::atomic<bool>& enabled_;
  std::span<const double> upper_bounds_;
  /// Non-cumulative per bucket (upper_bounds_.size() + 1 entries) so observe() touches one.
  std::unique_ptr<std::atomic<std::uint64_t>[]> bucket_counts_;
  std::atomic<double> sum_{0.0};
};

/// Bucket bounds `start, start + width, ...` (`count` of them).
std::vector<double> linear_buckets(double start, double width, std::size_t count);
/// Bucket bounds `start, start * factor, ...` (`count` of them); start > 0, factor > 1.
std::vector<double> exponential_buckets(double start, double factor, std::size_t count);

/// What a scrape sees of one child. Plain values, taken without holding any update back.
struct child_snapshot {
  std::vector<std::string> label_values;  ///< in the order of the family's label names
  double value = 0.0;                     ///< counter and gauge
  histogram::snapshot distribution;       ///< histogram only
};

/// What a scrape sees of one family.
struct family_snapshot {
  std::string name;
  std::string help;
  metric_type type = metric_type::gauge;
  std::vector<std::string> label_names;
  std::vector<double> upper_bounds;     ///< histogram only, without +Inf
  std::vector<child_snapshot> children;  ///< sorted by label values
};

/// Common part of every family: name, help, type and label names, fixed at registration.
/// Thread-safe: the accessors read immutable data; collect() may run beside updates.
class metric_family_base {
 public:
  metric_family_base(std::string name, std::string help, metric_type type,
                     std::vector<std::string> label_names);
  virtual ~metric_family_base() = default;
  metric_family_base(const metric_family_base&) = delete;
  metric_family_base& operator=(const metric_family_base&) = delete;

  const std::string& name() const noexcept { return name_; }
  const std::string& help() const noexcept { return help_; }
  metric_type type() const noexcept { return type_; }
  const std::vector<std::string>& label_names() const noexcept { return label_names_; }

  /// The family's current values; children sorted by label values.
  virtual family_snapshot collect() const = 0;

 protected:
  /// Throws metrics_error unless there is one valid UTF-8 value per label name.
  void check_label_values(const std::vector<std::string>& label_values) const;

 private:
  std::string name_;
  std::string help_;
  metric_type type_;
  std::vector<std::string> label_names_;
};

/// A family of counters, gauges or histograms, one child per distinct label values.
/// Thread-safe: with() may be called from any thread (a shared lock to find a child, an
/// exclusive one to create it); the returned reference is valid while the registry lives.
template <class Child>
class metric_family final : public metric_family_base {
 public:
  metric_family(std::string name, std::string help, metric_type type,
                std::vector<std::string> label_names, const std::atomic<bool>& enabled,
                std::vector<double> upper_bounds = {});

  /// The child for these label values (one per label name, in order), created on first use.
  /// Throws metrics_error on a wrong number of values or invalid UTF-8.
  Child& with(const std::vector<std::string>& label_values = {});

  /// Histogram families: the bucket upper bounds, without +Inf.
  const std::vector<double>& upper_bounds() const noexcept { return upper_bounds_; }

  family_snapshot collect() const override;

 private:
  const std::atomic<bool>& enabled_;
  const std::vector<double> upper_bounds_;
  mutable std::shared_mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<Child>> children_;
};

using counter_family = metric_family<counter>;
using gauge_family = metric_family<gauge>;
using histogram_family = metric_family<histogram>;

/// A gauge whose series are computed on each scrape by callbacks (checkpoint age, queue
/// lengths owned by someone else). Thread-safe. Callbacks run on the scraping thread, one
/// family at a time; they must be cheap and must not register or remove callback gauges.
class callback_gauge_family final : public metric_family_base {
 public:
  callback_gauge_family(std::string name, std::string help, std::vector<std::string> label_names);

  /// Sets the callback of one series (replacing an earlier one); returns its id for remove().
  std::uint64_t set(std::vector<std::string> label_values, std::function<double()> callback);
  /// Removes the series if `id` is still its callback. Returns only when no call of that
  /// callback is in progress, so the state it captured may be destroyed afterwards.
  void remove(const std::vector<std::string>& label_values, std::uint64_t id);

  /// Calls every callback; a callback that throws leaves its series out of this scrape.
  family_snapshot collect() const override;

 private:
  struct series {
    std::uint64_t id;
    std::function<double()> callback;
  };
  /// Held while callbacks run, so that remove() can wait for them.
  mutable std::mutex mutex_;
  std::map<std::vector<std::string>, series> series_;
  std::uint64_t next_id_ = 1;
};

/// Keeps one callback gauge series registered; destroying (or reset()) removes it, after which
/// its callback is never called again. Move-only. Not thread-safe itself (one owner); may
/// outlive its registry (then it does nothing).
class [[nodiscard]] callback_gauge_registration {
 public:
  callback_gauge_registration() = default;
  callback_gauge_registration(std::weak_ptr<callback_gauge_family> family,
                              std::vector<std::string> label_values, std::uint64_t id);
  callback_gauge_registration(callback_gauge_registration&& other) noexcept;
  callback_gauge_registration& operator=(callback_gauge_registration&& other) noexcept;
  callback_gauge_registration(const callback_gauge_registration&) = delete;
  callback_gauge_registration& operator=(const callback_gauge_registration&) = delete;
  ~callback_gauge_registration();

  void reset() noexcept;
  bool active() const noexcept { return !family_.expired(); }

 private:
  std::weak_ptr<callback_gauge_family> family_;
  std::vector<std::string> label_values_;
  std::uint64_t id_ = 0;
};

/// One label of a series: name and value.
struct metric_label {
  std::string name;
  std::string value;
};

/// The families of one process (global_metrics()) or one test or peer. Thread-safe: every
/// member may be called from any thread. Families are never removed; the registry must
/// outlive every reference to its families and children.
///
/// Registering a name again with the same type, help, label names (and buckets) returns the
/// existing family; any difference throws metrics_error, as do names that break the rules:
/// metric names match [a-zA-Z_:][a-zA-Z0-9_:]* and start with `ddactor_`, counters end in
/// `_total`, label names match [a-zA-Z_][a-zA-Z0-9_]* without a `__` prefix, `le` is reserved
/// for histogram buckets, and no two families may export the same sample name (a histogram
/// `x` exports `x_bucket`, `x_sum`, `x_count`).
class metrics_registry {
 public:
  /// Every project metric name starts with this.
  static constexpr std::string_view required_prefix = "ddactor_";

  metrics_registry() = default;
  metrics_registry(const metrics_registry&) = delete;
  metrics_registry& operator=(const metrics_registry&) = delete;

  counter_family& counter(const std::string& name, const std::string& help,
                          std::vector<std::string> label_names = {});
  gauge_family& gauge(const std::string& name, const std::string& help,
                      std::vector<std::string> label_names = {});
  /// `upper_bounds`: strictly increasing, no NaN; a final +Inf may be given or left out.
  histogram_family& histogram(const std::string& name, const std::string& help,
                              std::vector<std::string> label_names,
                              std::vector<double> upper_bounds);

  /// Registers the series name{labels} whose value is `callback()` at each scrape. The same
  /// name may be registered again with other label values (the same label names); the same
  /// label values replace the earlier callback. The series lives as long as the returned
  /// registration, so a callback never outlives the state it captures.
  callback_gauge_registration callback_gauge(const std::string& name, const std::string& help,
                                             const std::vector<metric_label>& labels,
                                             std::function<double()> callback);

  /// Off: every update of every child of this registry is ignored (one relaxed load each);
  /// scrapes still work and show the values reached so far.
  void set_enabled(bool enabled) noexcept { enabled_.store(enabled, std::memory_order_relaxed); }
  bool enabled() const noexcept { return enabled_.load(std::memory_order_relaxed); }

  /// Every family's current values, sorted by name.
  std::vector<family_snapshot> collect() const;

 private:
  /// Returns the family named `name` if its signature matches, nullptr if there is none;
  /// throws on a conflict. Call with mutex_ held.
  metric_family_base* find_compatible(const std::string& name, const std::string& help,
                                      metric_type type, bool computed_on_scrape,
                                      const std::vector<std::string>& label_names,
                                      const std::vector<double>* upper_bounds) const;
  /// Validates names and records the sample names; call with mutex_ held.
  void admit(const std::string& name, metric_type type,
             const std::vector<std::string>& label_names);

  std::atomic<bool> enabled_{true};
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<metric_family_base>> families_;
  /// Sample name (`x_bucket`, ...) -> family exporting it, to refuse collisions.
  std::map<std::string, std::string> sample_names_;
};

/// The process-wide registry that actors report to. Created on first use, never destroyed.
metrics_registry& global_metrics();

/// Throws metrics_error unless `name` is a valid Prometheus metric name.
void validate_metric_name(std::string_view name);
/// Throws metrics_error unless `name` is a valid, non-reserved Prometheus label name.
void validate_label_name(std::string_view name);

}  // namespace ddactor
