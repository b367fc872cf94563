// ddactor_allreduce_peer: the smallest swarm peer there is, for the all-reduce benchmarks. It runs
// an actor system with networking, a membership actor and an averager -- exactly the actors a
// training peer uses for averaging -- and no trainer: once its view holds --peers members it asks
// its averager for --rounds rounds, each on the same random vector of --elements floats (seeded
// by --seed, so every peer holds different values), and prints one JSON line per round:
//
//   {"event":"listening","peer_id":"..","port":7000}
//   {"event":"ready","view":4,"seconds":1.2}
//   {"round":0,"group_size":4,"averaged":true,"failed":false,"seconds":9.81,"wall_seconds":10.2,
//    "bytes_sent":150000000,"bytes_received":150000000,"restarts":0,"cpu_seconds":1.4,
//    "checksum":"..","detail":""}
//   {"event":"done"}
//
// `seconds` is the all-reduce as average_outcome reports it (from the group assignment to the
// result); `wall_seconds` is the request as the trainer would see it, matchmaking included;
// `checksum` is a hash of the result, equal on every member of a round; `cpu_seconds` the CPU
// time this process spent during the request (all threads). After the last round a
// one-element barrier round makes sure every peer has its result before any peer leaves (a peer
// that left early would look failed to the others). --die-after-rounds k SIGKILLs the process
// after k rounds (recovery experiments).
//
//   ddactor_allreduce_peer --peers 4 --rounds 3 --elements 25000000 --listen 127.0.0.1:7000
//       [--announce host:port] [--initial-peer host:port ...] [--codec none] [--zstd-level 0]
//       [--chunk-elements 262144] [--dit-layout S/2] [--seed 1] [--die-after-rounds 0]
//       [--sealed [--unreachable]]
#include <torch/torch.h>

#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <random>
#include <thread>

#include "actors/averager.hpp"
#include "actors/membership.hpp"
#include "models/dit.hpp"
#include "models/flat_parameters.hpp"
#include "runtime/actor_system_setup.hpp"
#include "runtime/actor_system_shutdown.hpp"
#include "runtime/message_types.hpp"
#include "runtime/peer_identity.hpp"
#include "runtime/secure/link_gateway.hpp"
#include "runtime/tensor_blob.hpp"

namespace {

using namespace ddactor;
using clock_type = std::chrono::steady_clock;

std::chrono::milliseconds seconds(double s) {
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000.0));
}

// CPU time of this process so far (all threads, user and system).
double cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

void print_line(const nlohmann::json& line) {
  std::printf("%s\n", line.dump().c_str());
  std::fflush(stdout);
}

// Where the tensors of a DiT of this preset begin and end in its flat parameter vector, so that
// the adaptive codec sees a real model's layout. DiT-S/2 on 32x32x4 latents, 1000 classes, is the
// paper's 33M-parameter model.
std::vector<uint64_t> dit_tensor_bounds(const std::string& preset) {
  dit_options o;
  o.image_size = 32;
  o.in_channels = 4;
  o.num_classes = 1000;
  auto slash = preset.find('/');
  auto size = preset.substr(0, slash);
  o.patch_size = slash == std::string::npos ? 2 : std::stoi(preset.substr(slash + 1));
  if (size == "S") {
    o.hidden_size = 384, o.depth = 12, o.num_heads = 6;
  } else if (size == "B") {
    o.hidden_size = 768, o.depth = 12, o.num_heads = 12;
  } else {
    throw std::invalid_argument("--dit-layout: S/<p> or B/<p>, got " + preset);
  }
  dit model(o);
  flat_parameters flat(*model);
  std::vector<uint64_t> bounds;
  for (const auto& e : flat.entries())
    bounds.push_back(static_cast<uint64_t>(e.offset));
  bounds.push_back(static_cast<uint64_t>(flat.size()));
  return bounds;
}

std::pair<std::string, uint16_t> host_and_port(const std::string& text, const char* flag) {
  auto parsed = parse_peer_address(text);
  if (!parsed) {
    // Port 0 is allowed for --listen (any free port).
    auto colon = text.rfind(':');
    if (colon != std::string::npos && text.substr(colon + 1) == "0")
      return {text.substr(0, colon), 0};
    throw std::invalid_argument(std::string(flag) + ": expected host:port, got '" + text + "'");
  }
  return *parsed;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"A swarm peer that only averages: membership + averager, no trainer"};
  int peers = 2, rounds = 3, die_after_rounds = 0;
  int64_t elements = 1000000;
  std::string listen = "127.0.0.1:0", announce, codec = "none", dit_layout, swarm_id = "bench";
  std::vector<std::string> initial_peers;
  int zstd_level = 0, int8_block = 256;
  double topk_fraction = 0.05, gossip_interval = 1.0, suspect_after = 3.0, remove_after = 8.0;
  double heartbeat = 0.5, connection_timeout = 3.0, matchmaking_time = 30.0;
  double allreduce_timeout = 600.0, request_timeout = 10.0, ready_timeout = 120.0;
  double settle = 1.0, linger = 2.0, bandwidth_mbit = 0;
  size_t chunk_elements = 262144, adaptive_exact_below = 16384, compressor_threads = 2;
  uint64_t seed = 1;
  bool sealed = false, unreachable = false, signed_chunks = false;
  double audit_probability = 0;
  app.add_option("--peers", peers, "start once the view holds this many peers")->capture_default_str();
  app.add_option("--rounds", rounds, "averaging rounds")->capture_default_str();
  app.add_option("--elements", elements, "floats per vector")->capture_default_str();
  app.add_option("--listen", listen, "host:port to accept peers on (port 0: any)")->capture_default_str();
  app.add_option("--announce", announce, "host:port other peers dial (e.g. a latency relay)");
  app.add_option("--initial-peer", initial_peers, "host:port of a peer of the swarm (repeatable)");
  app.add_option("--codec", codec, "none, fp16, bf16, int8, topk, adaptive")->capture_default_str();
  app.add_option("--zstd-level", zstd_level, "zstd stage (0: off)")->capture_default_str();
  app.add_option("--int8-block-size", int8_block, "elements per int8 scale")->capture_default_str();
  app.add_option("--topk-fraction", topk_fraction, "share top-k keeps")->capture_default_str();
  app.add_option("--adaptive-exact-below", adaptive_exact_below, "adaptive: exact below")
    ->capture_default_str();
  app.add_option("--chunk-elements", chunk_elements, "elements per chunk")->capture_default_str();
  app.add_option("--compressor-threads", compressor_threads, "compressor actors")
    ->capture_default_str();
  app.add_option("--dit-layout", dit_layout,
                 "the vector is a DiT of this preset (S/2, B/4, ...): --elements becomes its "
                 "parameter count and the adaptive codec sees its tensors");
  app.add_option("--seed", seed, "seed of this peer's values")->capture_default_str();
  app.add_option("--bandwidth", bandwidth_mbit,
                 "this peer's link in Mbit/s for the leader's cut (0: measured by its rounds)")
    ->capture_default_str();
  app.add_flag("--sealed", sealed,
               "links through the gateway (handshake, ChaCha20-Poly1305), as a training peer's "
               "with network.encryption = true");
  app.add_flag("--signed", signed_chunks,
               "sign every chunk, keep the evidence of this peer's part and audit other reducers "
               "(with --audit-probability), as a training peer does (needs --sealed)");
  app.add_option("--audit-probability", audit_probability,
                 "with --signed: the chance of auditing another reducer after a round")
    ->capture_default_str();
  app.add_flag("--unreachable", unreachable,
               "behind NAT: dial out, hold relay reservations at the initial peers, reduce no "
               "part (needs --sealed)");
  app.add_option("--die-after-rounds", die_after_rounds, "SIGKILL itself after k rounds (0: never)")
    ->capture_default_str();
  app.add_option("--swarm-id", swarm_id, "swarm id")->capture_default_str();
  app.add_option("--gossip-interval", gossip_interval, "s")->capture_default_str();
  app.add_option("--suspect-after", suspect_after, "s")->capture_default_str();
  app.add_option("--remove-after", remove_after, "s")->capture_default_str();
  app.add_option("--heartbeat", heartbeat, "transport heartbeat interval, s")->capture_default_str();
  app.add_option("--connection-timeout", connection_timeout, "s")->capture_default_str();
  app.add_option("--matchmaking-time", matchmaking_time, "s")->capture_default_str();
  app.add_option("--allreduce-timeout", allreduce_timeout, "s")->capture_default_str();
  app.add_option("--request-timeout", request_timeout, "s")->capture_default_str();
  app.add_option("--ready-timeout", ready_timeout, "give up when the view is not full by then, s")
    ->capture_default_str();
  app.add_option("--settle", settle, "wait after the view is full (others' views fill too), s")
    ->capture_default_str();
  app.add_option("--linger", linger, "stay after the last round, s")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  // DDACTOR_BENCH_PEER_LOG set: debug lines too (the gateway's links, membership's dials).
  spdlog::set_level(std::getenv("DDACTOR_BENCH_PEER_LOG") ? spdlog::level::debug
                                                          : spdlog::level::warn);
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %l %v");

  try {
    std::shared_ptr<const std::vector<uint64_t>> bounds;
    if (!dit_layout.empty()) {
      auto b = dit_tensor_bounds(dit_layout);
      elements = static_cast<int64_t>(b.back());
      bounds = std::make_shared<const std::vector<uint64_t>>(std::move(b));
    }
    if (elements <= 0 || peers < 1 || rounds < 0)
      throw std::invalid_argument("--elements, --peers must be > 0 and --rounds >= 0");
    auto values = std::make_shared<std::vector<float>>(static_cast<size_t>(elements));
    {
      std::mt19937_64 random(seed);
      std::normal_distribution<float> normal(0.0f, 1.0f);
      for (auto& v : *values)
        v = normal(random);
    }

    auto [listen_host, listen_port] = host_and_port(listen, "--listen");
    // Declared before the actor system, so it outlives every link CAF holds.
    std::shared_ptr<link_gateway> gateway;
    // Sealed, the id derives from the gateway's key, as a training peer's does (relays check
    // that the key answering a circuit is the one its id names).
    auto key = peer_key::generate();
    if (unreachable && !sealed)
      throw std::invalid_argument("--unreachable needs --sealed (relays are the gateway's)");
    if (sealed) {
      symmetric_key bench_key{};
      bench_key.fill(0x42);
      link_gateway_options options;
      options.listen_hosts = {listen_host};
      options.listen_port = listen_port;
      options.max_message_bytes = peer_message_limit;  // as a peer does: its cost is measured too
      options.idle_timeout = seconds(std::max(connection_timeout, remove_after));  // as a peer
      gateway = std::make_shared<link_gateway>(key, admission_policy::of_swarm(bench_key),
                                               options);
    }
    network_timing timing{seconds(heartbeat), seconds(connection_timeout)};
    // As a training peer: behind the gateway, links time out by their bytes.
    if (gateway)
      timing.connection_timeout = std::max(timing.connection_timeout, caf_timeout_behind_gateway);
    ddactor_system_config config(timing, /*with_network=*/true);
    caf::actor_system system{config};
    detached_actor_guard guard{system, std::chrono::seconds(30), shutdown_failure_exit_code};
    caf::scoped_actor self{system};
    const auto peer_id = sealed ? peer_id_of(key.public_part()) : make_random_peer_id();

    averager_options averaging;
    averaging.peer_id = peer_id;
    averaging.swarm_id = swarm_id;
    averaging.group_size = 64;
    averaging.chunk_elements = chunk_elements;
    averaging.matchmaking_time = seconds(matchmaking_time);
    averaging.allreduce_timeout = seconds(allreduce_timeout);
    averaging.request_timeout = seconds(request_timeout);
    averaging.codec = codec;
    averaging.codec_settings.zstd_level = zstd_level;
    averaging.codec_settings.int8_block_size = int8_block;
    averaging.codec_settings.topk_fraction = topk_fraction;
    averaging.codec_settings.adaptive_exact_below = adaptive_exact_below;
    averaging.compressor_threads = compressor_threads;
    averaging.link_rate = bandwidth_mbit * 1e6 / 8;
    averaging.reachable = !unreachable;
    if (signed_chunks) {
      if (!sealed)
        throw std::invalid_argument("--signed needs --sealed (ids derive from the gateway's key)");
      averaging.key = key;
      averaging.require_proof = true;
      averaging.audit_probability = audit_probability;
    } else {
      averaging.audit_probability = 0;
    }
    auto averager = spawn_averager(system, averaging);

    membership_options members;
    members.listen_host = listen_host;
    members.listen_port = listen_port;
    members.self.info.peer_id = peer_id;
    members.self.info.swarm_id = swarm_id;
    members.self.info.incarnation = 1;
    members.self.info.host = listen_host;
    members.self.info.port = listen_port;
    if (!announce.empty()) {
      auto [host, port] = host_and_port(announce, "--announce");
      members.self.info.host = host;
      members.self.info.port = port;
      members.announce_port_fixed = port != 0;
    }
    members.self.averager = averager;
    members.self.info.reachable = !unreachable;
    if (unreachable)
      members.relay_candidates = initial_peers;
    members.gateway = gateway;
    members.initial_peers = initial_peers;
    members.gossip_interval = seconds(gossip_interval);
    members.suspect_after = seconds(suspect_after);
    members.remove_after = seconds(remove_after);
    auto membership = spawn_membership(system, members);
    self->send(membership, subscribe_atom_v, view_subscriber{averager});
    // Chunks then count as signs of life.
    self->send(averager, attach_atom_v, liveness_sink{membership});

    auto stop_actors = [&] {
      self->send_exit(averager, caf::exit_reason::user_shutdown);
      self->send_exit(membership, caf::exit_reason::user_shutdown);
    };
    bool listening = false;
    self->request(membership, std::chrono::seconds(30), caf::get_atom_v, caf::ok_atom_v)
      .receive(
        [&](uint16_t port) {
          listening = true;
          print_line({{"event", "listening"}, {"peer_id", peer_id}, {"port", port}});
        },
        [&](caf::error& err) {
          std::fprintf(stderr, "cannot listen on %s: %s\n", listen.c_str(),
                       system.render(err).c_str());
        });
    if (!listening) {
      stop_actors();
      return 1;
    }

    // Wait for a full view.
    auto started = clock_type::now();
    size_t view = 0;
    while (true) {
      self->request(membership, std::chrono::seconds(10), caf::get_atom_v)
        .receive([&](std::vector<swarm_member>& m) { view = m.size(); },
                 [&](caf::error&) { view = 0; });
      if (view >= static_cast<size_t>(peers))
        break;
      if (clock_type::now() - started > seconds(ready_timeout)) {
        std::fprintf(stderr, "only %zu of %d peers in the view after %.0f s\n", view, peers,
                     ready_timeout);
        stop_actors();
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::this_thread::sleep_for(seconds(settle));
    print_line({{"event", "ready"},
                {"view", view},
                {"seconds", std::chrono::duration<double>(clock_type::now() - started).count()}});

    auto deadline = averaging_deadline(averaging);
    std::shared_ptr<const std::vector<float>> shared_values = values;
    auto average = [&](int64_t epoch, std::shared_ptr<const std::vector<float>> vector,
                       std::shared_ptr<const std::vector<uint64_t>> tensor_bounds) {
      std::optional<average_outcome> result;
      std::string error;
      self
        ->request(averager, deadline, average_atom_v,
                  average_request{epoch, std::move(vector), 1.0, std::move(tensor_bounds), {}})
        .receive([&](average_outcome& outcome) { result = std::move(outcome); },
                 [&](caf::error& err) { error = system.render(err); });
      if (!result) {
        average_outcome failed;
        failed.result = round_result::failed;
        failed.detail = "no answer from the averager: " + error;
        result = std::move(failed);
      }
      return *result;
    };
    for (int r = 0; r < rounds; ++r) {
      auto begin = clock_type::now();
      double cpu_begin = cpu_seconds();
      auto outcome = average(r, shared_values, bounds);
      double wall = std::chrono::duration<double>(clock_type::now() - begin).count();
      double cpu = cpu_seconds() - cpu_begin;
      uint64_t checksum = 0;
      if (outcome.values)
        checksum = blob_checksum(std::span<const char>(
          reinterpret_cast<const char*>(outcome.values->data()),
          outcome.values->size() * sizeof(float)));
      char hex[17];
      std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(checksum));
      print_line({{"round", r},
                  {"group_size", outcome.group_size},
                  {"averaged", outcome.averaged()},
                  {"failed", outcome.result != round_result::averaged &&
                               outcome.result != round_result::alone},
                  {"seconds", outcome.seconds},
                  {"wall_seconds", wall},
                  {"bytes_sent", outcome.bytes_sent},
                  {"bytes_received", outcome.bytes_received},
                  {"restarts", outcome.restarts},
                  {"cpu_seconds", cpu},
                  {"checksum", hex},
                  {"detail", outcome.detail}});
      if (die_after_rounds > 0 && r + 1 == die_after_rounds) {
        std::fflush(stdout);
        std::raise(SIGKILL);
      }
    }
    // Barrier: nobody leaves before everybody has the last round's result.
    auto barrier = average(rounds, std::make_shared<const std::vector<float>>(1, 0.0f), nullptr);
    print_line({{"event", "done"}, {"barrier_group_size", barrier.group_size}});
    std::this_thread::sleep_for(seconds(linger));
    stop_actors();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ddactor_allreduce_peer: %s\n", e.what());
    return 2;
  }
}
