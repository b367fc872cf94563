// `ddactor trainer`: one more trainer for a running peer on this machine (run.attach), in a
// process of its own; see commands.hpp.
//
// It attaches over the peer's loopback door (runtime/attach_client.hpp) and then does what the
// peer says, one set of the node's trainers at a time:
//
//   attached --(assignment: rank r of n, store, seeds)--> a trainer actor and its data loader
//     join the set (they take rank 0's state and train their shard of the node's batches)
//   the set ends (re-formed, failed, or rank 0 stopped it) --> waits for the next assignment
//   end from the peer (its run is over) --> exit 0
//   the connection closes without an end (the peer died, or left this trainer out) --> exit 1
//   Ctrl-C --> exit (the peer's set fails and restarts without this trainer)
#include "app/commands.hpp"

#include <spdlog/spdlog.h>

#include <unistd.h>

#include <fstream>
#include <memory>
#include <thread>

#include "actors/data_loader.hpp"
#include "actors/trainer.hpp"
#include "app/sd_commands.hpp"
#include "app/stop_signal.hpp"
#include "app/torch_setup.hpp"
#include "runtime/actor_system_setup.hpp"
#include "runtime/actor_system_shutdown.hpp"
#include "runtime/attach_client.hpp"
#include "runtime/message_types.hpp"
#include "runtime/peer_address.hpp"
#include "runtime/run_data.hpp"
#include "runtime/secure/attach_key_file.hpp"

namespace ddactor {

namespace {

// How long connecting and the handshake may take (the peer answers at once when it runs).
constexpr std::chrono::seconds attach_timeout{10};

// The peer's attach address: --peer, else what the peer wrote to its run folder.
std::pair<std::string, uint16_t> peer_attach_address(const run_config& config,
                                                     const std::string& given) {
  auto text = given;
  if (text.empty()) {
    const auto file = config.run_dir() / "attach.addr";
    std::ifstream in(file);
    if (!in || !std::getline(in, text))
      throw attach_error("no attach address in " + file.string() +
                         ": is the peer of this run running, with run.attach = true? (or give "
                         "--peer 127.0.0.1:PORT)");
  }
  auto address = parse_peer_address(text);
  if (!address)
    throw attach_error("not a HOST:PORT address: " + text);
  return *address;
}

// One set's trainer and data loader, as the peer's own rank `assignment.rank` would have them.
struct set_member {
  trainer_actor trainer;
  data_loader_actor loader;
};

set_member join_set(caf::actor_system& system, run_config config,
                    const attach_assignment& assignment, const run_data& data,
                    const std::shared_ptr<const sd_example_set>& latent_examples) {
  config.data.micro_batch_size = assignment.micro_batch_size;  // the peer may have halved it
  data_loader_options loading;
  loading.data = data.train;
  loading.sd_data = latent_examples;
  loading.batch_size = config.data.batch_size;
  loading.seed = assignment.data_seed;
  loading.generation = assignment.generation;
  loading.shard = assignment.rank;
  loading.shards = assignment.ranks;
  trainer_options training;
  training.config = std::move(config);
  training.noise_seed = assignment.data_seed;  // as the peer's own ranks
  training.rank = assignment.rank;
  training.ranks = assignment.ranks;
  training.rendezvous = make_node_rendezvous(assignment.store_port, assignment.store_prefix);
  training.follows_swarm = assignment.swarm;
  set_member member;
  member.loader = spawn_data_loader(system, std::move(loading));
  member.trainer = spawn_trainer(system, std::move(training));
  caf::anon_send(member.trainer, attach_atom_v, member.loader, assignment.generation);
  return member;
}

void end_member(caf::scoped_actor& self, set_member& member) {
  for (const auto& handle : {caf::actor_cast<caf::actor>(member.trainer),
                             caf::actor_cast<caf::actor>(member.loader)})
    if (handle)
      self->send_exit(handle, caf::exit_reason::user_shutdown);
  member = {};
}

} // namespace

int trainer_command(const run_config& given, const trainer_request& request) {
  run_config config = given;
  config.run.device = request.device.empty() ? given.run.device : request.device;
  // On any device this build can use; its sums with the peer's trainers go through the host
  // (Gloo), as the set mixes processes (models/node_reducer.hpp).
  check_device(config.run.device);
  const auto key = read_attach_key(config.run_dir() / "attach.key");
  const auto [host, port] = peer_attach_address(config, request.peer);
  const int threads = configure_torch_threads(config.run.threads);
  attach_connection connection(host, port, key,
                               {static_cast<uint32_t>(::getpid()), config.run.device},
                               attach_timeout);
  spdlog::info("attached to the peer of run '{}' at {}:{} as pid {} ({}, {} LibTorch threads); "
               "it takes this trainer in at its next step",
               config.run.name, host, port, ::getpid(), config.run.device, threads);
  run_data data;
  std::shared_ptr<const sd_example_set> latent_examples;
  if (config.model.pretrained.empty())
    data = load_run_data(config);
  else
    latent_examples = apply_ddm_split(config, load_latent_examples(config));

  ddactor_system_config system_config({}, /*with_network=*/false);
  caf::actor_system system{system_config};
  detached_actor_guard guard{system, std::chrono::seconds(30), shutdown_failure_exit_code};
  caf::scoped_actor self{system};
  install_stop_handler();
  // The peer's messages, read on a thread of their own and handed to this loop.
  const auto inbox = caf::actor_cast<caf::actor>(self);
  std::thread reader([&connection, inbox] {
    while (auto payload = connection.next()) {
      if (is_end(*payload)) {
        caf::anon_send(inbox, done_atom_v);
        return;
      }
      if (auto a = decode_assignment(*payload))
        caf::anon_send(inbox, join_atom_v, a->generation, a->rank, a->ranks, a->store_port,
                       a->store_prefix, a->data_seed, a->micro_batch_size, a->swarm);
    }
    caf::anon_send(inbox, leave_atom_v);
  });
  set_member member;
  int exit_code = -1;
  while (exit_code < 0) {
    self->receive(
      [&](join_atom, uint64_t generation, int32_t rank, int32_t ranks, uint16_t store_port,
          const std::string& prefix, uint64_t data_seed, int32_t micro_batch_size, bool swarm) {
        end_member(self, member);
        spdlog::info("joins the node's trainers as trainer {} of {}", rank, ranks);
        member = join_set(system, config,
                          {generation, rank, ranks, store_port, prefix, data_seed,
                           micro_batch_size, swarm},
                          data, latent_examples);
        self->monitor(member.trainer);
      },
      [&](const caf::down_msg& dm) {
        if (member.trainer && dm.source == member.trainer.address()) {
          spdlog::info("this trainer's set ended ({}); waiting for the peer",
                       system.render(dm.reason));
          end_member(self, member);
        }
      },
      [&](done_atom) {
        spdlog::info("the peer's run is over");
        exit_code = 0;
      },
      [&](leave_atom) {
        spdlog::error("the peer closed the connection: it stopped, or left this trainer out "
                      "after its set failed");
        exit_code = 1;
      },
      caf::after(std::chrono::milliseconds(200)) >>
        [&] {
          if (stop_requested()) {
            spdlog::warn("{} received: this trainer leaves the node", stop_signal_name());
            exit_code = 0;
          }
        });
  }
  end_member(self, member);
  connection.close();
  reader.join();
  return exit_code;
}

} // namespace ddactor
