// `ddactor train`: one peer, its actors, and clean shutdown on Ctrl-C; see commands.hpp.
#include "app/commands.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <fstream>
#include <set>
#include <thread>

#include "actors/peer.hpp"
#include "app/sd_commands.hpp"
#include "app/stop_signal.hpp"
#include "app/torch_setup.hpp"
#include "config/config_loader.hpp"
#include "models/device_memory_metrics.hpp"
#include "monitoring/ddactor_metrics.hpp"
#include "monitoring/metrics_http_server.hpp"
#include "monitoring/metrics_registry.hpp"
#include "monitoring/peer_health.hpp"
#include "monitoring/status_page.hpp"
#include "monitoring/swarm_status.hpp"
#include "runtime/actor_system_setup.hpp"
#include "runtime/actor_system_shutdown.hpp"
#include "runtime/checkpoint_files.hpp"
#include "runtime/message_types.hpp"
#include "runtime/peer_address.hpp"
#include "runtime/run_data.hpp"
#include "runtime/secure/link_gateway.hpp"
#include "runtime/secure/reachability.hpp"
#include "runtime/secure/swarm_admission.hpp"
#include "runtime/tls_server_context.hpp"

namespace ddactor {

namespace {

// Up to 8 distinct captions, for the sample grid of a caption-conditioned model.
std::vector<std::string> pick_grid_prompts(const std::vector<std::string>& captions) {
  std::vector<std::string> prompts;
  std::set<std::string> seen;
  for (const auto& caption : captions) {
    if (caption.empty() || !seen.insert(caption).second)
      continue;
    prompts.push_back(caption);
    if (prompts.size() == 8)
      break;
  }
  return prompts;
}

// Forwards the first stop signal (app/stop_signal) to the peer, which checkpoints and stops; a
// second signal aborts at once.
class signal_watcher {
 public:
  explicit signal_watcher(peer_actor peer) : peer_(std::move(peer)) {
    install_stop_handler();
    thread_ = std::thread([this] { run(); });
  }
  ~signal_watcher() {
    done_ = true;
    thread_.join();
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
  }

 private:
  void run() {
    while (!done_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (stop_requested() && !forwarded_) {
        forwarded_ = true;
        spdlog::warn("{} received: stopping after a checkpoint (send it again to abort)",
                     stop_signal_name());
        caf::anon_send(peer_, stop_atom_v);
      }
    }
  }

  peer_actor peer_;
  std::atomic<bool> done_{false};
  bool forwarded_ = false;
  std::thread thread_;
};

// Unix time of the newest checkpoint of a resumed run, else now: where checkpoint age starts.
double checkpoint_age_baseline(const std::filesystem::path& run_dir) {
  std::error_code ec;
  auto files = list_checkpoints(run_dir);
  if (!files.empty()) {
    auto written = std::filesystem::last_write_time(files.back().path, ec);
    if (!ec)
      return std::chrono::duration<double>(
               std::chrono::file_clock::to_sys(written).time_since_epoch())
        .count();
  }
  return unix_time_seconds();
}

// The gateway on network.listen, admitting whom the run's swarm key and allowlist say.
std::shared_ptr<link_gateway> open_link_gateway(const run_config& config,
                                                const peer_identity& identity) {
  const auto& net = config.network;
  auto policy = admission_of_run(net, std::getenv("DDACTOR_SWARM_KEY"));
  link_gateway_options options;
  options.listen_hosts.clear();
  for (auto& address : net.listen) {
    auto [host, port] = split_listen_address(address);
    options.listen_hosts.push_back(host);
    options.listen_port = port;  // one port for all (checked by the config)
  }
  options.handshake_timeout =
    std::chrono::milliseconds(static_cast<int64_t>(net.handshake_timeout * 1000));
  options.tunnel_timeout =
    std::chrono::milliseconds(static_cast<int64_t>(net.connect_timeout * 1000));
  // A link starved by others on a home upload can deliver nothing for seconds: it is dropped no
  // sooner than membership would remove its peer.
  options.idle_timeout = std::chrono::milliseconds(
    static_cast<int64_t>(std::max(net.connection_timeout, net.remove_after) * 1000));
  options.max_handshakes_per_address = static_cast<size_t>(net.max_handshakes_per_address);
  // This run's own chunks may be set larger than the usual bound.
  const uint64_t headroom = uint64_t{1} << 20;
  options.max_message_bytes = std::max<uint64_t>(
    {peer_message_limit, static_cast<uint64_t>(config.averaging.state_chunk_bytes) + headroom,
     static_cast<uint64_t>(config.averaging.chunk_elements) * sizeof(float) + headroom});
  auto gateway = std::make_shared<link_gateway>(identity.key, std::move(policy), options);
  spdlog::info("links to peers are sealed: mutual handshake ({}), ChaCha20-Poly1305",
               !net.allowlist.empty() ? "swarm key or id, and an allowlist of " +
                                          std::to_string(net.allowlist.size()) + " keys"
               : net.open ? "open swarm: anyone may join"
                          : "swarm key");
  return gateway;
}

// network.reachable, and (through the gateway) the address the initial peers see this one at.
reachability find_reachability(const run_config& config, link_gateway* gateway) {
  const auto& net = config.network;
  reachability reach;
  reach.reachable = net.reachable != "no";
  if (net.listen.empty() || net.initial_peers.empty()) {
    if (!reach.reachable && !net.listen.empty())
      spdlog::warn("network.reachable = \"no\" without initial peers: nobody can join this "
                   "peer's swarm");
    return reach;
  }
  if (!gateway) {
    if (!reach.reachable)
      spdlog::warn("network.reachable = \"no\" with network.encryption = false: this peer "
                   "dials out, but other unreachable peers cannot reach it (relays need the "
                   "gateway)");
    return reach;
  }
  if (!net.announce.empty() && net.reachable != "auto")
    return reach;
  spdlog::info("asking the initial peers where they see this peer, and whether they can "
               "connect back");
  reach = discover_reachability(
    *gateway, net.initial_peers, net.reachable,
    std::chrono::milliseconds(static_cast<int64_t>(net.connect_timeout * 1000)));
  spdlog::info("reachability: {}: {}", reach.summary,
               reach.reachable ? "reachable" : "not reachable (dialing out, through relays)");
  return reach;
}

} // namespace

int train_command(const run_config& config) {
  auto run_dir = config.run_dir();
  std::filesystem::create_directories(run_dir);
  {
    std::ofstream out(run_dir / "config.toml");
    out << "# The effective configuration of this run, as ddactor read it.\n"
        << describe_config(config);
  }
  // Every family exists (with zeros) before the first scrape, so dashboards have data at once.
  register_ddactor_metrics(global_metrics());
  global_metrics().set_enabled(config.monitoring.enabled);
  auto checkpoint_age = register_checkpoint_age(global_metrics(), checkpoint_age_baseline(run_dir));
  auto activity = register_peer_activity(global_metrics(), peer_health::global());
  auto device_memory = register_device_memory_metrics(global_metrics(), config.run.device);
  for (const auto& device : config.run.devices)
    for (auto& gauge : register_device_memory_metrics(global_metrics(), device))
      device_memory.push_back(std::move(gauge));
  // The swarm as this peer sees it: written by its actors, read by the status page and by
  // `ddactor status` (through membership). Declared before the server that reads it.
  auto status_board = std::make_shared<swarm_status_board>(
    [] { return to_string(peer_health::global().current()); });
  std::unique_ptr<metrics_http_server> metrics_server;
  if (!config.monitoring.listen.empty()) {
    metrics_server = std::make_unique<metrics_http_server>(
      global_metrics(), [] { return peer_health::global().report(); });
    add_status_pages(*metrics_server, *status_board);
    auto tls = endpoint_tls(config.monitoring.tls_certificate_file,
                            config.monitoring.tls_key_file);
    metrics_server->start(parse_listen_address(config.monitoring.listen), tls);
    spdlog::info("metrics on {}://{}:{}/metrics (health: /healthz, swarm status: /){}",
                 tls ? "https" : "http", parse_listen_address(config.monitoring.listen).host,
                 metrics_server->port(), tls ? " with the certificate of " + tls->subject() : "");
  }
  int threads = configure_torch_threads(config.run.threads, config.run.trainers);
  const auto& data_cfg = config.data;
  const bool micro_batches =
    data_cfg.micro_batch_size > 0 && data_cfg.micro_batch_size < data_cfg.batch_size;
  spdlog::info("ddactor run '{}' in {} ({}{})", config.run.name, run_dir.string(),
               config.run.trainers == 1
                 ? fmt::format("{} LibTorch threads", threads)
                 : fmt::format("{} trainers x {} LibTorch threads", config.run.trainers, threads),
               micro_batches ? fmt::format("; batches of {} in micro-batches of {}",
                                           data_cfg.batch_size, data_cfg.micro_batch_size)
                             : std::string());
  const auto examples = load_training_examples(config);
  const auto& data = examples.data;
  const auto& latent_examples = examples.latent;

  // Swarm mode: the identity, and the gateway that holds the public port (bound here, so a port
  // in use or a missing swarm key is a clear error before anything starts).
  std::optional<peer_identity> identity;
  std::shared_ptr<link_gateway> gateway;
  if (!config.network.listen.empty()) {
    identity = load_or_create_identity(run_dir / "peer", config.network.identity_file);
    spdlog::info("peer {} (public key {})", identity->peer_id,
                 to_hex(identity->key.public_part()));
    if (config.network.encryption)
      gateway = open_link_gateway(config, *identity);
    else
      spdlog::warn("network.encryption = false: links to peers are neither authenticated nor "
                   "encrypted, and anyone who can reach {} can join (trusted networks only)",
                   describe_addresses(config.network.listen));
  }

  network_timing timing;
  timing.heartbeat_interval =
    std::chrono::milliseconds(static_cast<int64_t>(config.network.heartbeat_interval * 1000));
  timing.connection_timeout =
    std::chrono::milliseconds(static_cast<int64_t>(config.network.connection_timeout * 1000));
  // The gateway times links out by their bytes (link_gateway_options::idle_timeout).
  if (gateway)
    timing.connection_timeout = std::max(timing.connection_timeout, caf_timeout_behind_gateway);
  ddactor_system_config system_config(timing, /*with_network=*/!config.network.listen.empty());
  caf::actor_system system{system_config};
  // Declared after the system, so it ends first: a bounded wait for the detached actors.
  detached_actor_guard guard{system, std::chrono::seconds(30), shutdown_failure_exit_code};
  peer_options options;
  options.config = config;
  options.train_data = data.train;
  options.sd_data = latent_examples;
  options.grid_prompts =
    pick_grid_prompts(latent_examples ? latent_examples->captions() : data.train->captions);
  options.stop_requested = stop_requested;
  options.status_board = status_board;
  options.identity = identity;
  options.gateway = gateway;
  options.reach = find_reachability(config, gateway.get());
  auto peer = spawn_peer(system, std::move(options));
  int exit_code = 0;
  {
    signal_watcher watcher(peer);
    caf::scoped_actor self{system};
    self->monitor(peer);
    self->receive([&](const caf::down_msg& dm) {
      if (dm.reason && dm.reason != caf::exit_reason::normal) {
        spdlog::error("peer ended with an error: {}", system.render(dm.reason));
        exit_code = 1;
      }
    });
  }
  peer_health::global().set(exit_code == 0 ? peer_health::activity::finished
                                           : peer_health::activity::failing);
  if (exit_code == 0)
    spdlog::info("done; checkpoints in {}", (run_dir / "checkpoints").string());
  return exit_code;
}

} // namespace ddactor
