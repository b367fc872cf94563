// The state server and the state download in real actor systems talking over loopback: a
// download gives back the exact bytes; when its source's whole actor system goes away mid-download
// it resumes from another server holding the same state (fetching only the missing chunks) or
// starts over with another state; corrupt chunks and lying manifests are refused and fetched
// elsewhere; no usable candidate (none, too old, another swarm, silent) ends in a clear error by
// the deadline. Timings are never asserted: pacing (serve_delay) only makes "mid-download"
// reliable.
#include "actors/state_download.hpp"
#include "actors/state_server.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <thread>

#include "caf/io/all.hpp"

#include "monitoring/ddactor_metrics.hpp"
#include "runtime/actor_system_setup.hpp"
#include "runtime/actor_system_shutdown.hpp"
#include "runtime/tensor_blob.hpp"

namespace ddactor {
namespace {

using namespace std::chrono_literals;

shared_bytes random_state(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto bytes = std::make_shared<std::vector<char>>(size);
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    const uint64_t word = rng();
    std::memcpy(bytes->data() + i, &word, 8);
  }
  for (; i < size; ++i)
    (*bytes)[i] = static_cast<char>(rng());
  return bytes;
}

bool same_manifest(const state_manifest& a, const state_manifest& b) {
  return a.swarm_id == b.swarm_id && a.epoch == b.epoch && a.total_bytes == b.total_bytes &&
         a.chunk_bytes == b.chunk_bytes && a.chunk_count == b.chunk_count && a.digest == b.digest;
}

/// One actor system with the middleman, as a peer process would have. Actors it adopts are
/// stopped before it shuts down (a system waits for all its actors), and its end is bounded.
struct node {
  ddactor_system_config config{network_timing{200ms, 2000ms}};
  caf::actor_system system{config};
  detached_actor_guard guard{system, std::chrono::seconds(20)};
  std::vector<caf::actor> adopted;
  std::vector<std::pair<caf::actor, uint16_t>> published;

  ~node() {
    caf::scoped_actor self{system};
    for (auto& a : adopted) {
      self->monitor(a);
      self->send_exit(a, caf::exit_reason::user_shutdown);
      self->receive([](const caf::down_msg&) {}, caf::after(5s) >> [] {
        ADD_FAILURE() << "an actor did not stop";
      });
    }
    for (auto& [a, port] : published)
      system.middleman().unpublish(a, port);
    published.clear();
    adopted.clear();
    // Then `guard` waits until the detached actors are destroyed, not just stopped.
  }

  template <class Handle>
  Handle adopt(Handle a) {
    adopted.push_back(caf::actor_cast<caf::actor>(a));
    return a;
  }
  template <class Handle>
  uint16_t publish(const Handle& a) {
    auto port = system.middleman().publish(a, 0, "127.0.0.1");
    if (!port)
      throw std::runtime_error("publish failed: " + system.render(port.error()));
    published.emplace_back(caf::actor_cast<caf::actor>(a), *port);
    return *port;
  }
};

/// A peer whose state server is published on loopback.
struct server_node {
  std::unique_ptr<node> host = std::make_unique<node>();
  state_server_actor server;
  uint16_t port = 0;

  explicit server_node(state_server_options options = {}) {
    server = host->adopt(spawn_state_server(host->system, options));
    port = host->publish(server);
  }
  state_manifest put(const shared_bytes& bytes, int64_t epoch, const std::string& swarm) {
    caf::scoped_actor self{host->system};
    state_manifest out;
    self->request(server, 5s, caf::put_atom_v, bytes, epoch, swarm)
      .receive([&](state_manifest& m) { out = m; },
               [&](caf::error& e) { ADD_FAILURE() << host->system.render(e); });
    return out;
  }
  /// The whole peer goes away: its actors stop, its connections close.
  void shut_down() {
    server = nullptr;
    host.reset();
  }
};

/// A state server that lies: it answers manifest requests with `claimed` (true or forged), and
/// chunk requests with the chunks of `state` cut as `actual` says, each passed through `corrupt`
/// on its way out (checksums are computed for the digest asked).
struct lying_server_state {
  shared_bytes state;
  state_manifest actual;
  state_manifest claimed;
  std::function<void(state_chunk&)> corrupt;
  static inline const char* name = "lying_state_server";
};

caf::behavior lying_server(caf::stateful_actor<lying_server_state>* self, shared_bytes state,
                           state_manifest actual, state_manifest claimed,
                           std::function<void(state_chunk&)> corrupt) {
  self->state.state = std::move(state);
  self->state.actual = std::move(actual);
  self->state.claimed = std::move(claimed);
  self->state.corrupt = std::move(corrupt);
  return {
    [=](state_atom, const std::string&, int64_t) { return self->state.claimed; },
    [=](state_atom, uint64_t digest, uint64_t index) {
      const auto& st = self->state;
      const auto& m = st.actual;
      state_chunk chunk;
      chunk.digest = digest;
      chunk.index = index;
      if (index < m.chunk_count) {
        const auto range = chunk_range(m, index);
        chunk.bytes.assign(st.state->begin() + static_cast<std::ptrdiff_t>(range.offset),
                           st.state->begin() +
                             static_cast<std::ptrdiff_t>(range.offset + range.size));
      }
      chunk.checksum = state_chunk_checksum(digest, index, chunk.bytes);
      st.corrupt(chunk);
      return chunk;
    },
  };
}

/// A peer that never answers (a stopped process, a black-holed link).
struct silent_server_state {
  std::vector<caf::response_promise> ignored;
  static inline const char* name = "silent_state_server";
};

caf::behavior silent_server(caf::stateful_actor<silent_server_state>* self) {
  return {
    [=](state_atom, const std::string&, int64_t) -> caf::result<state_manifest> {
      auto promise = self->make_response_promise();
      self->state.ignored.push_back(promise);
      return promise;
    },
  };
}

class state_transfer_test : public ::testing::Test {
 protected:
  node client;
  caf::scoped_actor self{client.system};

  // Whatever is published there, honest or not, is taken for a state server, as a peer's hello
  // says it is one: connected as membership connects, without CAF's check of the interface
  // (remote_actor<T> would refuse the tests' dynamically typed liars before they could lie).
  state_server_remote connect(uint16_t port) {
    state_server_remote remote;
    self->request(client.system.middleman().actor_handle(), 5s, caf::connect_atom::value,
                  std::string("127.0.0.1"), port)
      .receive(
        [&](const caf::node_id&, caf::strong_actor_ptr& published, const std::set<std::string>&) {
          remote = caf::actor_cast<state_server_remote>(published);
        },
        [&](caf::error& err) { ADD_FAILURE() << "connect: " << client.system.render(err); });
    return remote;
  }

  state_download_options options_for(std::vector<state_server_remote> candidates,
                                     std::string swarm = "swarm") {
    state_download_options options;
    options.candidates = std::move(candidates);
    options.swarm_id = std::move(swarm);
    options.request_timeout = 4s;
    options.deadline = 8s;
    options.progress_interval = 200ms;
    return options;
  }

  state_download_actor start(state_download_options options) {
    return client.adopt(spawn_state_download(client.system, std::move(options)));
  }

  caf::expected<state_download_result> outcome_of(const state_download_actor& download) {
    std::optional<caf::expected<state_download_result>> out;
    self->request(download, 9s, caf::get_atom_v)
      .receive([&](state_download_result& r) { out.emplace(std::move(r)); },
               [&](caf::error& e) { out.emplace(std::move(e)); });
    return std::move(*out);
  }

  /// Bytes the download holds so far (and the total), as the download reports them.
  std::pair<uint64_t, uint64_t> progress_of(const state_download_actor& download) {
    std::pair<uint64_t, uint64_t> out{0, 0};
    self->request(download, 2s, status_atom_v)
      .receive([&](uint64_t present, uint64_t total) { out = {present, total}; },
               [&](caf::error& e) { ADD_FAILURE() << client.system.render(e); });
    return out;
  }

  /// Waits until the download holds at least `bytes`; false if it never does within 5 s.
  bool wait_for_progress(const state_download_actor& download, uint64_t bytes) {
    for (int i = 0; i < 2500; ++i) {
      if (progress_of(download).first >= bytes)
        return true;
      std::this_thread::sleep_for(2ms);
    }
    return false;
  }

  std::string render(const caf::error& e) { return client.system.render(e); }
};

// --- the server alone -------------------------------------------------------------------------

TEST_F(state_transfer_test, server_answers_manifests_and_chunks_and_refuses_the_rest) {
  auto server = client.adopt(spawn_state_server(client.system, {.chunk_bytes = 1000}));
  auto expect_error = [&](caf::error e, errc code, const std::string& words) {
    EXPECT_EQ(e, code) << render(e);
    EXPECT_NE(render(e).find(words), std::string::npos) << render(e);
  };
  self->request(server, 2s, state_atom_v, std::string{"swarm"}, int64_t{0})
    .receive([](state_manifest&) { FAIL() << "a manifest without a state"; },
             [&](caf::error& e) { expect_error(e, errc::data_unavailable, "no training state"); });

  auto state = random_state(2500, 1);
  state_manifest put_manifest;
  self->request(server, 2s, caf::put_atom_v, state, int64_t{4}, std::string{"swarm"})
    .receive([&](state_manifest& m) { put_manifest = m; },
             [&](caf::error& e) { FAIL() << render(e); });
  EXPECT_EQ(put_manifest.digest, blob_checksum(*state));
  EXPECT_EQ(put_manifest.chunk_count, 3u);
  EXPECT_EQ(put_manifest.epoch, 4);

  self->request(server, 2s, state_atom_v, std::string{"swarm"}, int64_t{0})
    .receive([&](state_manifest& m) { EXPECT_TRUE(same_manifest(m, put_manifest)); },
             [&](caf::error& e) { FAIL() << render(e); });
  self->request(server, 2s, state_atom_v, std::string{"expert-1"}, int64_t{0})
    .receive([](state_manifest&) { FAIL() << "served another swarm"; },
             [&](caf::error& e) { expect_error(e, errc::invalid_message, "'swarm', not 'expert-1'"); });
  for (uint64_t i = 0; i < 3; ++i)
    self->request(server, 2s, state_atom_v, put_manifest.digest, i)
      .receive([&](state_chunk& c) { EXPECT_FALSE(validate_state_chunk(c, put_manifest, i)); },
               [&](caf::error& e) { FAIL() << render(e); });
  self->request(server, 2s, state_atom_v, put_manifest.digest, uint64_t{3})
    .receive([](state_chunk&) { FAIL() << "chunk out of range served"; },
             [&](caf::error& e) { expect_error(e, errc::invalid_message, "out of range"); });
  self->request(server, 2s, state_atom_v, put_manifest.digest + 1, uint64_t{0})
    .receive([](state_chunk&) { FAIL() << "chunk of an unknown state served"; },
             [&](caf::error& e) { expect_error(e, errc::data_unavailable, "no longer served"); });
  self->request(server, 2s, caf::put_atom_v, shared_bytes{}, int64_t{5}, std::string{"swarm"})
    .receive([](state_manifest&) { FAIL() << "null state accepted"; },
             [&](caf::error& e) { EXPECT_EQ(e, errc::invalid_message); });
}

// Which older states stay after a put: one in use stays (a download can finish it), one nobody
// used goes, and never more than max_states.
struct retention_case {
  std::chrono::milliseconds retain_idle;
  uint32_t max_states;
  bool use_first_before_puts;
  int puts_after_first;
  bool first_still_served;
};

class state_server_retention : public state_transfer_test,
                               public ::testing::WithParamInterface<retention_case> {};

TEST_P(state_server_retention, keeps_older_states_only_while_in_use) {
  const auto c = GetParam();
  auto server = client.adopt(spawn_state_server(
    client.system, {.chunk_bytes = 100, .retain_idle = c.retain_idle, .max_states = c.max_states}));
  auto put = [&](int64_t epoch) {
    state_manifest out;
    self->request(server, 2s, caf::put_atom_v, random_state(300, epoch), epoch, std::string{"s"})
      .receive([&](state_manifest& m) { out = m; }, [&](caf::error& e) { FAIL() << render(e); });
    return out;
  };
  auto serves = [&](const state_manifest& m) {
    bool ok = false;
    self->request(server, 2s, state_atom_v, m.digest, uint64_t{0})
      .receive([&](state_chunk&) { ok = true; }, [&](caf::error& e) {
        EXPECT_EQ(e, errc::data_unavailable) << render(e);
      });
    return ok;
  };
  const auto first = put(1);
  if (c.use_first_before_puts)
    EXPECT_TRUE(serves(first));
  else
    std::this_thread::sleep_for(c.retain_idle + 50ms);
  state_manifest last;
  for (int k = 0; k < c.puts_after_first; ++k) {
    last = put(2 + k);
    if (c.use_first_before_puts && k + 1 < c.puts_after_first)
      serves(first); // a download still working on it
  }
  EXPECT_EQ(serves(first), c.first_still_served);
  EXPECT_TRUE(serves(last));
}

INSTANTIATE_TEST_SUITE_P(
  cases, state_server_retention,
  ::testing::Values(retention_case{60'000ms, 3, true, 1, true},   // in use: kept
                    retention_case{60'000ms, 3, true, 2, true},   // still in use two puts later
                    retention_case{60'000ms, 2, true, 2, false},  // but never beyond max_states
                    retention_case{60'000ms, 1, true, 1, false},  // one state only
                    retention_case{50ms, 3, false, 1, false}));   // unused for retain_idle: gone

// --- downloads over loopback ------------------------------------------------------------------

struct download_shape {
  size_t state_bytes;
  uint64_t chunk_bytes;
  uint32_t in_flight;
};

class state_download_shapes : public state_transfer_test,
                              public ::testing::WithParamInterface<download_shape> {};

TEST_P(state_download_shapes, gives_back_identical_bytes) {
  const auto shape = GetParam();
  server_node peer({.chunk_bytes = shape.chunk_bytes});
  auto state = random_state(shape.state_bytes, shape.state_bytes);
  const auto manifest = peer.put(state, 12, "swarm");
  auto& metrics = global_metrics();
  state_transfer_metrics m{metrics};
  const double ok_before = m.downloads_ok.value();
  const double bytes_before = m.download_bytes.value();

  auto options = options_for({connect(peer.port)});
  options.min_epoch = 12;
  options.chunks_in_flight = shape.in_flight;
  auto result = download_state(client.system, options);
  ASSERT_TRUE(result) << render(result.error());
  ASSERT_TRUE(result->bytes);
  EXPECT_TRUE(*result->bytes == *state);
  EXPECT_TRUE(same_manifest(result->manifest, manifest));
  EXPECT_EQ(result->chunks_fetched, manifest.chunk_count);
  EXPECT_EQ(result->chunks_per_candidate, std::vector<uint64_t>{manifest.chunk_count});
  EXPECT_EQ(result->resumes, 0u);
  EXPECT_EQ(result->restarts, 0u);
  EXPECT_EQ(result->chunks_rejected, 0u);
  EXPECT_EQ(m.downloads_ok.value(), ok_before + 1);
  EXPECT_EQ(m.download_bytes.value(), bytes_before + static_cast<double>(shape.state_bytes));
}

INSTANTIATE_TEST_SUITE_P(shapes, state_download_shapes,
                         ::testing::Values(download_shape{20'000'000, 4 << 20, 4},
                                           download_shape{20'000'000, 1 << 20, 1},
                                           download_shape{3'000'001, 64 << 10, 8},
                                           download_shape{1, 4 << 20, 4},
                                           download_shape{0, 4 << 20, 4}));

TEST_F(state_transfer_test, download_resumes_from_another_server_when_its_source_dies) {
  auto state = random_state(4 << 20, 7);
  server_node slow({.chunk_bytes = 64 << 10, .serve_delay = 15ms});
  server_node spare({.chunk_bytes = 64 << 10});
  const auto manifest = slow.put(state, 3, "swarm");
  ASSERT_TRUE(same_manifest(spare.put(state, 3, "swarm"), manifest));
  state_transfer_metrics metrics{global_metrics()};
  const double resumes_before = metrics.resumes.value();

  auto download = start(options_for({connect(slow.port), connect(spare.port)}));
  ASSERT_TRUE(wait_for_progress(download, 4 * (64 << 10)));
  slow.shut_down();
  auto result = outcome_of(download);
  ASSERT_TRUE(result) << render(result.error());
  EXPECT_TRUE(*result->bytes == *state);
  EXPECT_EQ(result->resumes, 1u);
  EXPECT_EQ(result->restarts, 0u);
  ASSERT_EQ(result->chunks_per_candidate.size(), 2u);
  const auto from_slow = result->chunks_per_candidate[0];
  EXPECT_GE(from_slow, 4u);
  EXPECT_LT(from_slow, manifest.chunk_count);
  // Only the missing chunks came from the spare: no chunk was fetched twice.
  EXPECT_EQ(result->chunks_per_candidate[1], manifest.chunk_count - from_slow);
  EXPECT_EQ(result->chunks_fetched, manifest.chunk_count);
  EXPECT_EQ(result->chunks_discarded, 0u);
  EXPECT_EQ(metrics.resumes.value(), resumes_before + 1);
}

// A trainer that stops mid-download takes no state: the download ends at once instead of
// running on to its deadline (a detached actor left running holds the process open at exit).
TEST_F(state_transfer_test, download_ends_when_whoever_asked_for_it_is_gone) {
  auto silent = client.adopt(client.system.spawn(silent_server));
  auto options = options_for({caf::actor_cast<state_server_remote>(silent)});
  options.request_timeout = 60s;  // without its asker, the download would wait this long
  options.deadline = 120s;
  auto download = start(options);
  auto asker = client.system.spawn([download](caf::event_based_actor* asker) -> caf::behavior {
    asker->request(download, 9s, caf::get_atom_v)
      .then([](const state_download_result&) {}, [](const caf::error&) {});
    return {[](int) {}};
  });
  self->monitor(download);
  self->send_exit(asker, caf::exit_reason::user_shutdown);
  bool ended = false;
  self->receive([&](const caf::down_msg& dm) { ended = dm.source == download.address(); },
                caf::after(30s) >> [] {});
  EXPECT_TRUE(ended) << "the download outlived whoever asked for it";
}

TEST_F(state_transfer_test, download_starts_over_when_the_next_server_has_another_state) {
  auto old_state = random_state(2 << 20, 8);
  auto new_state = random_state(2 << 20 | 12345, 9);
  server_node slow({.chunk_bytes = 64 << 10, .serve_delay = 15ms});
  server_node other({.chunk_bytes = 64 << 10});
  const auto old_manifest = slow.put(old_state, 3, "swarm");
  const auto new_manifest = other.put(new_state, 4, "swarm");
  ASSERT_NE(old_manifest.digest, new_manifest.digest);

  auto download = start(options_for({connect(slow.port), connect(other.port)}));
  ASSERT_TRUE(wait_for_progress(download, 3 * (64 << 10)));
  slow.shut_down();
  auto result = outcome_of(download);
  ASSERT_TRUE(result) << render(result.error());
  EXPECT_TRUE(*result->bytes == *new_state);
  EXPECT_TRUE(same_manifest(result->manifest, new_manifest));
  EXPECT_EQ(result->restarts, 1u);
  EXPECT_EQ(result->resumes, 0u);
  const auto from_slow = result->chunks_per_candidate[0];
  EXPECT_GE(from_slow, 3u);
  EXPECT_EQ(result->chunks_discarded, from_slow);
  EXPECT_EQ(result->chunks_per_candidate[1], new_manifest.chunk_count);
}

TEST_F(state_transfer_test, download_skips_a_source_whose_state_moved_on) {
  // The source drops the state being downloaded (two new epochs, max_states 1): its chunk
  // requests fail with data_unavailable, and the download finishes the state from a spare.
  auto state = random_state(1 << 20, 10);
  server_node moving({.chunk_bytes = 32 << 10, .serve_delay = 10ms, .max_states = 1});
  server_node spare({.chunk_bytes = 32 << 10});
  const auto manifest = moving.put(state, 5, "swarm");
  spare.put(state, 5, "swarm");
  auto download = start(options_for({connect(moving.port), connect(spare.port)}));
  ASSERT_TRUE(wait_for_progress(download, 2 * (32 << 10)));
  moving.put(random_state(1000, 11), 6, "swarm");
  auto result = outcome_of(download);
  ASSERT_TRUE(result) << render(result.error());
  EXPECT_TRUE(*result->bytes == *state);
  EXPECT_EQ(result->resumes, 1u);
  EXPECT_EQ(result->chunks_fetched, manifest.chunk_count);
}

// --- hostile or broken servers ----------------------------------------------------------------

struct chunk_lie {
  std::string name;
  std::function<void(state_chunk&)> corrupt;
};

class state_download_bad_chunks : public state_transfer_test,
                                  public ::testing::WithParamInterface<chunk_lie> {};

TEST_P(state_download_bad_chunks, are_rejected_and_fetched_from_another_server) {
  constexpr uint64_t chunk = 16 << 10;
  constexpr uint64_t bad_index = 2;
  auto state = random_state(10 * chunk + 100, 12);
  server_node honest({.chunk_bytes = chunk});
  const auto manifest = honest.put(state, 1, "swarm");
  node liar_host;
  auto lie = GetParam().corrupt;
  auto liar = liar_host.adopt(liar_host.system.spawn(
    lying_server, state, manifest, manifest, [lie](state_chunk& c) {
      if (c.index == bad_index)
        lie(c);
    }));
  const auto liar_port = liar_host.publish(liar);
  state_transfer_metrics metrics{global_metrics()};
  const double rejected_before = metrics.rejected_chunks.value();

  auto result = download_state(client.system, options_for({connect(liar_port), connect(honest.port)}));
  ASSERT_TRUE(result) << render(result.error());
  EXPECT_TRUE(*result->bytes == *state);
  EXPECT_EQ(result->chunks_rejected, 1u);
  EXPECT_EQ(metrics.rejected_chunks.value(), rejected_before + 1);
  EXPECT_EQ(result->chunks_fetched, manifest.chunk_count);
  EXPECT_LE(result->chunks_per_candidate[0], manifest.chunk_count - 1);
  EXPECT_GE(result->chunks_per_candidate[1], 1u);
}

INSTANTIATE_TEST_SUITE_P(
  lies, state_download_bad_chunks,
  ::testing::Values(
    chunk_lie{"wrong_checksum", [](state_chunk& c) { c.checksum ^= 0x100; }},
    chunk_lie{"flipped_byte", [](state_chunk& c) { c.bytes[100] ^= 1; }},
    chunk_lie{"short_with_matching_checksum",
              [](state_chunk& c) {
                c.bytes.resize(c.bytes.size() / 2);
                c.checksum = state_chunk_checksum(c.digest, c.index, c.bytes);
              }},
    chunk_lie{"long_with_matching_checksum",
              [](state_chunk& c) {
                c.bytes.resize(c.bytes.size() * 3);
                c.checksum = state_chunk_checksum(c.digest, c.index, c.bytes);
              }},
    chunk_lie{"other_index",
              [](state_chunk& c) {
                c.index += 1;
                c.checksum = state_chunk_checksum(c.digest, c.index, c.bytes);
              }},
    chunk_lie{"other_digest",
              [](state_chunk& c) {
                c.digest += 1;
                c.checksum = state_chunk_checksum(c.digest, c.index, c.bytes);
              }}),
  [](const auto& info) { return info.param.name; });

struct manifest_lie {
  std::string name;
  std::function<void(state_manifest&)> forge;
  bool chunks_pass = false;
};

class state_download_bad_manifests : public state_transfer_test,
                                     public ::testing::WithParamInterface<manifest_lie> {};

TEST_P(state_download_bad_manifests, skip_the_liar_without_trusting_its_sizes) {
  auto state = random_state(100'000, 13);
  server_node honest({.chunk_bytes = 8192});
  const auto manifest = honest.put(state, 2, "swarm");
  auto forged = manifest;
  GetParam().forge(forged);
  node liar_host;
  auto liar = liar_host.adopt(
    liar_host.system.spawn(lying_server, state, manifest, forged, [](state_chunk&) {}));
  const auto liar_port = liar_host.publish(liar);

  auto options = options_for({connect(liar_port), connect(honest.port)});
  options.limits.max_total_bytes = 1 << 20;
  options.limits.max_chunk_bytes = 1 << 16;
  auto result = download_state(client.system, options);
  ASSERT_TRUE(result) << render(result.error());
  EXPECT_TRUE(*result->bytes == *state);
  // Nothing of the liar's is kept: its manifest is refused before a chunk is asked for, or (a
  // forged digest) its chunks are all dropped when the whole does not match.
  EXPECT_EQ(result->chunks_per_candidate[0], GetParam().chunks_pass ? manifest.chunk_count : 0u);
  EXPECT_EQ(result->chunks_discarded, result->chunks_per_candidate[0]);
  EXPECT_EQ(result->chunks_per_candidate[1], manifest.chunk_count);
}

INSTANTIATE_TEST_SUITE_P(
  lies, state_download_bad_manifests,
  ::testing::Values(
    manifest_lie{"huge_state",
                 [](state_manifest& m) {
                   m.total_bytes = uint64_t{1} << 40;
                   m.chunk_count = state_chunk_count(m.total_bytes, m.chunk_bytes);
                 }},
    manifest_lie{"huge_chunks",
                 [](state_manifest& m) {
                   m.chunk_bytes = uint64_t{1} << 30;
                   m.chunk_count = 1;
                 }},
    manifest_lie{"zero_chunk_size", [](state_manifest& m) { m.chunk_bytes = 0; }},
    manifest_lie{"chunk_count_too_small", [](state_manifest& m) { m.chunk_count -= 1; }},
    manifest_lie{"chunk_count_absurd",
                 [](state_manifest& m) { m.chunk_count = ~uint64_t{0}; }},
    manifest_lie{"other_swarm", [](state_manifest& m) { m.swarm_id = "intruder"; }},
    manifest_lie{"negative_epoch", [](state_manifest& m) { m.epoch = -5; }},
    // Chunks that match the checksums of a forged digest: every chunk passes, the whole does not.
    manifest_lie{"forged_digest", [](state_manifest& m) { m.digest ^= 1; }, true}),
  [](const auto& info) { return info.param.name; });

// --- nothing to download ----------------------------------------------------------------------

TEST_F(state_transfer_test, no_candidate_is_a_clear_error) {
  auto result = download_state(client.system, options_for({}));
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error(), errc::data_unavailable);
  EXPECT_NE(render(result.error()).find("no candidates"), std::string::npos)
    << render(result.error());
}

TEST_F(state_transfer_test, candidates_that_are_too_old_or_empty_are_a_clear_error) {
  server_node old_peer;
  server_node empty_peer;
  old_peer.put(random_state(5000, 14), 3, "swarm");
  state_transfer_metrics metrics{global_metrics()};
  const double failed_before = metrics.downloads_failed.value();
  auto options =
    options_for({connect(old_peer.port), state_server_remote{}, connect(empty_peer.port)});
  options.min_epoch = 4;
  auto result = download_state(client.system, options);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error(), errc::data_unavailable);
  const auto text = render(result.error());
  EXPECT_NE(text.find("candidate 0: serves epoch 3, older than the 4 wanted"), std::string::npos)
    << text;
  EXPECT_NE(text.find("candidate 1: no actor handle"), std::string::npos) << text;
  EXPECT_NE(text.find("candidate 2: no manifest"), std::string::npos) << text;
  EXPECT_EQ(metrics.downloads_failed.value(), failed_before + 1);
}

TEST_F(state_transfer_test, a_wrong_swarm_id_is_refused) {
  server_node peer;
  peer.put(random_state(5000, 15), 3, "expert-0");
  auto result = download_state(client.system, options_for({connect(peer.port)}, "expert-1"));
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error(), errc::data_unavailable);
  EXPECT_NE(render(result.error()).find("serves the state of swarm 'expert-0', not 'expert-1'"),
            std::string::npos)
    << render(result.error());
}

// Peers publish their state a moment apart: a request for an epoch the server has not reached
// waits for it (bounded), instead of finding the source one epoch behind every time.
TEST_F(state_transfer_test, a_manifest_request_for_a_newer_epoch_waits_for_it) {
  auto server = client.adopt(spawn_state_server(
    client.system, {.chunk_bytes = 1000, .manifest_wait = std::chrono::milliseconds(300)}));
  auto put = [&](int64_t epoch) {
    self->request(server, 2s, caf::put_atom_v, random_state(100, static_cast<uint64_t>(epoch)),
                  epoch, std::string{"swarm"})
      .receive([](state_manifest&) {}, [&](caf::error& e) { FAIL() << render(e); });
  };
  put(4);
  // Asked for epoch 5 while the server holds 4; the put of 5 comes while the request waits.
  auto waiting = self->request(server, 5s, state_atom_v, std::string{"swarm"}, int64_t{5});
  std::this_thread::sleep_for(50ms);
  put(5);
  waiting.receive([](state_manifest& m) { EXPECT_EQ(m.epoch, 5); },
                  [&](caf::error& e) { FAIL() << render(e); });
  // Nothing newer comes: after the wait, the current state (the downloader decides).
  const auto asked = std::chrono::steady_clock::now();
  self->request(server, 5s, state_atom_v, std::string{"swarm"}, int64_t{9})
    .receive([](state_manifest& m) { EXPECT_EQ(m.epoch, 5); },
             [&](caf::error& e) { FAIL() << render(e); });
  EXPECT_GE(std::chrono::steady_clock::now() - asked, 300ms);
}

// A download is a detached actor with a long deadline: once it has answered, nothing may hold it
// (and its thread) until that deadline, or an actor system ending meanwhile waits on it.
TEST_F(state_transfer_test, a_finished_download_is_not_held_by_its_deadline) {
  server_node peer;
  auto state = random_state(20'000, 18);
  peer.put(state, 1, "swarm");
  const size_t before = client.system.detached_actors();
  auto options = options_for({connect(peer.port)});
  options.deadline = std::chrono::minutes(30);
  auto result = download_state(client.system, options);
  ASSERT_TRUE(result) << render(result.error());
  EXPECT_EQ(await_detached_actors(client.system, before, 10s), 0u)
    << "the download's thread was still there 10 s after it answered";
}

TEST_F(state_transfer_test, a_silent_candidate_times_out_and_the_next_one_serves) {
  node silent_host;
  auto silent = silent_host.adopt(silent_host.system.spawn(silent_server));
  const auto silent_port = silent_host.publish(silent);
  server_node peer;
  auto state = random_state(10'000, 16);
  peer.put(state, 1, "swarm");
  auto options = options_for({connect(silent_port), connect(peer.port)});
  options.request_timeout = 300ms;
  auto result = download_state(client.system, options);
  ASSERT_TRUE(result) << render(result.error());
  EXPECT_TRUE(*result->bytes == *state);
}

TEST_F(state_transfer_test, the_deadline_ends_a_download_that_gets_nowhere) {
  node silent_host;
  auto silent = silent_host.adopt(silent_host.system.spawn(silent_server));
  const auto silent_port = silent_host.publish(silent);
  auto options = options_for({connect(silent_port)});
  options.request_timeout = 60s;
  options.deadline = 300ms;
  auto result = download_state(client.system, options);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error(), errc::peer_unreachable);
  EXPECT_NE(render(result.error()).find("within the deadline of 300 ms (nothing downloaded)"),
            std::string::npos)
    << render(result.error());
}

TEST_F(state_transfer_test, the_outcome_waits_for_its_requester) {
  server_node peer;
  auto state = random_state(50'000, 17);
  peer.put(state, 1, "swarm");
  auto download = start(options_for({connect(peer.port)}));
  // Ask only once the download is complete: the bytes are kept until then.
  for (int i = 0; i < 2500; ++i) {
    auto [present, total] = progress_of(download);
    if (total > 0 && present == total)
      break;
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_EQ(progress_of(download), std::make_pair(uint64_t{50'000}, uint64_t{50'000}));
  auto result = outcome_of(download);
  ASSERT_TRUE(result) << render(result.error());
  EXPECT_TRUE(*result->bytes == *state);
}

} // namespace
} // namespace ddactor
