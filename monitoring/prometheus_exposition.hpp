#pragma once
// prometheus_exposition: renders a metrics_registry in the Prometheus text exposition format,
// version 0.0.4 (what /metrics serves). Owns the format's details only: escaping, number
// formatting, line layout. Pure functions, thread-safe (they read the registry through its
// thread-safe collect()).
//
// Layout: one block per family, families sorted by name, children sorted by label values:
//
//   # HELP ddactor_x_seconds Help with \\ and \n escaped.
//   # TYPE ddactor_x_seconds histogram
//   ddactor_x_seconds_bucket{peer="a",le="0.5"} 1
//   ddactor_x_seconds_bucket{peer="a",le="+Inf"} 2
//   ddactor_x_seconds_sum{peer="a"} 3.25
//   ddactor_x_seconds_count{peer="a"} 2
//
// A family with no children prints only its HELP and TYPE lines.

#include <string>
#include <string_view>
#include <vector>

#include "monitoring/metrics_registry.hpp"

namespace ddactor {

/// The HTTP Content-Type of render_prometheus_text()'s output.
inline constexpr std::string_view prometheus_text_content_type =
    "text/plain; version=0.0.4; charset=utf-8";

/// The whole registry as exposition text ("" for an empty registry).
std::string render_prometheus_text(const metrics_registry& registry);
/// The same for snapshots already taken (families are printed in the given order).
std::string render_prometheus_text(const std::vector<family_snapshot>& families);

/// A sample value or `le` bound as Prometheus writes it: "+Inf", "-Inf", "NaN", integers
/// below 2^53 in plain digits ("1000000", not "1e+06"), anything else in the shortest form
/// that reads back to the same double.
std::string format_prometheus_value(double value);

/// `\` -> `\\`, `"` -> `\"`, newline -> `\n`.
std::string escape_label_value(std::string_view value);
/// `\` -> `\\`, newline -> `\n`.
std::string escape_help_text(std::string_view help);

}  // namespace ddactor
