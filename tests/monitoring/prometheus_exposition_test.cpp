// Tests of monitoring/prometheus_exposition: number formatting, escaping, the exact text of a
// small registry, and Prometheus' own linter (`promtool check metrics`) on every metric kind.

#include "monitoring/prometheus_exposition.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <unistd.h>

namespace ddactor {
namespace {

struct formatted_value {
  double value;
  std::string text;
};

class prometheus_value_format_test : public testing::TestWithParam<formatted_value> {};

TEST_P(prometheus_value_format_test, matches) {
  EXPECT_EQ(format_prometheus_value(GetParam().value), GetParam().text);
}

INSTANTIATE_TEST_SUITE_P(
    prometheus_exposition, prometheus_value_format_test,
    testing::Values(formatted_value{0.0, "0"}, formatted_value{-0.0, "0"},
                    formatted_value{1.0, "1"}, formatted_value{-3.0, "-3"},
                    formatted_value{1e6, "1000000"}, formatted_value{123456789.0, "123456789"},
                    formatted_value{9007199254740992.0, "9007199254740992"},
                    formatted_value{18014398509481984.0, "18014398509481984"},
                    formatted_value{1e300, "1e+300"}, formatted_value{0.5, "0.5"},
                    formatted_value{0.1, "0.1"}, formatted_value{-2.25, "-2.25"},
                    formatted_value{123.456, "123.456"}, formatted_value{1.5e-7, "1.5e-07"},
                    formatted_value{1.0 / 3.0, "0.3333333333333333"},
                    formatted_value{5e-324, "5e-324"},
                    formatted_value{std::numeric_limits<double>::max(),
                                    "1.7976931348623157e+308"},
                    formatted_value{std::numeric_limits<double>::infinity(), "+Inf"},
                    formatted_value{-std::numeric_limits<double>::infinity(), "-Inf"},
                    formatted_value{std::numeric_limits<double>::quiet_NaN(), "NaN"}));

TEST(prometheus_exposition_test, shortest_form_reads_back_exactly) {
  for (const double value : {0.1, 1.0 / 3.0, 2.0 / 3.0, 1e-10, 6.02214076e23, 0.3, 9.99e15}) {
    const std::string text = format_prometheus_value(value);
    EXPECT_EQ(std::strtod(text.c_str(), nullptr), value) << text;
  }
}

TEST(prometheus_exposition_test, label_values_escape_backslash_quote_and_newline) {
  EXPECT_EQ(escape_label_value("plain"), "plain");
  EXPECT_EQ(escape_label_value(R"(C:\dir "x")" "\nend"), R"(C:\\dir \"x\"\nend)");
  EXPECT_EQ(escape_label_value("\\\\\n\n\"\""), R"(\\\\\n\n\"\")");
  EXPECT_EQ(escape_label_value("tab\tand \xc3\xa9"), "tab\tand \xc3\xa9");  // left as is
}

TEST(prometheus_exposition_test, help_escapes_backslash_and_newline_only) {
  EXPECT_EQ(escape_help_text("Bytes \"sent\" to C:\\peers\nper peer."),
            R"(Bytes "sent" to C:\\peers\nper peer.)");
}

TEST(prometheus_exposition_test, small_registry_renders_exactly) {
  metrics_registry registry;
  // Registered out of order: the text sorts families by name and children by label values.
  auto& steps = registry.counter("ddactor_train_steps_total", "Optimizer steps taken.", {"expert"});
  steps.with({"1"}).inc(3);
  steps.with({"0"}).inc(2.5);
  registry.gauge("ddactor_peers", "Peers in view.\nCounted by membership.").with().set(4);
  auto& rtt = registry
                  .histogram("ddactor_rtt_seconds", R"(Round trip \ time.)", {"peer"},
                             {0.005, 0.5, 1, 1e6})
                  .with({"a\"b"});
  rtt.observe(0.00048828125);
  rtt.observe(0.5);
  rtt.observe(2);
  registry.gauge("ddactor_empty", "Nothing yet.", {"peer"});
  auto age = registry.callback_gauge("ddactor_age_seconds", "Age.",
                                     {{"k", "v\\w\n"}, {"e", ""}}, [] { return 1.5; });

  const std::string expected = R"(# HELP ddactor_age_seconds Age.
# TYPE ddactor_age_seconds gauge
ddactor_age_seconds{k="v\\w\n",e=""} 1.5
# HELP ddactor_empty Nothing yet.
# TYPE ddactor_empty gauge
# HELP ddactor_peers Peers in view.\nCounted by membership.
# TYPE ddactor_peers gauge
ddactor_peers 4
# HELP ddactor_rtt_seconds Round trip \\ time.
# TYPE ddactor_rtt_seconds histogram
ddactor_rtt_seconds_bucket{peer="a\"b",le="0.005"} 1
ddactor_rtt_seconds_bucket{peer="a\"b",le="0.5"} 2
ddactor_rtt_seconds_bucket{peer="a\"b",le="1"} 2
ddactor_rtt_seconds_bucket{peer="a\"b",le="1000000"} 3
ddactor_rtt_seconds_bucket{peer="a\"b",le="+Inf"} 3
ddactor_rtt_seconds_sum{peer="a\"b"} 2.50048828125
ddactor_rtt_seconds_count{peer="a\"b"} 3
# HELP ddactor_train_steps_total Optimizer steps taken.
# TYPE ddactor_train_steps_total counter
ddactor_train_steps_total{expert="0"} 2.5
ddactor_train_steps_total{expert="1"} 3
)";
  EXPECT_EQ(render_prometheus_text(registry), expected);
}

TEST(prometheus_exposition_test, unlabeled_histogram_has_only_le) {
  metrics_registry registry;
  registry.histogram("ddactor_batch_size", "B.", {}, {}).with().observe(32);
  EXPECT_EQ(render_prometheus_text(registry),
            "# HELP ddactor_batch_size B.\n"
            "# TYPE ddactor_batch_size histogram\n"
            "ddactor_batch_size_bucket{le=\"+Inf\"} 1\n"
            "ddactor_batch_size_sum 32\n"
            "ddactor_batch_size_count 1\n");
}

TEST(prometheus_exposition_test, empty_registry_renders_nothing) {
  metrics_registry registry;
  EXPECT_EQ(render_prometheus_text(registry), "");
}

TEST(prometheus_exposition_test, content_type_is_version_0_0_4) {
  EXPECT_EQ(prometheus_text_content_type, "text/plain; version=0.0.4; charset=utf-8");
}

// --- promtool -------------------------------------------------------------------------------

std::filesystem::path find_promtool() {
  const char* path = std::getenv("PATH");
  std::stringstream directories(path != nullptr ? path : "");
  std::string directory;
  while (std::getline(directories, directory, ':')) {
    const auto candidate = std::filesystem::path(directory) / "promtool";
    if (!directory.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  if (::access("/usr/bin/promtool", X_OK) == 0) return "/usr/bin/promtool";
  return {};
}

/// A registry with every kind of metric and label values that need every escape.
void fill_awkward_registry(metrics_registry& registry) {
  const std::vector<std::string> awkward_values = {
      "",       "plain",          "back\\slash",   "double \"quote\"", "new\nline",
      "{}=,;#", "\xc3\xa9t\xc3\xa9 \xe2\x82\xac", "trailing\\", "# HELP not a comment"};
  auto& sent = registry.counter("ddactor_bytes_sent_total",
                                "Bytes sent to a peer, by \"kind\".\nIncludes C:\\ paths.",
                                {"peer", "kind"});
  auto& queue = registry.gauge("ddactor_queue_depth", "Batches waiting.", {"peer"});
  auto& rtt = registry.histogram("ddactor_round_trip_seconds", "Round trip time.", {"peer"},
                                 exponential_buckets(0.001, 4, 6));
  for (std::size_t i = 0; i < awkward_values.size(); ++i) {
    sent.with({awkward_values[i], "gradients"}).inc(i * 1000 + 1);
    sent.with({awkward_values[i], "parameters"}).inc(0.5 * double(i));
    queue.with({awkward_values[i]}).set(-1.0 * double(i) + 0.25);
    auto& distribution = rtt.with({awkward_values[i]});
    distribution.observe(0.0005 * double(i));
    distribution.observe(5.0 * double(i));
  }
  registry.counter("ddactor_restarts_total", "Restarts.").with().inc();
  registry.gauge("ddactor_loss", "Training loss.").with().set(std::nan(""));
  registry.gauge("ddactor_best_loss", "Best loss.").with().set(
      std::numeric_limits<double>::infinity());
  registry.gauge("ddactor_unused", "No children yet.", {"peer"});
  registry.histogram("ddactor_step_seconds", "Step time.", {}, linear_buckets(0.1, 0.1, 3))
      .with()
      .observe(0.15);
}

TEST(prometheus_exposition_test, promtool_check_metrics_finds_no_problem) {
  const auto promtool = find_promtool();
  if (promtool.empty()) GTEST_SKIP() << "promtool not found (Debian package 'prometheus')";

  metrics_registry registry;
  fill_awkward_registry(registry);
  auto age = registry.callback_gauge("ddactor_checkpoint_age_seconds", "Since last checkpoint.",
                                     {{"expert", "0\n\"1\"\\"}}, [] { return 42.5; });
  const std::string text = render_prometheus_text(registry);

  const auto directory = std::filesystem::temp_directory_path() /
                         ("ddactor_promtool_" + std::to_string(::getpid()));
  std::filesystem::create_directories(directory);
  const auto input = directory / "metrics.txt";
  const auto output = directory / "promtool.out";
  std::ofstream(input, std::ios::binary) << text;
  const std::string command = promtool.string() + " check metrics < '" + input.string() +
                              "' > '" + output.string() + "' 2>&1";
  const int status = std::system(command.c_str());
  std::ifstream printed_file(output);
  const std::string printed((std::istreambuf_iterator<char>(printed_file)),
                            std::istreambuf_iterator<char>());
  std::filesystem::remove_all(directory);

  EXPECT_EQ(status, 0) << printed << "\n--- input ---\n" << text;
  EXPECT_EQ(printed, "") << "\n--- input ---\n" << text;
  EXPECT_NE(text.find(R"(peer="double \"quote\"")"), std::string::npos);
}

}  // namespace
}  // namespace ddactor
