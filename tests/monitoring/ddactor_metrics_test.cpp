// Tests of monitoring/ddactor_metrics: register_ddactor_metrics() creates every family with
// zero children for the label values known in advance (so dashboards have data from the first
// scrape), the label lists agree with the enums they mirror, and the series computed on scrape
// (checkpoint age, peer activity) and the info gauges report what they should.
#include "monitoring/ddactor_metrics.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <set>

#include "monitoring/prometheus_exposition.hpp"
#include "runtime/swarm_view.hpp"
#include "runtime/version.hpp"

namespace ddactor {
namespace {

std::optional<family_snapshot> find_family(const metrics_registry& registry,
                                           const std::string& name) {
  for (auto& family : registry.collect())
    if (family.name == name)
      return family;
  return std::nullopt;
}

// The value of the child with exactly these label values; nullopt when there is none.
std::optional<double> child_value(const metrics_registry& registry, const std::string& name,
                                  const std::vector<std::string>& label_values = {}) {
  auto family = find_family(registry, name);
  if (!family)
    return std::nullopt;
  for (const auto& child : family->children)
    if (child.label_values == label_values)
      return family->type == metric_type::histogram
               ? static_cast<double>(child.distribution.count)
               : child.value;
  return std::nullopt;
}

template <size_t N>
std::set<std::string> as_set(const std::array<std::string_view, N>& values) {
  return {values.begin(), values.end()};
}

std::set<std::string> child_labels(const metrics_registry& registry, const std::string& name) {
  std::set<std::string> out;
  auto family = find_family(registry, name).value();
  for (const auto& child : family.children)
    out.insert(child.label_values.at(0));
  return out;
}

// One name per metric group, the families the dashboard's panels are built on.
const std::vector<std::string> dashboard_families = {
  "ddactor_training_loss",
  "ddactor_training_samples_total",
  "ddactor_training_step_duration_seconds",
  "ddactor_data_batches_in_flight",
  "ddactor_data_skipped_files_total",
  "ddactor_checkpoints_written_total",
  "ddactor_checkpoint_last_success_timestamp_seconds",
  "ddactor_checkpoint_failing",
  "ddactor_actor_restarts_total",
  "ddactor_averaging_rounds_total",
  "ddactor_averaging_round_failures_total",
  "ddactor_averaging_round_duration_seconds",
  "ddactor_averaging_group_size",
  "ddactor_averaging_sent_bytes_total",
  "ddactor_averaging_received_bytes_total",
  "ddactor_averaging_compression_ratio",
  "ddactor_averaging_rejected_chunks_total",
  "ddactor_swarm_epoch",
  "ddactor_swarm_peers",
  "ddactor_swarm_peers_joined_total",
  "ddactor_swarm_peers_left_total",
  "ddactor_swarm_peers_suspected_total",
  "ddactor_state_downloads_total",
  "ddactor_state_download_bytes_total",
  "ddactor_build_info",
};

TEST(ddactor_metrics_test, registers_every_group_with_a_child_from_the_start) {
  metrics_registry registry;
  register_ddactor_metrics(registry);
  for (const auto& name : dashboard_families) {
    auto family = find_family(registry, name);
    ASSERT_TRUE(family) << name << " is not registered";
    EXPECT_FALSE(family->children.empty()) << name << " has no child, so no series to scrape";
  }
  EXPECT_EQ(child_value(registry, "ddactor_training_samples_total"), 0.0);
  EXPECT_EQ(child_value(registry, "ddactor_averaging_round_duration_seconds"), 0.0);
  EXPECT_EQ(child_value(registry, "ddactor_build_info", {version_string}), 1.0);
}

TEST(ddactor_metrics_test, labelled_families_start_with_a_zero_child_per_known_value) {
  namespace labels = metric_label_values;
  metrics_registry registry;
  register_ddactor_metrics(registry);
  EXPECT_EQ(child_labels(registry, "ddactor_averaging_rounds_total"),
            as_set(labels::round_results));
  EXPECT_EQ(child_labels(registry, "ddactor_averaging_round_failures_total"),
            as_set(labels::round_failure_reasons));
  EXPECT_EQ(child_labels(registry, "ddactor_averaging_rejected_chunks_total"),
            as_set(labels::chunk_rejection_reasons));
  EXPECT_EQ(child_labels(registry, "ddactor_actor_restarts_total"),
            as_set(labels::supervised_actors));
  EXPECT_EQ(child_labels(registry, "ddactor_data_skipped_files_total"),
            as_set(labels::skipped_file_reasons));
  EXPECT_EQ(child_labels(registry, "ddactor_swarm_peers_left_total"),
            as_set(labels::peer_removal_reasons));
  EXPECT_EQ(child_labels(registry, "ddactor_state_downloads_total"),
            as_set(labels::state_download_results));
  for (auto reason : labels::round_failure_reasons)
    EXPECT_EQ(child_value(registry, "ddactor_averaging_round_failures_total",
                          {std::string(reason)}),
              0.0);
}

TEST(ddactor_metrics_test, registering_again_changes_nothing) {
  metrics_registry registry;
  register_ddactor_metrics(registry);
  averaging_metrics(registry).rounds.with({"averaged"}).inc(3);
  auto before = render_prometheus_text(registry);
  EXPECT_NO_THROW(register_ddactor_metrics(registry));
  EXPECT_EQ(render_prometheus_text(registry), before);
  EXPECT_EQ(child_value(registry, "ddactor_averaging_rounds_total", {"averaged"}), 3.0);
}

TEST(ddactor_metrics_test, peer_removal_reasons_match_the_swarm_view) {
  std::set<std::string> from_enum;
  for (auto reason : {removal_reason::left, removal_reason::died, removal_reason::timeout,
                      removal_reason::restarted})
    from_enum.insert(std::string(to_string(reason)));
  EXPECT_EQ(from_enum, as_set(metric_label_values::peer_removal_reasons));
}

TEST(ddactor_metrics_test, checkpoint_age_counts_from_the_baseline_then_from_the_last_write) {
  metrics_registry registry;
  register_ddactor_metrics(registry);
  double now = unix_time_seconds();
  auto age = register_checkpoint_age(registry, now - 100.0);
  auto before_first = child_value(registry, "ddactor_checkpoint_age_seconds");
  ASSERT_TRUE(before_first);
  EXPECT_GE(*before_first, 100.0);
  EXPECT_LT(*before_first, 160.0);

  checkpoint_metrics(registry).last_success.set(now - 5.0);
  auto after_write = child_value(registry, "ddactor_checkpoint_age_seconds");
  ASSERT_TRUE(after_write);
  EXPECT_GE(*after_write, 5.0);
  EXPECT_LT(*after_write, 65.0);

  // A baseline newer than the last write (a resumed run's newest file) wins: the age is never
  // older than the newest checkpoint known.
  auto fresh = register_checkpoint_age(registry, now + 3600.0);
  EXPECT_EQ(child_value(registry, "ddactor_checkpoint_age_seconds"), 0.0);

  fresh.reset();
  EXPECT_FALSE(child_value(registry, "ddactor_checkpoint_age_seconds"));
}

TEST(ddactor_metrics_test, peer_activity_marks_what_the_peer_does_now) {
  metrics_registry registry;
  peer_health health;
  auto activity = register_peer_activity(registry, health);
  EXPECT_EQ(child_value(registry, "ddactor_peer_activity", {"starting"}), 1.0);
  EXPECT_EQ(child_value(registry, "ddactor_peer_activity", {"training"}), 0.0);

  health.set(peer_health::activity::downloading_state, "behind");
  auto family = find_family(registry, "ddactor_peer_activity").value();
  EXPECT_EQ(family.children.size(), 8u);
  double total = 0;
  for (const auto& child : family.children) {
    total += child.value;
    EXPECT_EQ(child.value, child.label_values.at(0) == "downloading_state" ? 1.0 : 0.0)
      << child.label_values.at(0);
  }
  EXPECT_EQ(total, 1.0);

  activity.clear();
  EXPECT_TRUE(find_family(registry, "ddactor_peer_activity").value().children.empty());
}

TEST(ddactor_metrics_test, peer_info_names_the_peer_and_its_swarm) {
  metrics_registry registry;
  set_peer_info(registry, "0123456789abcdef0123456789abcdef", "fashion");
  EXPECT_EQ(child_value(registry, "ddactor_peer_info",
                        {"0123456789abcdef0123456789abcdef", "fashion", version_string}),
            1.0);
  auto family = find_family(registry, "ddactor_peer_info").value();
  EXPECT_EQ(family.label_names, (std::vector<std::string>{"peer_id", "swarm_id", "version"}));
}

TEST(ddactor_metrics_test, metrics_switched_off_keep_their_zero_children) {
  metrics_registry registry;
  registry.set_enabled(false);
  register_ddactor_metrics(registry);
  training_metrics(registry).samples.inc(64);
  EXPECT_EQ(child_value(registry, "ddactor_training_samples_total"), 0.0);
  EXPECT_EQ(child_value(registry, "ddactor_actor_restarts_total", {"trainer"}), 0.0);
}

} // namespace
} // namespace ddactor
