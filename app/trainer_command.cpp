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
//   the connection closes without an end (the peer left this trainer out after its set failed,
//     or died) --> attaches again with backoff (after an out of memory with half the
//     micro-batch); exit 1 once the attempts run out
//   Ctrl-C --> exit 0 (the peer's set fails and restarts without this trainer)
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
#include "models/out_of_memory.hpp"
#include "runtime/actor_system_setup.hpp"
#include "runtime/actor_system_shutdown.hpp"
#include "runtime/attach_client.hpp"
#include "runtime/message_types.hpp"
#include "runtime/errors.hpp"
#include "runtime/peer_address.hpp"
#include "runtime/restart_policy.hpp"
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

// What ended one attachment to the peer.
enum class attachment_end { run_over, stopped, left_out };

struct attachment_result {
  attachment_end end = attachment_end::left_out;
  bool out_of_memory = false;  // this trainer's set ended with its step out of memory
  int32_t micro_batch_size = 0;  // what this trainer's last set ran at a time (0: whole batches)
};

// One attachment: joins the sets the peer assigns until the peer ends the run, this process is
// stopped, or the connection closes (the peer left this trainer out, or is gone).
attachment_result attached(caf::actor_system& system, caf::scoped_actor& self,
                           attach_connection& connection, const run_config& config,
                           const run_data& data,
                           const std::shared_ptr<const sd_example_set>& latent_examples,
                           int32_t micro_batch_cap) {
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
  attachment_result result;
  bool ended = false;
  while (!ended) {
    self->receive(
      [&](join_atom, uint64_t generation, int32_t rank, int32_t ranks, uint16_t store_port,
          const std::string& prefix, uint64_t data_seed, int32_t micro_batch_size, bool swarm) {
        end_member(self, member);
        // After an out of memory this trainer takes fewer examples at a time than the set:
        // micro-batches change its memory, not its gradient (models/model_trainer.hpp).
        if (micro_batch_cap > 0 && (micro_batch_size == 0 || micro_batch_size > micro_batch_cap))
          micro_batch_size = micro_batch_cap;
        result.micro_batch_size = micro_batch_size;
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
          result.out_of_memory = dm.reason == errc::out_of_memory;
          end_member(self, member);
        }
      },
      [&](done_atom) {
        spdlog::info("the peer's run is over");
        result.end = attachment_end::run_over;
        ended = true;
      },
      [&](leave_atom) {
        result.end = attachment_end::left_out;
        ended = true;
      },
      caf::after(std::chrono::milliseconds(200)) >>
        [&] {
          if (stop_requested()) {
            spdlog::warn("{} received: this trainer leaves the node", stop_signal_name());
            result.end = attachment_end::stopped;
            ended = true;
          }
        });
  }
  end_member(self, member);
  connection.close();
  reader.join();
  return result;
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
  const attach_client_info hello{static_cast<uint32_t>(::getpid()), config.run.device};
  // The first attachment's failure is the user's to fix (no peer, a wrong key): it throws.
  auto connection = std::make_unique<attach_connection>(host, port, key, hello, attach_timeout);
  spdlog::info("attached to the peer of run '{}' at {}:{} as pid {} ({}, {} LibTorch threads); "
               "it takes this trainer in at its next step",
               config.run.name, host, port, ::getpid(), config.run.device, threads);
  const auto examples = load_training_examples(config);
  const auto& data = examples.data;
  const auto& latent_examples = examples.latent;

  ddactor_system_config system_config({}, /*with_network=*/false);
  caf::actor_system system{system_config};
  detached_actor_guard guard{system, std::chrono::seconds(30), shutdown_failure_exit_code};
  caf::scoped_actor self{system};
  install_stop_handler();
  // Attaching again after being left out: 1 s, 2 s, 4 s ... 30 s apart, at most 6 times in 10
  // minutes (restart_policy: a trainer that fails at once each time is given up on).
  restart_policy reattach({std::chrono::seconds(1), std::chrono::seconds(30), 6,
                           std::chrono::minutes(10)});
  int32_t micro_batch_cap = 0;
  while (true) {
    const auto result =
      attached(system, self, *connection, config, data, latent_examples, micro_batch_cap);
    connection.reset();
    if (result.end != attachment_end::left_out)
      return 0;
    if (result.out_of_memory) {
      const auto smaller = smaller_micro_batch(result.micro_batch_size, config.data.batch_size);
      if (smaller == 0) {
        spdlog::error("one example at a time does not fit this trainer's device either");
        return 1;
      }
      micro_batch_cap = static_cast<int32_t>(smaller);
      spdlog::warn("this trainer ran out of memory: it attaches again with micro-batches of {}",
                   micro_batch_cap);
    }
    // Left out (its set failed) or the peer is gone: attach again, later each time, until the
    // peer answers or the attempts run out.
    while (!connection) {
      const auto wait = reattach.on_failure(restart_policy::clock::now());
      if (!wait) {
        spdlog::error("the peer left this trainer out {} times in 10 minutes, or is gone; "
                      "giving up",
                      reattach.recent_restarts());
        return 1;
      }
      spdlog::warn("the peer closed the connection (it left this trainer out after its set "
                   "failed, or stopped); attaching again in {} s",
                   std::chrono::duration_cast<std::chrono::seconds>(*wait).count());
      for (auto waited = std::chrono::milliseconds(0); waited < *wait;
           waited += std::chrono::milliseconds(200)) {
        if (stop_requested())
          return 0;  // Ctrl-C while waiting
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
      try {
        connection = std::make_unique<attach_connection>(host, port, key, hello, attach_timeout);
        spdlog::info("attached again to the peer at {}:{}", host, port);
      } catch (const attach_error& e) {
        spdlog::warn("attaching again failed: {}", e.what());
      }
    }
  }
}

} // namespace ddactor
