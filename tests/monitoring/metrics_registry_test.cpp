// Tests of monitoring/metrics_registry: metric values, histogram buckets, exact totals under
// concurrent updates, the naming rules, re-registration, the off switch and callback gauges.

#include "monitoring/metrics_registry.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

namespace ddactor {
namespace {

constexpr double infinity = std::numeric_limits<double>::infinity();
constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();

/// The snapshot of family `name` in `registry`; fails the test if there is none.
family_snapshot snapshot_of(const metrics_registry& registry, const std::string& name) {
  for (auto& family : registry.collect())
    if (family.name == name) return family;
  ADD_FAILURE() << "no family " << name;
  return {};
}

TEST(metrics_registry_test, counter_adds_integer_and_fractional_increments) {
  metrics_registry registry;
  auto& requests = registry.counter("ddactor_requests_total", "Requests.").with();
  EXPECT_EQ(requests.value(), 0.0);
  requests.inc();
  requests.inc(4);
  requests.inc(std::uint64_t{5});
  requests.inc(0.25);
  requests.inc(2.5f);
  EXPECT_EQ(requests.value(), 12.75);
}

TEST(metrics_registry_test, counter_refuses_to_go_down) {
  metrics_registry registry;
  auto& total = registry.counter("ddactor_bytes_total", "Bytes.").with();
  total.inc(3);
  EXPECT_THROW(total.inc(-1), metrics_error);
  EXPECT_THROW(total.inc(-0.5), metrics_error);
  EXPECT_THROW(total.inc(not_a_number), metrics_error);
  EXPECT_THROW(total.inc(infinity), metrics_error);
  EXPECT_EQ(total.value(), 3.0);
}

TEST(metrics_registry_test, gauge_sets_increments_and_decrements) {
  metrics_registry registry;
  auto& queue = registry.gauge("ddactor_queue_length", "Queue.").with();
  queue.set(10);
  queue.inc();
  queue.inc(2.5);
  queue.dec();
  queue.dec(0.5);
  EXPECT_EQ(queue.value(), 12.0);
  queue.set(-3.25);
  EXPECT_EQ(queue.value(), -3.25);
}

TEST(metrics_registry_test, histogram_buckets_are_inclusive_and_cumulative) {
  metrics_registry registry;
  auto& latency =
      registry.histogram("ddactor_latency_seconds", "Latency.", {}, {1.0, 2.0, 5.0}).with();
  for (const double value : {0.5, 1.0, 1.5, 2.0, 5.0, 7.0, -4.0}) latency.observe(value);
  const auto snapshot = latency.collect();
  EXPECT_EQ(snapshot.cumulative_counts, (std::vector<std::uint64_t>{3, 5, 6, 7}));
  EXPECT_EQ(snapshot.count, 7u);
  EXPECT_EQ(snapshot.sum, 13.0);
}

TEST(metrics_registry_test, histogram_counts_nan_only_in_the_inf_bucket) {
  metrics_registry registry;
  auto& values = registry.histogram("ddactor_values", "Values.", {}, {1.0}).with();
  values.observe(not_a_number);
  values.observe(infinity);
  const auto snapshot = values.collect();
  EXPECT_EQ(snapshot.cumulative_counts, (std::vector<std::uint64_t>{0, 2}));
  EXPECT_TRUE(std::isnan(snapshot.sum));
}

TEST(metrics_registry_test, histogram_bounds_are_validated) {
  metrics_registry registry;
  EXPECT_THROW(registry.histogram("ddactor_h1", "H.", {}, {1.0, 1.0}), metrics_error);
  EXPECT_THROW(registry.histogram("ddactor_h2", "H.", {}, {2.0, 1.0}), metrics_error);
  EXPECT_THROW(registry.histogram("ddactor_h3", "H.", {}, {not_a_number}), metrics_error);
  EXPECT_THROW(registry.histogram("ddactor_h4", "H.", {}, {infinity, 1.0}), metrics_error);
  EXPECT_THROW(registry.histogram("ddactor_h5", "H.", {}, {-infinity, 1.0}), metrics_error);
  // A trailing +Inf is implied anyway; with or without it is the same family.
  auto& with_inf = registry.histogram("ddactor_h6", "H.", {}, {1.0, infinity});
  EXPECT_EQ(with_inf.upper_bounds(), (std::vector<double>{1.0}));
  EXPECT_EQ(&registry.histogram("ddactor_h6", "H.", {}, {1.0}), &with_inf);
  // No bounds at all: only the +Inf bucket.
  auto& only_inf = registry.histogram("ddactor_h7", "H.", {}, {}).with();
  only_inf.observe(3.0);
  EXPECT_EQ(only_inf.collect().cumulative_counts, (std::vector<std::uint64_t>{1}));
}

TEST(metrics_registry_test, bucket_generators) {
  EXPECT_EQ(linear_buckets(1.0, 0.5, 4), (std::vector<double>{1.0, 1.5, 2.0, 2.5}));
  EXPECT_EQ(exponential_buckets(0.001, 10.0, 3).size(), 3u);
  EXPECT_DOUBLE_EQ(exponential_buckets(0.001, 10.0, 3)[2], 0.1);
  EXPECT_EQ(exponential_buckets(1.0, 2.0, 4), (std::vector<double>{1.0, 2.0, 4.0, 8.0}));
  EXPECT_THROW(linear_buckets(0.0, 0.0, 3), metrics_error);
  EXPECT_THROW(exponential_buckets(0.0, 2.0, 3), metrics_error);
  EXPECT_THROW(exponential_buckets(1.0, 1.0, 3), metrics_error);
}

TEST(metrics_registry_test, children_are_per_label_values_and_stable) {
  metrics_registry registry;
  auto& family = registry.counter("ddactor_messages_total", "Messages.", {"peer", "kind"});
  auto& a = family.with({"p1", "heartbeat"});
  auto& b = family.with({"p1", "gossip"});
  EXPECT_NE(&a, &b);
  for (int i = 0; i < 100; ++i) family.with({std::string("p").append(std::to_string(i)), "x"});
  EXPECT_EQ(&family.with({"p1", "heartbeat"}), &a);
  a.inc(2);
  b.inc();
  EXPECT_EQ(family.with({"p1", "heartbeat"}).value(), 2.0);
  EXPECT_EQ(family.with({"p1", "gossip"}).value(), 1.0);
}

TEST(metrics_registry_test, wrong_label_values_are_refused) {
  metrics_registry registry;
  auto& family = registry.gauge("ddactor_peers", "Peers.", {"state"});
  EXPECT_THROW(family.with({}), metrics_error);
  EXPECT_THROW(family.with({"a", "b"}), metrics_error);
  EXPECT_THROW(family.with({std::string("\xff\xfe")}), metrics_error);
  EXPECT_THROW(family.with({std::string("\xc0\xaf")}), metrics_error);          // overlong '/'
  EXPECT_THROW(family.with({std::string("\xed\xa0\x80")}), metrics_error);      // surrogate
  EXPECT_THROW(family.with({std::string("ab\xe2\x82")}), metrics_error);        // cut short
  EXPECT_NO_THROW(family.with({"\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80"}));  // été € 🚀
  EXPECT_NO_THROW(family.with({std::string("nul\0inside", 10)}));
}

TEST(metrics_registry_test, families_without_labels_exist_from_registration) {
  metrics_registry registry;
  registry.counter("ddactor_restarts_total", "Restarts.");
  registry.gauge("ddactor_alive", "Alive.", {"peer"});
  EXPECT_EQ(snapshot_of(registry, "ddactor_restarts_total").children.size(), 1u);
  EXPECT_EQ(snapshot_of(registry, "ddactor_alive").children.size(), 0u);
}

// --- concurrency ----------------------------------------------------------------------------

constexpr int update_threads = 8;
constexpr int updates_per_thread = 100000;

template <class Update>
void run_concurrently(Update update) {
  std::vector<std::thread> threads;
  for (int t = 0; t < update_threads; ++t)
    threads.emplace_back([&update, t] {
      for (int i = 0; i < updates_per_thread; ++i) update(t, i);
    });
  for (auto& thread : threads) thread.join();
}

TEST(metrics_registry_concurrency_test, counter_totals_are_exact) {
  metrics_registry registry;
  auto& integer = registry.counter("ddactor_integer_total", "I.").with();
  auto& fractional = registry.counter("ddactor_fractional_total", "F.").with();
  run_concurrently([&](int, int) {
    integer.inc();
    fractional.inc(0.5);  // exact in binary: the sum must be exact too
  });
  EXPECT_EQ(integer.value(), double(update_threads) * updates_per_thread);
  EXPECT_EQ(fractional.value(), 0.5 * update_threads * updates_per_thread);
}

TEST(metrics_registry_concurrency_test, gauge_totals_are_exact) {
  metrics_registry registry;
  auto& level = registry.gauge("ddactor_level", "L.").with();
  run_concurrently([&](int thread, int) {
    if (thread % 2 == 0)
      level.inc(2.0);
    else
      level.dec(1.0);
  });
  EXPECT_EQ(level.value(), double(update_threads / 2) * updates_per_thread);
}

TEST(metrics_registry_concurrency_test, histogram_counts_are_exact) {
  metrics_registry registry;
  auto& sizes = registry.histogram("ddactor_sizes", "S.", {}, {1.0, 10.0}).with();
  run_concurrently([&](int, int i) { sizes.observe(i % 2 == 0 ? 1.0 : 100.0); });
  const auto snapshot = sizes.collect();
  const std::uint64_t total = std::uint64_t(update_threads) * updates_per_thread;
  EXPECT_EQ(snapshot.cumulative_counts, (std::vector<std::uint64_t>{total / 2, total / 2, total}));
  EXPECT_EQ(snapshot.count, total);
  EXPECT_EQ(snapshot.sum, 101.0 * double(total / 2));
}

TEST(metrics_registry_concurrency_test, children_created_concurrently_are_shared) {
  metrics_registry registry;
  auto& family = registry.counter("ddactor_events_total", "E.", {"kind"});
  run_concurrently([&](int, int i) { family.with({std::to_string(i % 16)}).inc(); });
  const auto snapshot = snapshot_of(registry, "ddactor_events_total");
  ASSERT_EQ(snapshot.children.size(), 16u);
  for (const auto& child : snapshot.children)
    EXPECT_EQ(child.value, double(update_threads) * updates_per_thread / 16);
}

// --- names ----------------------------------------------------------------------------------

class invalid_metric_name_test : public testing::TestWithParam<std::string> {};

TEST_P(invalid_metric_name_test, is_refused_for_every_kind) {
  metrics_registry registry;
  const std::string& name = GetParam();
  EXPECT_THROW(registry.counter(name, "C."), metrics_error);
  EXPECT_THROW(registry.gauge(name, "G."), metrics_error);
  EXPECT_THROW(registry.histogram(name, "H.", {}, {1.0}), metrics_error);
  EXPECT_THROW((void)registry.callback_gauge(name, "G.", {}, [] { return 1.0; }), metrics_error);
  EXPECT_TRUE(registry.collect().empty());
}

INSTANTIATE_TEST_SUITE_P(metrics_registry, invalid_metric_name_test,
                         testing::Values("", "1ddactor_total", "ddactor-x_total",
                                         "ddactor x_total", "ddactor_\xc3\xa9_total",
                                         "ddactor_x{}_total", "other_x_total", "x_total",
                                         "Ddactor_x_total", "_ddactor_x_total"));

TEST(metrics_registry_test, valid_names_are_accepted) {
  metrics_registry registry;
  EXPECT_NO_THROW(registry.counter("ddactor_rpc:calls_total", "C.", {"_private", "Peer9"}));
  EXPECT_NO_THROW(registry.gauge("ddactor_:weird:_0", "G."));
  EXPECT_NO_THROW(registry.histogram("ddactor_h", "H.", {"a_b"}, {1}));
}

TEST(metrics_registry_test, counters_must_end_in_total) {
  metrics_registry registry;
  EXPECT_THROW(registry.counter("ddactor_steps", "C."), metrics_error);
  EXPECT_THROW(registry.counter("ddactor_total_steps", "C."), metrics_error);
  EXPECT_NO_THROW(registry.counter("ddactor_steps_total", "C."));
  EXPECT_NO_THROW(registry.gauge("ddactor_steps", "Gauges need no suffix."));
}

class invalid_label_name_test : public testing::TestWithParam<std::vector<std::string>> {};

TEST_P(invalid_label_name_test, is_refused) {
  metrics_registry registry;
  EXPECT_THROW(registry.counter("ddactor_c_total", "C.", GetParam()), metrics_error);
  EXPECT_THROW(registry.gauge("ddactor_g", "G.", GetParam()), metrics_error);
  EXPECT_THROW(registry.histogram("ddactor_h", "H.", GetParam(), {1.0}), metrics_error);
}

INSTANTIATE_TEST_SUITE_P(
    metrics_registry, invalid_label_name_test,
    testing::Values(std::vector<std::string>{""}, std::vector<std::string>{"1peer"},
                    std::vector<std::string>{"peer-id"}, std::vector<std::string>{"peer:id"},
                    std::vector<std::string>{"__name__"}, std::vector<std::string>{"__x"},
                    std::vector<std::string>{"le"}, std::vector<std::string>{"peer", "peer"},
                    std::vector<std::string>{"ok", "p\xc3\xa9"}));

TEST(metrics_registry_test, validators_name_the_offender) {
  try {
    validate_metric_name("bad-name");
    FAIL() << "no exception";
  } catch (const metrics_error& error) {
    EXPECT_NE(std::string(error.what()).find("'bad-name'"), std::string::npos) << error.what();
  }
  try {
    metrics_registry registry;
    registry.gauge("nope", "G.");
    FAIL() << "no exception";
  } catch (const metrics_error& error) {
    EXPECT_NE(std::string(error.what()).find("ddactor_"), std::string::npos) << error.what();
  }
}

// --- re-registration ------------------------------------------------------------------------

TEST(metrics_registry_test, same_signature_returns_the_same_family) {
  metrics_registry registry;
  auto& counters = registry.counter("ddactor_c_total", "C.", {"a"});
  auto& gauges = registry.gauge("ddactor_g", "G.", {"a", "b"});
  auto& histograms = registry.histogram("ddactor_h", "H.", {"a"}, {1.0, 2.0});
  EXPECT_EQ(&registry.counter("ddactor_c_total", "C.", {"a"}), &counters);
  EXPECT_EQ(&registry.gauge("ddactor_g", "G.", {"a", "b"}), &gauges);
  EXPECT_EQ(&registry.histogram("ddactor_h", "H.", {"a"}, {1.0, 2.0}), &histograms);
  EXPECT_EQ(registry.collect().size(), 3u);
}

TEST(metrics_registry_test, conflicting_signatures_throw) {
  metrics_registry registry;
  registry.counter("ddactor_c_total", "C.", {"a"});
  registry.histogram("ddactor_h", "H.", {"a"}, {1.0, 2.0});
  registry.gauge("ddactor_g", "G.");
  EXPECT_THROW(registry.gauge("ddactor_c_total", "C.", {"a"}), metrics_error);      // type
  EXPECT_THROW(registry.counter("ddactor_c_total", "Other.", {"a"}), metrics_error);  // help
  EXPECT_THROW(registry.counter("ddactor_c_total", "C.", {"b"}), metrics_error);   // labels
  EXPECT_THROW(registry.counter("ddactor_c_total", "C.", {"a", "b"}), metrics_error);
  EXPECT_THROW(registry.counter("ddactor_c_total", "C."), metrics_error);
  EXPECT_THROW(registry.histogram("ddactor_h", "H.", {"a"}, {1.0, 3.0}), metrics_error);
  EXPECT_THROW(registry.histogram("ddactor_h", "H.", {"a"}, {1.0}), metrics_error);
  EXPECT_THROW((void)registry.callback_gauge("ddactor_g", "G.", {}, [] { return 0.0; }),
               metrics_error);  // computed and stored gauges do not mix
  auto keep = registry.callback_gauge("ddactor_cg", "G.", {}, [] { return 0.0; });
  EXPECT_THROW(registry.gauge("ddactor_cg", "G."), metrics_error);
}

TEST(metrics_registry_test, sample_name_collisions_throw) {
  metrics_registry registry;
  registry.histogram("ddactor_rtt_seconds", "H.", {}, {1.0});
  EXPECT_THROW(registry.gauge("ddactor_rtt_seconds_count", "G."), metrics_error);
  EXPECT_THROW(registry.gauge("ddactor_rtt_seconds_sum", "G."), metrics_error);
  EXPECT_THROW(registry.gauge("ddactor_rtt_seconds_bucket", "G."), metrics_error);
  registry.gauge("ddactor_queue_sum", "G.");
  EXPECT_THROW(registry.histogram("ddactor_queue", "H.", {}, {1.0}), metrics_error);
  EXPECT_EQ(registry.collect().size(), 2u);
}

// --- off switch -----------------------------------------------------------------------------

TEST(metrics_registry_test, disabled_registry_ignores_updates) {
  metrics_registry registry;
  metrics_registry other;
  auto& c = registry.counter("ddactor_c_total", "C.").with();
  auto& g = registry.gauge("ddactor_g", "G.").with();
  auto& h = registry.histogram("ddactor_h", "H.", {}, {1.0}).with();
  auto& other_counter = other.counter("ddactor_c_total", "C.").with();
  c.inc();
  g.set(5);
  h.observe(0.5);

  registry.set_enabled(false);
  EXPECT_FALSE(registry.enabled());
  c.inc();
  c.inc(7);
  c.inc(0.5);
  g.set(9);
  g.inc();
  g.dec(3);
  h.observe(0.5);
  other_counter.inc();  // another registry is not affected
  auto& created_while_off = registry.counter("ddactor_new_total", "N.").with();
  created_while_off.inc();
  EXPECT_EQ(c.value(), 1.0);
  EXPECT_EQ(g.value(), 5.0);
  EXPECT_EQ(h.collect().count, 1u);
  EXPECT_EQ(created_while_off.value(), 0.0);
  EXPECT_EQ(other_counter.value(), 1.0);
  EXPECT_EQ(registry.collect().size(), 4u);  // scrapes still work

  registry.set_enabled(true);
  c.inc();
  h.observe(2.0);
  EXPECT_EQ(c.value(), 2.0);
  EXPECT_EQ(h.collect().count, 2u);
}

// --- callback gauges ------------------------------------------------------------------------

TEST(metrics_registry_test, callback_gauge_is_computed_at_each_scrape) {
  metrics_registry registry;
  double seconds_since_checkpoint = 12.5;
  auto registration = registry.callback_gauge(
      "ddactor_checkpoint_age_seconds", "Age.", {{"expert", "3"}},
      [&] { return seconds_since_checkpoint; });
  EXPECT_TRUE(registration.active());
  auto first = snapshot_of(registry, "ddactor_checkpoint_age_seconds");
  EXPECT_EQ(first.type, metric_type::gauge);
  EXPECT_EQ(first.label_names, (std::vector<std::string>{"expert"}));
  ASSERT_EQ(first.children.size(), 1u);
  EXPECT_EQ(first.children[0].label_values, (std::vector<std::string>{"3"}));
  EXPECT_EQ(first.children[0].value, 12.5);
  seconds_since_checkpoint = 30;
  EXPECT_EQ(snapshot_of(registry, "ddactor_checkpoint_age_seconds").children[0].value, 30.0);
}

TEST(metrics_registry_test, callback_gauge_series_live_as_long_as_their_registration) {
  metrics_registry registry;
  auto state = std::make_shared<int>(0);
  std::weak_ptr<int> watch = state;
  {
    auto first = registry.callback_gauge("ddactor_depth", "D.", {{"queue", "a"}},
                                         [state] { return double(*state) + 1; });
    auto second = registry.callback_gauge("ddactor_depth", "D.", {{"queue", "b"}},
                                          [] { return 2.0; });
    state.reset();
    auto family = snapshot_of(registry, "ddactor_depth");
    ASSERT_EQ(family.children.size(), 2u);
    EXPECT_EQ(family.children[0].value, 1.0);
    EXPECT_EQ(family.children[1].value, 2.0);

    callback_gauge_registration moved = std::move(first);
    EXPECT_FALSE(first.active());
    EXPECT_TRUE(moved.active());
    EXPECT_EQ(snapshot_of(registry, "ddactor_depth").children.size(), 2u);
    moved.reset();
    EXPECT_TRUE(watch.expired()) << "the removed callback must be destroyed";
    family = snapshot_of(registry, "ddactor_depth");
    ASSERT_EQ(family.children.size(), 1u);
    EXPECT_EQ(family.children[0].label_values, (std::vector<std::string>{"b"}));
  }
  // The family stays (it may come back); it just has no series.
  EXPECT_TRUE(snapshot_of(registry, "ddactor_depth").children.empty());
}

TEST(metrics_registry_test, callback_gauge_replacement_survives_the_old_registration) {
  metrics_registry registry;
  auto old_one = registry.callback_gauge("ddactor_x", "X.", {}, [] { return 1.0; });
  auto new_one = registry.callback_gauge("ddactor_x", "X.", {}, [] { return 2.0; });
  old_one.reset();  // must not remove the newer callback of the same series
  auto family = snapshot_of(registry, "ddactor_x");
  ASSERT_EQ(family.children.size(), 1u);
  EXPECT_EQ(family.children[0].value, 2.0);
  EXPECT_THROW((void)registry.callback_gauge("ddactor_x", "X.", {{"a", "1"}}, [] { return 0.0; }),
               metrics_error);  // other label names
}

TEST(metrics_registry_test, throwing_callback_is_left_out_of_the_scrape) {
  metrics_registry registry;
  auto bad = registry.callback_gauge("ddactor_y", "Y.", {{"k", "bad"}},
                                     []() -> double { throw std::runtime_error("boom"); });
  auto good = registry.callback_gauge("ddactor_y", "Y.", {{"k", "good"}}, [] { return 4.0; });
  auto family = snapshot_of(registry, "ddactor_y");
  ASSERT_EQ(family.children.size(), 1u);
  EXPECT_EQ(family.children[0].value, 4.0);
}

TEST(metrics_registry_test, registration_may_outlive_its_registry) {
  callback_gauge_registration registration;
  {
    metrics_registry registry;
    registration = registry.callback_gauge("ddactor_z", "Z.", {}, [] { return 1.0; });
    EXPECT_TRUE(registration.active());
  }
  EXPECT_FALSE(registration.active());
  registration.reset();  // nothing left to remove, must not crash
}

TEST(metrics_registry_test, callbacks_may_register_metrics) {
  metrics_registry registry;
  auto registration = registry.callback_gauge("ddactor_self", "S.", {}, [&registry] {
    registry.counter("ddactor_scrapes_total", "Scrapes.").with().inc();
    return 1.0;
  });
  registry.collect();
  registry.collect();
  EXPECT_EQ(registry.counter("ddactor_scrapes_total", "Scrapes.").with().value(), 2.0);
}

TEST(metrics_registry_test, global_registry_is_one_instance) {
  EXPECT_EQ(&global_metrics(), &global_metrics());
  auto& family = global_metrics().counter("ddactor_test_global_total", "Test.");
  EXPECT_EQ(&global_metrics().counter("ddactor_test_global_total", "Test."), &family);
}

TEST(metrics_registry_test, collect_is_sorted) {
  metrics_registry registry;
  registry.gauge("ddactor_b", "B.", {"x"});
  registry.gauge("ddactor_a", "A.", {"x"});
  auto& c = registry.gauge("ddactor_c", "C.", {"x", "y"});
  c.with({"b", "a"});
  c.with({"a", "z"});
  c.with({"a", "b"});
  const auto families = registry.collect();
  ASSERT_EQ(families.size(), 3u);
  EXPECT_EQ(families[0].name, "ddactor_a");
  EXPECT_EQ(families[1].name, "ddactor_b");
  ASSERT_EQ(families[2].children.size(), 3u);
  EXPECT_EQ(families[2].children[0].label_values, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(families[2].children[1].label_values, (std::vector<std::string>{"a", "z"}));
  EXPECT_EQ(families[2].children[2].label_values, (std::vector<std::string>{"b", "a"}));
}

}  // namespace
}  // namespace ddactor
