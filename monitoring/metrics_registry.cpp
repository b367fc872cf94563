// metrics_registry: the metric kinds, their families and the registry that names them.
// See metrics_registry.hpp for the threading contract; the rules enforced here are those of
// the Prometheus data model (metric and label names) plus the project's `ddactor_` prefix.

#include "monitoring/metrics_registry.hpp"

#include "runtime/utf8.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

namespace ddactor {

static_assert(std::atomic<double>::is_always_lock_free, "double updates must not lock");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "counts must not lock");

std::string_view to_string(metric_type type) noexcept {
  switch (type) {
    case metric_type::counter:
      return "counter";
    case metric_type::gauge:
      return "gauge";
    case metric_type::histogram:
      return "histogram";
  }
  return "untyped";
}

namespace {

bool is_ascii_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_ascii_digit(char c) { return c >= '0' && c <= '9'; }

std::string quoted(std::string_view text) {
  std::string result = "'";
  result.append(text);
  result += '\'';
  return result;
}

std::string join(const std::vector<std::string>& parts) {
  std::string result = "[";
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) result += ", ";
    result += quoted(parts[i]);
  }
  return result + "]";
}

std::string join(const std::vector<double>& values) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < values.size(); ++i) out << (i > 0 ? ", " : "") << values[i];
  out << ']';
  return out.str();
}

/// Sorted, finite, strictly increasing, with a trailing +Inf dropped (it is always implied).
std::vector<double> normalized_upper_bounds(const std::string& name, std::vector<double> bounds) {
  if (!bounds.empty() && bounds.back() == std::numeric_limits<double>::infinity())
    bounds.pop_back();
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]))
      throw metrics_error("histogram " + quoted(name) + ": bucket bound " + std::to_string(i) +
                          " is not finite (only a last +Inf is allowed): " + join(bounds));
    if (i > 0 && !(bounds[i - 1] < bounds[i]))
      throw metrics_error("histogram " + quoted(name) +
                          ": bucket bounds must be strictly increasing: " + join(bounds));
  }
  return bounds;
}

}  // namespace

void validate_metric_name(std::string_view name) {
  const auto valid_first = [](char c) { return is_ascii_letter(c) || c == '_' || c == ':'; };
  const auto valid_rest = [&](char c) { return valid_first(c) || is_ascii_digit(c); };
  if (name.empty() || !valid_first(name.front()) ||
      !std::all_of(name.begin() + 1, name.end(), valid_rest))
    throw metrics_error("invalid metric name " + quoted(name) +
                        ": must match [a-zA-Z_:][a-zA-Z0-9_:]*");
}

void validate_label_name(std::string_view name) {
  const auto valid_first = [](char c) { return is_ascii_letter(c) || c == '_'; };
  const auto valid_rest = [&](char c) { return valid_first(c) || is_ascii_digit(c); };
  if (name.empty() || !valid_first(name.front()) ||
      !std::all_of(name.begin() + 1, name.end(), valid_rest))
    throw metrics_error("invalid label name " + quoted(name) +
                        ": must match [a-zA-Z_][a-zA-Z0-9_]*");
  if (name.starts_with("__"))
    throw metrics_error("invalid label name " + quoted(name) +
                        ": names starting with '__' are reserved for Prometheus");
}

// --- counter, gauge, histogram --------------------------------------------------------------

void counter::inc(double amount) {
  if (!(amount >= 0.0) || !std::isfinite(amount)) throw_negative(amount);
  if (enabled_.load(std::memory_order_relaxed))
    fractional_part_.fetch_add(amount, std::memory_order_relaxed);
}

double counter::value() const noexcept {
  return static_cast<double>(integer_part_.load(std::memory_order_relaxed)) +
         fractional_part_.load(std::memory_order_relaxed);
}

void counter::throw_negative(double amount) {
  std::ostringstream message;
  message << "counter increment must be finite and >= 0, got " << amount;
  throw metrics_error(message.str());
}

histogram::histogram(const std::atomic<bool>& enabled, std::span<const double> upper_bounds)
    : enabled_(enabled),
      upper_bounds_(upper_bounds),
      bucket_counts_(std::make_unique<std::atomic<std::uint64_t>[]>(upper_bounds.size() + 1)) {
  for (std::size_t i = 0; i <= upper_bounds_.size(); ++i)
    bucket_counts_[i].store(0, std::memory_order_relaxed);
}

void histogram::observe(double value) noexcept {
  if (!enabled_.load(std::memory_order_relaxed)) return;
  // Buckets are few (typically < 20): a linear scan beats binary search and branches well.
  // NaN compares false with every bound and so lands in the +Inf bucket, as in Prometheus.
  std::size_t bucket = 0;
  const std::size_t bounds = upper_bounds_.size();
  while (bucket < bounds && !(value <= upper_bounds_[bucket])) ++bucket;
  bucket_counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

histogram::snapshot histogram::collect() const {
  snapshot result;
  result.cumulative_counts.resize(upper_bounds_.size() + 1);
  std::uint64_t running = 0;
  for (std::size_t i = 0; i <= upper_bounds_.size(); ++i) {
    running += bucket_counts_[i].load(std::memory_order_relaxed);
    result.cumulative_counts[i] = running;
  }
  result.count = running;
  result.sum = sum_.load(std::memory_order_relaxed);
  return result;
}

std::vector<double> linear_buckets(double start, double width, std::size_t count) {
  if (!(width > 0.0) || !std::isfinite(start) || !std::isfinite(width))
    throw metrics_error("linear_buckets: width must be > 0 and both finite");
  std::vector<double> bounds(count);
  for (std::size_t i = 0; i < count; ++i) bounds[i] = start + width * static_cast<double>(i);
  return bounds;
}

std::vector<double> exponential_buckets(double start, double factor, std::size_t count) {
  if (!(start > 0.0) || !(factor > 1.0) || !std::isfinite(start) || !std::isfinite(factor))
    throw metrics_error("exponential_buckets: start must be > 0 and factor > 1, both finite");
  std::vector<double> bounds(count);
  double bound = start;
  for (std::size_t i = 0; i < count; ++i, bound *= factor) bounds[i] = bound;
  return bounds;
}

// --- families -------------------------------------------------------------------------------

metric_family_base::metric_family_base(std::string name, std::string help, metric_type type,
                                       std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {}

void metric_family_base::check_label_values(const std::vector<std::string>& label_values) const {
  if (label_values.size() != label_names_.size())
    throw metrics_error("metric " + quoted(name_) + " has label names " + join(label_names_) +
                        " but got " + std::to_string(label_values.size()) + " label values " +
                        join(label_values));
  for (const auto& value : label_values)
    // Prometheus refuses anything but strict UTF-8, and label values may come from the network
    // (peer ids, addresses).
    if (first_invalid_utf8(value))
      throw metrics_error("metric " + quoted(name_) + ": a label value is not valid UTF-8");
}

template <class Child>
metric_family<Child>::metric_family(std::string name, std::string help, metric_type type,
                                    std::vector<std::string> label_names,
                                    const std::atomic<bool>& enabled,
                                    std::vector<double> upper_bounds)
    : metric_family_base(std::move(name), std::move(help), type, std::move(label_names)),
      enabled_(enabled),
      upper_bounds_(std::move(upper_bounds)) {
  if (this->label_names().empty()) with({});
}

template <class Child>
Child& metric_family<Child>::with(const std::vector<std::string>& label_values) {
  {
    std::shared_lock lock(mutex_);
    if (auto found = children_.find(label_values); found != children_.end())
      return *found->second;
  }
  check_label_values(label_values);
  std::unique_lock lock(mutex_);
  auto& slot = children_[label_values];
  if (!slot) {
    if constexpr (std::is_same_v<Child, ddactor::histogram>)
      slot = std::make_unique<Child>(enabled_, std::span<const double>(upper_bounds_));
    else
      slot = std::make_unique<Child>(enabled_);
  }
  return *slot;
}

template <class Child>
family_snapshot metric_family<Child>::collect() const {
  family_snapshot snapshot{name(), help(), type(), label_names(), upper_bounds_, {}};
  std::shared_lock lock(mutex_);
  snapshot.children.reserve(children_.size());
  for (const auto& [label_values, child] : children_) {
    child_snapshot& entry = snapshot.children.emplace_back();
    entry.label_values = label_values;
    if constexpr (std::is_same_v<Child, ddactor::histogram>)
      entry.distribution = child->collect();
    else
      entry.value = child->value();
  }
  return snapshot;
}

template class metric_family<counter>;
template class metric_family<gauge>;
template class metric_family<histogram>;

callback_gauge_family::callback_gauge_family(std::string name, std::string help,
                                             std::vector<std::string> label_names)
    : metric_family_base(std::move(name), std::move(help), metric_type::gauge,
                         std::move(label_names)) {}

std::uint64_t callback_gauge_family::set(std::vector<std::string> label_values,
                                         std::function<double()> callback) {
  check_label_values(label_values);
  if (!callback) throw metrics_error("callback gauge " + quoted(name()) + ": empty callback");
  std::lock_guard lock(mutex_);
  const std::uint64_t id = next_id_++;
  series_[std::move(label_values)] = series{id, std::move(callback)};
  return id;
}

void callback_gauge_family::remove(const std::vector<std::string>& label_values,
                                   std::uint64_t id) {
  std::function<double()> doomed;  // destroyed after the lock is released
  std::lock_guard lock(mutex_);
  if (auto found = series_.find(label_values); found != series_.end() && found->second.id == id) {
    doomed = std::move(found->second.callback);
    series_.erase(found);
  }
}

family_snapshot callback_gauge_family::collect() const {
  family_snapshot snapshot{name(), help(), type(), label_names(), {}, {}};
  std::lock_guard lock(mutex_);
  snapshot.children.reserve(series_.size());
  for (const auto& [label_values, entry] : series_) {
    double value = 0.0;
    try {
      value = entry.callback();
    } catch (...) {
      continue;  // a broken callback must not break the whole scrape
    }
    snapshot.children.push_back(child_snapshot{label_values, value, {}});
  }
  return snapshot;
}

callback_gauge_registration::callback_gauge_registration(
    std::weak_ptr<callback_gauge_family> family, std::vector<std::string> label_values,
    std::uint64_t id)
    : family_(std::move(family)), label_values_(std::move(label_values)), id_(id) {}

callback_gauge_registration::callback_gauge_registration(
    callback_gauge_registration&& other) noexcept
    : family_(std::move(other.family_)),
      label_values_(std::move(other.label_values_)),
      id_(other.id_) {
  other.family_.reset();
}

callback_gauge_registration& callback_gauge_registration::operator=(
    callback_gauge_registration&& other) noexcept {
  if (this != &other) {
    reset();
    family_ = std::move(other.family_);
    label_values_ = std::move(other.label_values_);
    id_ = other.id_;
    other.family_.reset();
  }
  return *this;
}

callback_gauge_registration::~callback_gauge_registration() { reset(); }

void callback_gauge_registration::reset() noexcept {
  if (auto family = family_.lock()) family->remove(label_values_, id_);
  family_.reset();
}

// --- registry -------------------------------------------------------------------------------

metric_family_base* metrics_registry::find_compatible(
    const std::string& name, const std::string& help, metric_type type, bool computed_on_scrape,
    const std::vector<std::string>& label_names, const std::vector<double>* upper_bounds) const {
  auto found = families_.find(name);
  if (found == families_.end()) return nullptr;
  metric_family_base* existing = found->second.get();
  const bool existing_computed =
      dynamic_cast<const callback_gauge_family*>(existing) != nullptr;
  const auto conflict = [&](const std::string& what) {
    throw metrics_error("metric " + quoted(name) + " is already registered with " + what);
  };
  if (existing->type() != type || existing_computed != computed_on_scrape)
    conflict(std::string("type ") + std::string(to_string(existing->type())) +
             (existing_computed ? " (computed on scrape)" : ""));
  if (existing->help() != help) conflict("another help text: " + quoted(existing->help()));
  if (existing->label_names() != label_names)
    conflict("label names " + join(existing->label_names()) + ", not " + join(label_names));
  if (upper_bounds != nullptr) {
    const auto& existing_bounds =
        static_cast<const histogram_family*>(existing)->upper_bounds();
    if (existing_bounds != *upper_bounds)
      conflict("buckets " + join(existing_bounds) + ", not " + join(*upper_bounds));
  }
  return existing;
}

void metrics_registry::admit(const std::string& name, metric_type type,
                             const std::vector<std::string>& label_names) {
  validate_metric_name(name);
  if (!name.starts_with(required_prefix))
    throw metrics_error("metric name " + quoted(name) + " must start with '" +
                        std::string(required_prefix) + "'");
  if (type == metric_type::counter && !(name.ends_with("_total") && name.size() > 6))
    throw metrics_error("counter name " + quoted(name) + " must end with '_total'");
  for (std::size_t i = 0; i < label_names.size(); ++i) {
    validate_label_name(label_names[i]);
    if (label_names[i] == "le")
      throw metrics_error("metric " + quoted(name) +
                          ": label name 'le' is reserved for histogram buckets");
    for (std::size_t k = 0; k < i; ++k)
      if (label_names[k] == label_names[i])
        throw metrics_error("metric " + quoted(name) + ": label name " +
                            quoted(label_names[i]) + " appears twice");
  }
  std::vector<std::string> exported{name};
  if (type == metric_type::histogram) {
    exported.push_back(name + "_bucket");
    exported.push_back(name + "_sum");
    exported.push_back(name + "_count");
  }
  for (const auto& sample_name : exported)
    if (auto clash = sample_names_.find(sample_name); clash != sample_names_.end())
      throw metrics_error("metric " + quoted(name) + " would export samples named " +
                          quoted(sample_name) + ", which metric " + quoted(clash->second) +
                          " already exports");
  for (const auto& sample_name : exported) sample_names_.emplace(sample_name, name);
}

counter_family& metrics_registry::counter(const std::string& name, const std::string& help,
                                          std::vector<std::string> label_names) {
  std::lock_guard lock(mutex_);
  if (auto* existing =
          find_compatible(name, help, metric_type::counter, false, label_names, nullptr))
    return static_cast<counter_family&>(*existing);
  admit(name, metric_type::counter, label_names);
  auto family = std::make_shared<counter_family>(name, help, metric_type::counter,
                                                 std::move(label_names), enabled_);
  auto& result = *family;
  families_.emplace(name, std::move(family));
  return result;
}

gauge_family& metrics_registry::gauge(const std::string& name, const std::string& help,
                                      std::vector<std::string> label_names) {
  std::lock_guard lock(mutex_);
  if (auto* existing = find_compatible(name, help, metric_type::gauge, false, label_names, nullptr))
    return static_cast<gauge_family&>(*existing);
  admit(name, metric_type::gauge, label_names);
  auto family = std::make_shared<gauge_family>(name, help, metric_type::gauge,
                                               std::move(label_names), enabled_);
  auto& result = *family;
  families_.emplace(name, std::move(family));
  return result;
}

histogram_family& metrics_registry::histogram(const std::string& name, const std::string& help,
                                              std::vector<std::string> label_names,
                                              std::vector<double> upper_bounds) {
  std::vector<double> bounds = normalized_upper_bounds(name, std::move(upper_bounds));
  std::lock_guard lock(mutex_);
  if (auto* existing =
          find_compatible(name, help, metric_type::histogram, false, label_names, &bounds))
    return static_cast<histogram_family&>(*existing);
  admit(name, metric_type::histogram, label_names);
  auto family = std::make_shared<histogram_family>(name, help, metric_type::histogram,
                                                   std::move(label_names), enabled_,
                                                   std::move(bounds));
  auto& result = *family;
  families_.emplace(name, std::move(family));
  return result;
}

callback_gauge_registration metrics_registry::callback_gauge(
    const std::string& name, const std::string& help, const std::vector<metric_label>& labels,
    std::function<double()> callback) {
  std::vector<std::string> label_names;
  std::vector<std::string> label_values;
  for (const auto& label : labels) {
    label_names.push_back(label.name);
    label_values.push_back(label.value);
  }
  std::shared_ptr<callback_gauge_family> family;
  {
    std::lock_guard lock(mutex_);
    if (find_compatible(name, help, metric_type::gauge, true, label_names, nullptr) != nullptr) {
      family = std::static_pointer_cast<callback_gauge_family>(families_.at(name));
    } else {
      admit(name, metric_type::gauge, label_names);
      family = std::make_shared<callback_gauge_family>(name, help, std::move(label_names));
      families_.emplace(name, family);
    }
  }
  const std::uint64_t id = family->set(label_values, std::move(callback));
  return callback_gauge_registration(family, std::move(label_values), id);
}

std::vector<family_snapshot> metrics_registry::collect() const {
  // Copy the family list and collect without the registry lock, so callbacks may register
  // metrics and a slow scrape never holds back registration.
  std::vector<std::shared_ptr<metric_family_base>> families;
  {
    std::lock_guard lock(mutex_);
    families.reserve(families_.size());
    for (const auto& [name, family] : families_) families.push_back(family);
  }
  std::vector<family_snapshot> snapshots;
  snapshots.reserve(families.size());
  for (const auto& family : families) snapshots.push_back(family->collect());
  return snapshots;
}

metrics_registry& global_metrics() {
  // Leaked on purpose: threads may still update metrics while static destructors run.
  static metrics_registry* registry = new metrics_registry();
  return *registry;
}

}  // namespace ddactor
