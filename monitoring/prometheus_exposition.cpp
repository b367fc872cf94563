// prometheus_exposition: the text format 0.0.4 writer. The rules followed are those of
// Prometheus' "Exposition formats" page: HELP escapes backslash and newline, label values
// also escape the double quote, histograms export cumulative `_bucket` samples with an `le`
// label ending at "+Inf", then `_sum` and `_count`.

#include "monitoring/prometheus_exposition.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>

namespace ddactor {

namespace {

/// Doubles are exact integers up to 2^53; beyond that plain digits would claim false precision.
constexpr double largest_plain_integer = 9007199254740992.0;

void append_escaped(std::string& out, std::string_view text, bool escape_quote) {
  for (const char c : text) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '"':
        if (escape_quote) {
          out += "\\\"";
          break;
        }
        [[fallthrough]];
      default:
        out += c;
    }
  }
}

void append_value(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
    return;
  }
  if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buffer[64];
  std::to_chars_result written;
  if (std::trunc(value) == value && std::fabs(value) <= largest_plain_integer)
    written = std::to_chars(buffer, buffer + sizeof buffer, static_cast<std::int64_t>(value));
  else
    written = std::to_chars(buffer, buffer + sizeof buffer, value);  // shortest round trip
  out.append(buffer, written.ptr);
}

void append_value(std::string& out, std::uint64_t value) {
  char buffer[32];
  const auto written = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, written.ptr);
}

/// `{a="x",b="y"}` (with `le` last when given), or nothing when there are no labels.
void append_labels(std::string& out, const std::vector<std::string>& names,
                   const std::vector<std::string>& values, const std::string* le = nullptr) {
  if (names.empty() && le == nullptr) return;
  out += '{';
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    out += names[i];
    out += "=\"";
    append_escaped(out, values[i], true);
    out += '"';
  }
  if (le != nullptr) {
    if (!names.empty()) out += ',';
    out += "le=\"";
    out += *le;
    out += '"';
  }
  out += '}';
}

void append_family(std::string& out, const family_snapshot& family) {
  out += "# HELP ";
  out += family.name;
  out += ' ';
  append_escaped(out, family.help, false);
  out += "\n# TYPE ";
  out += family.name;
  out += ' ';
  out += to_string(family.type);
  out += '\n';

  if (family.type != metric_type::histogram) {
    for (const auto& child : family.children) {
      out += family.name;
      append_labels(out, family.label_names, child.label_values);
      out += ' ';
      append_value(out, child.value);
      out += '\n';
    }
    return;
  }

  std::vector<std::string> bounds;
  bounds.reserve(family.upper_bounds.size() + 1);
  for (const double bound : family.upper_bounds) bounds.push_back(format_prometheus_value(bound));
  bounds.push_back("+Inf");
  for (const auto& child : family.children) {
    const auto& counts = child.distribution.cumulative_counts;
    for (std::size_t i = 0; i < bounds.size() && i < counts.size(); ++i) {
      out += family.name;
      out += "_bucket";
      append_labels(out, family.label_names, child.label_values, &bounds[i]);
      out += ' ';
      append_value(out, counts[i]);
      out += '\n';
    }
    out += family.name;
    out += "_sum";
    append_labels(out, family.label_names, child.label_values);
    out += ' ';
    append_value(out, child.distribution.sum);
    out += '\n';
    out += family.name;
    out += "_count";
    append_labels(out, family.label_names, child.label_values);
    out += ' ';
    append_value(out, child.distribution.count);
    out += '\n';
  }
}

}  // namespace

std::string format_prometheus_value(double value) {
  std::string out;
  append_value(out, value);
  return out;
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  append_escaped(out, value, true);
  return out;
}

std::string escape_help_text(std::string_view help) {
  std::string out;
  append_escaped(out, help, false);
  return out;
}

std::string render_prometheus_text(const std::vector<family_snapshot>& families) {
  std::string out;
  for (const auto& family : families) append_family(out, family);
  return out;
}

std::string render_prometheus_text(const metrics_registry& registry) {
  return render_prometheus_text(registry.collect());
}

}  // namespace ddactor
