// `ddactor status --peer HOST:PORT`: asks a running peer how it sees its swarm and prints it as
// text tables (or its JSON); see commands.hpp.
//
// The peer's membership actor is published on HOST:PORT (network.listen); this command connects
// to it like a joining peer would, but only asks `(status_atom)`, whose answer is plain JSON
// text (monitoring/swarm_status.hpp), checks it, and prints it. Every wait is bounded by
// --timeout: CAF 0.17's remote_actor has none, so the connection goes through the middleman
// actor with a request timeout.
#include "app/commands.hpp"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "caf/io/middleman.hpp"
#include "runtime/peer_identity.hpp"
#include "runtime/secure/link_gateway.hpp"
#include "runtime/swarm_messages.hpp"
#include "runtime/secure/swarm_admission.hpp"

#include "actors/membership.hpp"
#include "monitoring/swarm_status.hpp"
#include "runtime/actor_system_setup.hpp"
#include "runtime/actor_system_shutdown.hpp"
#include "runtime/message_types.hpp"

namespace ddactor {

namespace {

using clock_type = std::chrono::steady_clock;

std::string seconds_text(std::chrono::milliseconds wait) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g s", static_cast<double>(wait.count()) / 1000.0);
  return buffer;
}

// A request's own deadline, or the middleman's for the handshake.
bool timed_out(const caf::error& err) {
  return err == caf::sec::request_timeout || err == caf::sec::connection_timeout;
}

// One line for a user: what went wrong in terms of the command, not of CAF.
std::string describe_failure(caf::actor_system& system, const caf::error& err,
                             std::chrono::milliseconds wait, bool asking_status) {
  if (timed_out(err))
    return asking_status ? "no status answer within " + seconds_text(wait)
                         : "no connection within " + seconds_text(wait) +
                             " (is a ddactor peer listening there?)";
  if (err == caf::sec::cannot_connect_to_node)
    return "cannot connect (nothing listens there, or the host cannot be reached): " +
           system.render(err);
  if (err == caf::sec::malformed_basp_message || err == caf::sec::unexpected_message)
    return "what answers there is not a ddactor peer's network.listen address: " +
           system.render(err);
  return system.render(err);
}

} // namespace

int status_command(const status_request& request) {
  auto address = parse_peer_address(request.peer);
  if (!address) {
    std::cerr << "ddactor status: '" << request.peer
              << "' is not HOST:PORT (a peer's network.listen or network.announce address; "
                 "[v6]:port for IPv6)\n";
    return 2;
  }
  const auto& [host, port] = *address;
  const auto deadline = clock_type::now() + request.timeout;

  ddactor_system_config config;
  caf::actor_system system{config};
  // Declared after the system, so it ends first: a bounded wait for the detached actors.
  detached_actor_guard guard{system, std::chrono::seconds(10), shutdown_failure_exit_code};

  // Peers accept links through their gateway only: this command dials through one of its own.
  std::unique_ptr<link_gateway> gateway;
  auto link_state = link_gateway::tunnel::ready;
  std::string link_failure;
  std::string dial_host = host;
  uint16_t dial_port = port;
  if (!request.plain) {
    auto key = request.identity_file.empty() ? peer_key::generate()
                                             : load_or_create_peer_key(request.identity_file);
    auto policy = admission_policy::of_swarm(
      swarm_key_from(request.swarm_key_file, std::getenv("DDACTOR_SWARM_KEY")));
    link_gateway_options options;
    // A little past the command's own deadline: that one ends the wait with its clear line.
    options.handshake_timeout = request.timeout + std::chrono::seconds(1);
    options.tunnel_timeout = request.timeout + std::chrono::seconds(1);
    options.max_message_bytes = peer_message_limit;
    gateway = std::make_unique<link_gateway>(std::move(key), std::move(policy), options);
    std::string error;
    auto tunnel = gateway->open_tunnel(host, port, error);
    if (!tunnel) {
      std::cerr << "ddactor status: " << error << "\n";
      return 1;
    }
    // CAF connects once the link is up (link_gateway::tunnel_state).
    while (gateway->tunnel_state(*tunnel, error) == link_gateway::tunnel::dialing &&
           clock_type::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    link_state = gateway->tunnel_state(*tunnel, link_failure);
    dial_host = "127.0.0.1";
    dial_port = *tunnel;
  }

  std::string failure;
  std::string document;
  bool connect_timed_out = false;
  if (link_state == link_gateway::tunnel::dialing) {
    connect_timed_out = true;
    failure = "no connection within " + seconds_text(request.timeout) +
              " (is a ddactor peer listening there?)";
  } else if (link_state == link_gateway::tunnel::failed) {
    failure = link_failure;  // made precise from the gateway's counts below
  }
  if (failure.empty()) {
    caf::scoped_actor self{system};
    membership_remote membership;
    self
      ->request(system.middleman().actor_handle(), request.timeout, caf::connect_atom::value,
                dial_host, dial_port)
      .receive(
        [&](const caf::node_id&, caf::strong_actor_ptr& published, const std::set<std::string>&) {
          if (published)
            membership = caf::actor_cast<membership_remote>(published);
          else
            failure = "no actor is published there";
        },
        [&](const caf::error& err) {
          connect_timed_out = timed_out(err);
          failure = describe_failure(system, err, request.timeout, false);
        });
    if (membership) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                       clock_type::now());
      self->request(membership, std::max(left, std::chrono::milliseconds(1)), status_atom_v)
        .receive([&](std::string& text) { document = std::move(text); },
                 [&](const caf::error& err) {
                   failure = describe_failure(system, err, request.timeout, true);
                 });
    }
  }
  if (failure.empty()) {
    try {
      auto status = parse_swarm_status_json(document);
      if (request.json)
        std::cout << nlohmann::json::parse(document).dump(
                       2, ' ', false, nlohmann::json::error_handler_t::replace)
                  << "\n";
      else
        std::cout << render_swarm_status_text(status);
      std::cout.flush();
    } catch (const std::exception& error) {
      failure = error.what();
    }
  }
  if (failure.empty())
    return 0;
  if (gateway) {
    // CAF only saw its loopback tunnel close; the gateway knows what happened on the network.
    auto seen = gateway->snapshot();
    if (!seen.last_connect_failure.empty())
      failure = "cannot connect (nothing listens there, or the host cannot be reached): " +
                seen.last_connect_failure;
    else if (seen.handshakes_failed > 0)
      failure += " (the peer refused the handshake: a wrong or missing swarm key, or a key not "
                 "on its allowlist; see --swarm-key-file)";
  }
  std::cerr << "ddactor status: cannot get the status of " << request.peer << ": " << failure
            << "\n";
  if (connect_timed_out) {
    // The middleman may still be inside a blocking connect to an address that never answers
    // (seen for minutes on a firewalled one), and the actor system's destructor would wait for
    // it: the answer is given, so end here.
    std::cerr.flush();
    std::_Exit(1);
  }
  return 1;
}

} // namespace ddactor
