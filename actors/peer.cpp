// The peer actor: spawns and supervises the local actors; see peer.hpp for the child lifecycle.
#include "actors/peer.hpp"

#include <spdlog/spdlog.h>

#include <fstream>

#include "actors/averager.hpp"
#include "actors/checkpointer.hpp"
#include "actors/data_loader.hpp"
#include "actors/membership.hpp"
#include "actors/progress.hpp"
#include "actors/state_server.hpp"
#include "actors/trainer.hpp"
#include "models/out_of_memory.hpp"
#include "runtime/announced_addresses.hpp"
#include "runtime/attach_listener.hpp"
#include "runtime/secure/attach_key_file.hpp"
#include "runtime/secure/link_gateway.hpp"
#include "runtime/secure/peer_key.hpp"
#include "runtime/data_order.hpp"
#include "runtime/local_addresses.hpp"
#include "runtime/peer_address.hpp"
#include "runtime/peer_identity.hpp"
#include "monitoring/ddactor_metrics.hpp"
#include "monitoring/peer_health.hpp"
#include "monitoring/swarm_status.hpp"
#include "runtime/message_types.hpp"
#include "runtime/restart_policy.hpp"
#include "runtime/state_agreement.hpp"

namespace ddactor {

namespace {

enum class child_kind : uint8_t { trainer, data_loader, checkpointer };

const char* to_string(child_kind kind) {
  switch (kind) {
    case child_kind::trainer: return "trainer";
    case child_kind::data_loader: return "data_loader";
    case child_kind::checkpointer: return "checkpointer";
  }
  return "?";
}

struct peer_state {
  peer_options options;
  // One trainer and one data loader per rank (run.trainers); a slot is null while its actor
  // restarts. A trainer that is in no slot belongs to a set that failed and is ignored.
  std::vector<trainer_actor> trainers{};
  std::vector<data_loader_actor> loaders{};
  std::vector<uint64_t> loader_generations{};
  checkpointer_actor checkpointer;
  uint64_t loader_generation = 0;
  // Swarm mode (network.listen set).
  membership_actor membership;
  progress_actor progress;
  averager_actor averager;
  state_server_actor state_server;
  std::chrono::milliseconds averaging_deadline{0};
  uint64_t data_seed = 0;
  bool data_started = false;
  int loader_shards = 0;  // the shard count the loaders cut the node's batches into
  std::string swarm_id;
  restart_policy trainer_restarts;
  restart_policy loader_restarts;
  restart_policy checkpointer_restarts;
  bool stopping = false;
  supervision_metrics metrics{global_metrics()};
  // Trainers of other processes (run.attach): the door they come through, the c10d store
  // their sets meet in, and who came, in order. in_set: a rank of the current set (after the
  // peer's own ranks, in this order); the others join the next set.
  struct attached_trainer {
    uint64_t id = 0;
    uint32_t pid = 0;
    std::string device;
    bool in_set = false;
  };
  std::vector<attached_trainer> attached{};
  std::unique_ptr<node_store_host> node_store;
  std::unique_ptr<attach_listener> attach_door;
  uint64_t set_generation = 0;
  // Rank 0 was asked to checkpoint and stop so that the set re-forms with the attached ones.
  bool reforming = false;
  attach_metrics attach_counts{global_metrics()};
  static inline const char* name = "peer";
};

using peer_pointer = peer_actor::stateful_pointer<peer_state>;

void start_checkpointer(peer_pointer self) {
  auto& st = self->state;
  st.checkpointer = spawn_checkpointer(
    self->system(), {st.options.config.run_dir(), st.options.config.train.keep_checkpoints});
  self->monitor(st.checkpointer);
  self->link_to(st.checkpointer);
  for (const auto& trainer : st.trainers)
    if (trainer)
      self->send(trainer, attach_atom_v, st.checkpointer);
}

// The peer's own trainers (ranks 0 to run.trainers - 1).
int trainer_count(const peer_state& st) {
  return st.options.config.run.trainers;
}

// Ranks of the current set: the peer's own, then the attached ones in it.
int node_rank_count(const peer_state& st) {
  return trainer_count(st) +
         static_cast<int>(std::count_if(st.attached.begin(), st.attached.end(),
                                        [](const auto& a) { return a.in_set; }));
}

// Debug fault injection goes to the last rank: with several trainers, one that is not rank 0
// (which checkpoints) fails while the others wait for it in a sum.
bool injected_into(const peer_state& st, size_t rank, const restart_policy& restarts,
                   bool every_time) {
  return static_cast<int>(rank) == trainer_count(st) - 1 &&
         (restarts.total_restarts() == 0 || every_time);
}

// Starts the data loader of every own rank that has none. Every rank of the set, attached ones
// too, has a loader of its own with its shard of the node's batches (their loaders are in
// their processes).
void start_data_loader(peer_pointer self) {
  auto& st = self->state;
  const auto ranks = static_cast<size_t>(trainer_count(st));
  st.loaders.resize(ranks);
  st.loader_generations.resize(ranks);
  for (size_t rank = 0; rank < ranks; ++rank) {
    if (st.loaders[rank])
      continue;
    data_loader_options opts;
    opts.data = st.options.train_data;
    opts.sd_data = st.options.sd_data;
    opts.batch_size = st.options.config.data.batch_size;
    opts.seed = st.data_seed;
    opts.generation = ++st.loader_generation;
    opts.shard = static_cast<int>(rank);
    opts.shards = node_rank_count(st);
    // Faults are injected into the first incarnation only, so the restarted one proves recovery.
    if (injected_into(st, rank, st.loader_restarts, false))
      opts.crash_after_batches = st.options.config.debug.crash_loader_after_batches;
    st.loader_generations[rank] = opts.generation;
    st.loader_shards = opts.shards;
    st.loaders[rank] = spawn_data_loader(self->system(), std::move(opts));
    self->monitor(st.loaders[rank]);
    self->link_to(st.loaders[rank]);
    if (rank < st.trainers.size() && st.trainers[rank])
      self->send(st.trainers[rank], attach_atom_v, st.loaders[rank], st.loader_generations[rank]);
  }
}

// A fresh secret prefix for one set's keys in the peer's c10d store.
std::string fresh_store_prefix() {
  const auto nonce = random_attach_nonce();
  return "set-" + to_hex(std::span<const uint8_t>(nonce.data(), 16)) + "/";
}

// Tells every attached trainer of the set to join it. One that cannot be told is closed: its
// departure then ends this set (see the leave handler).
void assign_attached(peer_pointer self, uint16_t store_port, const std::string& prefix) {
  auto& st = self->state;
  int rank = trainer_count(st);
  for (const auto& a : st.attached) {
    if (!a.in_set)
      continue;
    attach_assignment assignment;
    assignment.generation = st.set_generation;
    assignment.rank = rank++;
    assignment.ranks = node_rank_count(st);
    assignment.store_port = store_port;
    assignment.store_prefix = prefix;
    assignment.data_seed = st.data_seed;
    assignment.micro_batch_size = st.options.config.data.micro_batch_size;
    assignment.swarm = !st.options.config.network.listen.empty();
    st.attach_door->send(a.id, encode_assignment(assignment));
  }
}

// Starts the whole set of trainers, with every attached trainer: they meet in a fresh
// rendezvous and start from rank 0's newest checkpoint (its state is copied to the others).
void start_trainer(peer_pointer self) {
  auto& st = self->state;
  for (auto& a : st.attached)
    a.in_set = true;
  st.set_generation += 1;
  const auto ranks = static_cast<size_t>(node_rank_count(st));
  const auto own_ranks = static_cast<size_t>(trainer_count(st));
  std::shared_ptr<node_rendezvous> rendezvous;
  if (ranks > own_ranks) {
    const auto prefix = fresh_store_prefix();
    rendezvous = make_node_rendezvous(st.node_store->port(), prefix);
    assign_attached(self, st.node_store->port(), prefix);
  } else if (ranks > 1) {
    rendezvous = make_node_rendezvous();
  }
  st.attach_counts.node_trainers.set(static_cast<double>(ranks));
  // A set of another size cuts the node's batches into other shards: fresh loaders, fetching
  // from the node's position in the data order (rank 0's, which every rank takes), so that no
  // example is skipped or repeated when trainers come or go.
  const bool resharded = st.data_started && st.loader_shards != static_cast<int>(ranks);
  if (resharded) {
    for (auto& loader : st.loaders)
      if (loader)
        self->send_exit(loader, caf::exit_reason::user_shutdown);
    st.loaders.assign(st.loaders.size(), data_loader_actor{});
  }
  st.trainers.assign(own_ranks, trainer_actor{});
  for (size_t rank = 0; rank < own_ranks; ++rank) {
    trainer_options opts;
    opts.config = st.options.config;
    opts.checkpointer = st.checkpointer;
    opts.grid_prompts = st.options.grid_prompts;
    opts.stop_requested = st.options.stop_requested;
    opts.inject_crash = injected_into(st, rank, st.trainer_restarts,
                                      st.options.config.debug.crash_trainer_every_time);
    opts.progress = st.progress;
    opts.averager = st.averager;
    opts.averaging_deadline = st.averaging_deadline;
    opts.noise_seed = st.data_seed;  // the same on every rank (see models/node_training.hpp)
    opts.state_server = st.state_server;
    opts.swarm_id = st.swarm_id;
    opts.rank = static_cast<int>(rank);
    opts.ranks = static_cast<int>(ranks);
    opts.rendezvous = rendezvous;
    st.trainers[rank] = spawn_trainer(self->system(), std::move(opts));
    self->monitor(st.trainers[rank]);
    self->link_to(st.trainers[rank]);
    if (rank < st.loaders.size() && st.loaders[rank])
      self->send(st.trainers[rank], attach_atom_v, st.loaders[rank], st.loader_generations[rank]);
  }
  if (resharded)
    start_data_loader(self);
}

// The rank of a live trainer or loader among `handles`, or -1 (another set's, or not ours).
template <class Handle>
int rank_of(const std::vector<Handle>& handles, const caf::actor_addr& source) {
  for (size_t rank = 0; rank < handles.size(); ++rank)
    if (handles[rank] && handles[rank].address() == source)
      return static_cast<int>(rank);
  return -1;
}

// A trainer failed: the others of its set would wait for it in their next sum (or fail there),
// so the whole set goes, and is restarted from the newest checkpoint.
void end_trainer_set(peer_pointer self) {
  auto& st = self->state;
  for (auto& trainer : st.trainers)
    if (trainer)
      self->send_exit(trainer, caf::exit_reason::user_shutdown);
  st.trainers.assign(st.trainers.size(), trainer_actor{});
}

// The run is over: attached trainers end (exit 0) instead of waiting for another set.
void release_attached(peer_pointer self) {
  auto& st = self->state;
  if (!st.attach_door)
    return;
  for (const auto& a : st.attached) {
    st.attach_door->send(a.id, encode_end());
    st.attach_door->close(a.id);
  }
}

void shut_down_children(peer_pointer self) {
  auto& st = self->state;
  release_attached(self);
  std::vector<caf::actor> children{caf::actor_cast<caf::actor>(st.checkpointer),
                                   caf::actor_cast<caf::actor>(st.membership),
                                   caf::actor_cast<caf::actor>(st.progress),
                                   caf::actor_cast<caf::actor>(st.averager),
                                   caf::actor_cast<caf::actor>(st.state_server)};
  for (const auto& loader : st.loaders)
    children.push_back(caf::actor_cast<caf::actor>(loader));
  for (const auto& trainer : st.trainers)
    children.push_back(caf::actor_cast<caf::actor>(trainer));
  for (const auto& handle : children)
    if (handle)
      self->send_exit(handle, caf::exit_reason::user_shutdown);
}

// A child died abnormally: restart it after its backoff, or give up.
void schedule_restart(peer_pointer self, child_kind kind, const caf::error& reason) {
  auto& st = self->state;
  auto& policy = kind == child_kind::trainer        ? st.trainer_restarts
                 : kind == child_kind::data_loader ? st.loader_restarts
                                                    : st.checkpointer_restarts;
  auto delay = policy.on_failure(restart_policy::clock::now(), self->system().render(reason));
  if (!delay) {
    peer_health::global().set(peer_health::activity::failing,
                              std::string(to_string(kind)) + " keeps failing");
    if (policy.repeated())
      spdlog::critical("{} failed again the same way after a restart; giving up: {}",
                       to_string(kind), self->system().render(reason));
    else
      spdlog::critical("{} failed {} times within its restart window; giving up ({})",
                       to_string(kind), policy.recent_restarts(), self->system().render(reason));
    shut_down_children(self);
    self->quit(reason);
    return;
  }
  st.metrics.restarts.with({to_string(kind)}).inc();
  spdlog::warn("{} failed ({}); restarting in {} ms (restart {} in this window)", to_string(kind),
               self->system().render(reason), delay->count(), policy.recent_restarts());
  self->delayed_send(self, *delay, restart_atom_v, static_cast<uint8_t>(kind));
}

// Failures a restart cannot mend: a file that cannot be written (a full or read-only disk; the
// trainer has retried with backoff already) or a configuration that cannot work.
bool restart_can_help(const caf::error& reason) {
  return reason != errc::io_failure && reason != errc::invalid_config;
}

constexpr auto out_of_memory_restart_delay = std::chrono::milliseconds(500);

// A trainer ran out of memory: its set restarts with half the micro-batch (the same steps in
// less memory, models/model_trainer.hpp). False when one example at a time did not fit.
bool shrink_micro_batch(peer_pointer self) {
  auto& data = self->state.options.config.data;
  const auto smaller = smaller_micro_batch(data.micro_batch_size, data.batch_size);
  if (smaller == 0)
    return false;
  spdlog::warn("a trainer ran out of memory; the trainers restart in {} ms with micro-batches of "
               "{} (data.micro_batch_size was {})",
               out_of_memory_restart_delay.count(), smaller, data.micro_batch_size);
  data.micro_batch_size = smaller;
  return true;
}

std::chrono::milliseconds seconds(double s) {
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000.0));
}

// --- trainers of other processes (run.attach) ----------------------------------------------

constexpr auto attached_restart_delay = std::chrono::milliseconds(200);

const char* step_word(const peer_state& st) {
  return st.options.config.network.listen.empty() ? "step" : "epoch";
}

void count_attached(peer_state& st) {
  st.attach_counts.attached.set(static_cast<double>(st.attached.size()));
}

// Ends the current set and starts the next one soon, from the newest checkpoint.
void restart_set_soon(peer_pointer self) {
  auto& st = self->state;
  st.reforming = false;
  end_trainer_set(self);
  st.metrics.restarts.with({to_string(child_kind::trainer)}).inc();
  self->delayed_send(self, attached_restart_delay, restart_atom_v,
                     static_cast<uint8_t>(child_kind::trainer));
}

// A set with attached trainers failed. The failure may be theirs (a process killed, its device
// gone), so the set restarts at once without them, outside the crash budget: each such restart
// leaves at least one attached trainer out, so there are no more of them than attachments. A
// set of the peer's own trainers alone fails as before. False when none was in the set.
bool restart_without_attached(peer_pointer self, const caf::error& reason) {
  auto& st = self->state;
  std::string pids;
  for (const auto& a : st.attached) {
    if (!a.in_set)
      continue;
    pids += (pids.empty() ? "" : ", ") + std::to_string(a.pid);
    st.attach_door->close(a.id);
  }
  if (pids.empty())
    return false;
  std::erase_if(st.attached, [](const auto& a) { return a.in_set; });
  count_attached(st);
  spdlog::warn("the node's trainers failed ({}); they go on without the attached trainer of pid "
               "{}, from the newest checkpoint",
               self->system().render(reason), pids);
  restart_set_soon(self);
  return true;
}

// Asks rank 0 to checkpoint and stop at the end of its epoch (a lone peer: its step): the set
// then restarts from there with every attached trainer (the one way a set starts, as after a
// failure, so that a set is never changed while it runs).
void reform_set(peer_pointer self) {
  auto& st = self->state;
  if (st.stopping || st.reforming || st.trainers.empty() || !st.trainers.front())
    return;  // a set that is starting or restarting takes every attached trainer anyway
  st.reforming = true;
  self->send(st.trainers.front(), restart_atom_v);
}

// Listens on 127.0.0.1 for `ddactor trainer` and tells it where through the run folder.
void open_attach_door(peer_pointer self) {
  auto& st = self->state;
  const auto run_dir = st.options.config.run_dir();
  std::filesystem::create_directories(run_dir);
  const auto key_file = run_dir / "attach.key";
  attach_listener_options door;
  door.key = load_or_create_attach_key(key_file);
  // Weak: the listener is the peer's own, and must not keep it alive.
  const auto peer = self->address();
  door.on_attached = [peer](uint64_t id, const attach_client_info& client) {
    if (auto handle = caf::actor_cast<peer_actor>(peer))
      caf::anon_send(handle, attach_atom_v, id, client.pid, client.device);
  };
  door.on_gone = [peer](uint64_t id) {
    if (auto handle = caf::actor_cast<peer_actor>(peer))
      caf::anon_send(handle, leave_atom_v, id);
  };
  door.on_refused = [refused = &st.attach_counts.refused](attach_refusal reason,
                                                           const std::string& address) {
    refused->with({to_string(reason)}).inc();
    spdlog::warn("refused a connection to the attach port from {}: {}", address,
                 to_string(reason));
  };
  st.node_store = std::make_unique<node_store_host>();
  st.attach_door = std::make_unique<attach_listener>(std::move(door));
  const auto address = "127.0.0.1:" + std::to_string(st.attach_door->port());
  {
    // Renamed into place: a trainer starting now never reads half an address.
    std::ofstream out(run_dir / "attach.addr.tmp");
    out << address << "\n";
  }
  std::filesystem::rename(run_dir / "attach.addr.tmp", run_dir / "attach.addr");
  spdlog::info("trainers on this machine may attach on {} (`ddactor trainer --config {}`; key "
               "in {})",
               address, st.options.config.source_file.string(), key_file.string());
}

} // namespace

std::string swarm_id_of(const run_config& config) {
  auto swarm_id = config.network.swarm_id.empty() ? config.run.name : config.network.swarm_id;
  // Experts of a DDM never average with each other, nor with the router.
  if (config.ddm.expert >= 0)
    swarm_id += "/expert-" + std::to_string(config.ddm.expert);
  else if (config.run.mode == "router")
    swarm_id += "/router";
  return swarm_id;
}

namespace {

// Spawns membership, progress and averager, and derives this peer's seeds from its identity.
void start_swarm(peer_pointer self) {
  auto& st = self->state;
  auto& cfg = st.options.config;
  const auto& net = cfg.network;
  if (!st.options.identity)
    st.options.identity = load_or_create_identity(cfg.run_dir() / "peer", net.identity_file);
  const auto& identity = *st.options.identity;
  auto swarm_id = swarm_id_of(cfg);
  st.swarm_id = swarm_id;
  // Different batches and noise per peer; the same initial weights (run.seed) everywhere.
  auto peer_hash = std::hash<std::string>{}(identity.peer_id);
  st.data_seed = splitmix64::mix(cfg.run.seed ^ peer_hash);
  spdlog::info("peer {} (incarnation {}) joins swarm '{}'", short_peer_id(identity.peer_id),
               identity.incarnation, swarm_id);
  set_peer_info(global_metrics(), identity.peer_id, swarm_id);
  if (!st.options.status_board)
    st.options.status_board = std::make_shared<swarm_status_board>();

  progress_options progress;
  progress.peer_id = identity.peer_id;
  progress.swarm_id = swarm_id;
  progress.target_batch_size = cfg.train.target_batch_size;
  progress.report_interval = seconds(std::min(0.25, net.gossip_interval / 2));
  progress.stale_after = seconds(net.remove_after);
  progress.repair_splits =
    split_repair_possible(cfg.averaging.state_compression, cfg.averaging.state_every);
  progress.group_size = static_cast<size_t>(cfg.averaging.group_size);
  progress.state_quorum = static_cast<size_t>(cfg.averaging.state_quorum);
  progress.status_board = st.options.status_board;
  progress.key = identity.key;
  progress.require_proof = true;
  progress.impersonate_others =
    cfg.debug.allow_byzantine && cfg.debug.byzantine == "forged_state";
  st.progress = spawn_progress(self->system(), progress);

  averager_options averaging;
  averaging.peer_id = identity.peer_id;
  averaging.swarm_id = swarm_id;
  averaging.key = identity.key;
  averaging.require_proof = true;
  averaging.group_size = static_cast<size_t>(cfg.averaging.group_size);
  averaging.chunk_elements = static_cast<size_t>(cfg.averaging.chunk_elements);
  averaging.matchmaking_time = seconds(cfg.averaging.matchmaking_time);
  averaging.link_rate = cfg.averaging.bandwidth * 1e6 / 8;  // Mbit/s -> bytes/s
  averaging.max_weight_ratio = cfg.averaging.max_weight_ratio;
  parse_aggregation_rule(cfg.averaging.aggregation, averaging.aggregation.rule);
  averaging.aggregation.radius = cfg.averaging.clip_radius;
  averaging.aggregation.iterations = cfg.averaging.clip_iterations;
  averaging.allreduce_timeout = seconds(cfg.averaging.allreduce_timeout);
  averaging.request_timeout = seconds(cfg.averaging.request_timeout);
  averaging.codec = cfg.averaging.compression;
  averaging.codec_settings.zstd_level = cfg.averaging.zstd_level;
  averaging.codec_settings.int8_block_size = cfg.averaging.int8_block_size;
  averaging.codec_settings.topk_fraction = cfg.averaging.topk_fraction;
  averaging.codec_settings.adaptive_exact_below =
    static_cast<size_t>(cfg.averaging.adaptive_exact_below);
  averaging.compressor_threads = static_cast<size_t>(cfg.averaging.compressor_threads);
  averaging.die_in_round = cfg.debug.die_in_round;
  averaging.die_as = cfg.debug.die_as;
  averaging.corrupt_chunks_from = cfg.debug.corrupt_chunks_from;
  if (cfg.debug.allow_byzantine && cfg.debug.byzantine == "scaled_values")
    averaging.scale_chunks = -100;
  averaging.silent_leader = cfg.debug.allow_byzantine && cfg.debug.byzantine == "silent_leader";
  averaging.lie_as_reducer = cfg.debug.allow_byzantine && cfg.debug.byzantine == "lying_reducer";
  averaging.accuse_falsely = cfg.debug.allow_byzantine && cfg.debug.byzantine == "false_accuser";
  averaging.audit_probability = cfg.averaging.audit_probability;
  averaging.ban_time = std::chrono::seconds(static_cast<int64_t>(cfg.network.ban_time));
  // A ban also closes the banned peer's links and refuses its handshakes.
  if (auto gateway = st.options.gateway)
    averaging.on_ban = [gateway](const std::string& peer_id,
                                 std::chrono::steady_clock::time_point until) {
      gateway->ban(peer_id, until);
    };
  averaging.reachable = st.options.reach.reachable;
  averaging.status_board = st.options.status_board;
  averaging.progress = st.progress;
  st.averager = spawn_averager(self->system(), averaging);
  st.averaging_deadline = averaging_deadline(averaging);

  state_server_options serving;
  serving.chunk_bytes = static_cast<uint64_t>(cfg.averaging.state_chunk_bytes);
  // Well inside a downloader's request timeout.
  serving.manifest_wait = std::min(std::chrono::milliseconds(2000),
                                   seconds(cfg.averaging.request_timeout) / 2);
  st.state_server = spawn_state_server(self->system(), serving);

  membership_options members;
  auto [listen_host, listen_port] = split_listen_address(net.listen.front());
  members.listen_host = listen_host;
  members.listen_port = listen_port;
  members.self.info.peer_id = identity.peer_id;
  members.self.info.swarm_id = swarm_id;
  members.self.info.incarnation = identity.incarnation;
  const auto& reach = st.options.reach;
  members.self.info.reachable = reach.reachable;
  members.relay_candidates = reach.relay_candidates;
  auto announced =
    announce_addresses(net.announce, net.listen, reach.observed_hosts, guess_announce_hosts);
  if (announced.addresses.empty()) {
    spdlog::warn("network.listen is a wildcard address, network.announce is not set and this "
                 "machine has several addresses and no default route; other peers will be "
                 "told 127.0.0.1 (set network.announce to the address they dial)");
    announced.addresses = {{"127.0.0.1", 0}};
  } else if (announced.guessed && announced.from == announced_addresses::origin::listened) {
    // Nobody to ask (the swarm's first peer): this machine's own address.
    std::string hosts;
    for (auto& [host, port] : announced.addresses)
      hosts += (hosts.empty() ? "" : ", ") + host;
    spdlog::info("network.announce is not set and no initial peer can tell this peer its "
                 "address: announcing {}, this machine's address toward the internet (set "
                 "network.announce where peers reach it elsewhere, e.g. through a router's "
                 "port forwarding)",
                 hosts);
  }
  std::tie(members.self.info.host, members.self.info.port) = announced.addresses.front();
  members.announce_port_fixed = members.self.info.port != 0;
  members.alternates.assign(announced.addresses.begin() + 1, announced.addresses.end());
  members.self.progress = st.progress;
  members.self.averager = st.averager;
  members.self.state_server = st.state_server;
  members.initial_peers = net.initial_peers;
  members.gossip_interval = seconds(net.gossip_interval);
  members.suspect_after = seconds(net.suspect_after);
  members.remove_after = seconds(net.remove_after);
  members.connect_timeout = seconds(net.connect_timeout);
  members.bootstrap_retry = seconds(net.bootstrap_retry);
  members.status_board = st.options.status_board;
  members.gateway = st.options.gateway;
  members.key = identity.key;
  members.require_proof = true;
  st.membership = spawn_membership(self->system(), members);
  self->monitor(st.membership);
  self->link_to(st.membership);
  self->link_to(st.progress);
  self->link_to(st.averager);
  self->link_to(st.state_server);
  self->send(st.progress, attach_atom_v, epochs_listener{st.averager});
  self->send(st.membership, subscribe_atom_v, view_subscriber{st.progress});
  self->send(st.membership, subscribe_atom_v, view_subscriber{st.averager});
  self->send(st.averager, attach_atom_v, liveness_sink{st.membership});
  self->send(st.membership, subscribe_atom_v, view_subscriber{self});
  self->request(st.membership, seconds(net.connect_timeout) + std::chrono::seconds(5), caf::get_atom_v,
                caf::ok_atom_v)
    .then(
      [=](uint16_t port) {
        spdlog::info("listening for peers on {} (port {})",
                     describe_addresses(self->state.options.config.network.listen), port);
      },
      [=](const caf::error& err) {
        spdlog::critical("cannot listen on {}: {}",
                         describe_addresses(self->state.options.config.network.listen),
                         self->system().render(err));
        shut_down_children(self);
        self->quit(err);
      });
}

peer_actor::behavior_type peer(peer_pointer self, peer_options options) {
  // Children are linked (so they end with the peer, whatever ends it) and monitored (so the
  // peer restarts them); their exit messages are therefore expected and not fatal here.
  self->set_exit_handler([](const caf::exit_msg&) {});
  self->state.options = std::move(options);
  self->state.data_seed = self->state.options.config.run.seed;
  if (!self->state.options.config.network.listen.empty())
    start_swarm(self);
  if (self->state.options.config.run.attach) {
    try {
      open_attach_door(self);
    } catch (const std::exception& e) {
      // A loose key file, or no port on the loopback: nothing a restart mends.
      spdlog::critical("cannot open the door for attaching trainers (run.attach): {}", e.what());
      shut_down_children(self);
      self->quit(make_error(errc::invalid_config, e.what()));
      return peer_actor::behavior_type::make_empty_behavior();
    }
  }
  start_checkpointer(self);
  start_trainer(self);
  const auto& network = self->state.options.config.network;
  if (network.listen.empty() && network.wait_for_peers > 1)
    spdlog::warn("network.wait_for_peers = {} ignored: without network.listen this peer trains "
                 "alone",
                 network.wait_for_peers);
  if (network.wait_for_peers <= 1 || network.listen.empty()) {
    self->state.data_started = true;
    start_data_loader(self);
  } else {
    peer_health::global().set(peer_health::activity::waiting_for_peers);
    spdlog::info("waiting for {} peers before training",
                 self->state.options.config.network.wait_for_peers);
  }
  self->set_down_handler([=](const caf::down_msg& dm) {
    auto& st = self->state;
    if (const int rank = rank_of(st.trainers, dm.source); rank >= 0) {
      st.trainers[static_cast<size_t>(rank)] = nullptr;
      const bool ended_well = !dm.reason || dm.reason == caf::exit_reason::normal;
      // Ranks > 0 end before rank 0, which writes the final checkpoint (or fail in a sum once
      // it has left): rank 0's end is the set's.
      if (rank > 0 && (ended_well || st.stopping || st.reforming))
        return;
      if (ended_well && st.reforming && !st.stopping) {
        // Rank 0 checkpointed for the new set: it starts from there with the attached ones
        // ("trainer ready" names the step or epoch).
        st.reforming = false;
        end_trainer_set(self);
        spdlog::info("the node's trainers restart with {} trainers ({} here, {} attached) from "
                     "the checkpoint trainer 0 wrote",
                     trainer_count(st) + static_cast<int>(st.attached.size()), trainer_count(st),
                     st.attached.size());
        start_trainer(self);
        return;
      }
      st.reforming = false;
      if (ended_well || st.stopping || !restart_can_help(dm.reason)) {
        if (!ended_well && !st.stopping)
          spdlog::critical("trainer failed ({}); a restart would fail the same way",
                           self->system().render(dm.reason));
        shut_down_children(self);
        if (ended_well)
          self->quit();
        else
          self->quit(dm.reason);
        return;
      }
      if (restart_without_attached(self, dm.reason))
        return;
      if (dm.reason == errc::out_of_memory) {
        if (!shrink_micro_batch(self)) {
          spdlog::critical("trainer ran out of memory with one example at a time ({}); a "
                           "restart cannot help",
                           self->system().render(dm.reason));
          shut_down_children(self);
          self->quit(dm.reason);
          return;
        }
        // Not from the crash budget: each restart tries half the memory, so there are at most
        // log2(batch) of them.
        end_trainer_set(self);
        st.metrics.restarts.with({to_string(child_kind::trainer)}).inc();
        self->delayed_send(self, out_of_memory_restart_delay, restart_atom_v,
                           static_cast<uint8_t>(child_kind::trainer));
        return;
      }
      end_trainer_set(self);
      schedule_restart(self, child_kind::trainer, dm.reason);
    } else if (const int loader = rank_of(st.loaders, dm.source); loader >= 0) {
      st.loaders[static_cast<size_t>(loader)] = nullptr;
      if (!st.stopping)
        schedule_restart(self, child_kind::data_loader, dm.reason);
    } else if (st.membership && dm.source == st.membership.address()) {
      if (!st.stopping) {
        spdlog::critical("membership ended ({}); this peer cannot stay in the swarm",
                         self->system().render(dm.reason));
        shut_down_children(self);
        self->quit(dm.reason ? dm.reason : make_error(errc::peer_unreachable, "membership ended"));
      }
    } else if (dm.source == st.checkpointer.address()) {
      st.checkpointer = nullptr;
      if (!st.stopping)
        schedule_restart(self, child_kind::checkpointer, dm.reason);
    }
  });
  return {
    [=](restart_atom, uint8_t kind) {
      if (self->state.stopping)
        return;
      if (static_cast<child_kind>(kind) == child_kind::data_loader && !self->state.data_started)
        return;
      switch (static_cast<child_kind>(kind)) {
        case child_kind::trainer: start_trainer(self); break;
        case child_kind::data_loader: start_data_loader(self); break;
        case child_kind::checkpointer: start_checkpointer(self); break;
      }
      spdlog::info("{} restarted", to_string(static_cast<child_kind>(kind)));
    },
    [=](stop_atom) {
      auto& st = self->state;
      if (st.stopping)
        return;
      st.stopping = true;
      peer_health::global().set(peer_health::activity::stopping);
      if (st.trainers.empty() || !st.trainers.front()) {
        shut_down_children(self);
        self->quit();
        return;
      }
      // Rank 0 checkpoints and quits; its down message then ends the peer (and the other ranks,
      // which wait for it in their next sum).
      self->request(st.trainers.front(), std::chrono::minutes(10), stop_atom_v)
        .then([](int64_t) {},
              [=](const caf::error& err) {
                spdlog::error("trainer did not stop cleanly: {}", self->system().render(err));
                shut_down_children(self);
                self->quit(err);
              });
    },
    [=](view_atom, const std::vector<swarm_member>& view) {
      auto& st = self->state;
      int same_swarm = 0;
      for (const auto& m : view)
        same_swarm += m.info.swarm_id == st.swarm_id ? 1 : 0;
      if (!st.data_started && same_swarm >= st.options.config.network.wait_for_peers) {
        spdlog::info("{} peers in the swarm: training starts", same_swarm);
        st.data_started = true;
        start_data_loader(self);
      }
    },
    [=](attach_atom, uint64_t id, uint32_t pid, const std::string& device) {
      auto& st = self->state;
      if (st.stopping) {
        st.attach_door->close(id);
        return;
      }
      st.attached.push_back({id, pid, device, false});
      count_attached(st);
      spdlog::info("trainer attached from pid {} ({}): the node takes it in at its next {}", pid,
                   device, step_word(st));
      reform_set(self);
    },
    [=](leave_atom, uint64_t id) {
      auto& st = self->state;
      auto gone = std::find_if(st.attached.begin(), st.attached.end(),
                               [id](const auto& a) { return a.id == id; });
      if (gone == st.attached.end())
        return;  // left out already
      const bool in_set = gone->in_set;
      spdlog::warn("the attached trainer of pid {} is gone{}", gone->pid,
                   in_set && !st.stopping ? "; the node goes on without it" : "");
      st.attached.erase(gone);
      count_attached(st);
      // Its set cannot go on (the others would wait for it in their next sum).
      if (in_set && !st.stopping && !st.trainers.empty() && st.trainers.front())
        restart_set_soon(self);
    },
    [=](status_atom) {
      auto& st = self->state;
      return supervision_report{st.trainer_restarts.total_restarts(),
                                st.loader_restarts.total_restarts(),
                                st.checkpointer_restarts.total_restarts()};
    },
  };
}

} // namespace

peer_actor spawn_peer(caf::actor_system& system, peer_options options) {
  return system.spawn(peer, std::move(options));
}

} // namespace ddactor
