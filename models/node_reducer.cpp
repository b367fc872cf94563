// The collective of one node's trainers over c10d's ProcessGroupGloo; see node_reducer.hpp.
#include "models/node_reducer.hpp"

#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef DDACTOR_WITH_CUDA
// A CUDA LibTorch is built with NCCL; its header declares the group only where this says so.
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <functional>
#include <string>
#include <vector>

namespace ddactor {

namespace {

// How long a rank waits for the store to answer (connecting, and each get or wait).
constexpr std::chrono::seconds store_timeout{60};

// LibTorch 2.4 and later default to a libuv TCPStore, which Debian 13's LibTorch 2.6 is built
// without ("use_libuv was requested but PyTorch was build without libuv support"); the classic
// one serves a node's few ranks as well. LibTorch 1.13 has neither the option nor libuv.
template <class Options>
auto without_libuv(Options& options, int) -> decltype(options.useLibUV = false, void()) {
  options.useLibUV = false;
}
template <class Options>
void without_libuv(Options&, long) {}

c10d::TCPStoreOptions store_options(uint16_t port, bool server) {
  c10d::TCPStoreOptions options;
  options.port = port;
  options.isServer = server;
  options.waitWorkers = false;
  options.timeout = store_timeout;
  without_libuv(options, 0);
  return options;
}

} // namespace

class node_rendezvous {
 public:
  /// The store one rank joins through: the shared in-process one, or a connection of its own.
  std::function<c10::intrusive_ptr<c10d::Store>()> open;
};

std::shared_ptr<node_rendezvous> make_node_rendezvous() {
  auto rendezvous = std::make_shared<node_rendezvous>();
  c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::HashStore>();
  rendezvous->open = [store] { return store; };
  return rendezvous;
}

std::shared_ptr<node_rendezvous> make_node_rendezvous(uint16_t port, const std::string& prefix) {
  auto rendezvous = std::make_shared<node_rendezvous>();
  rendezvous->open = [port, prefix]() -> c10::intrusive_ptr<c10d::Store> {
    auto store =
      c10::make_intrusive<c10d::TCPStore>("127.0.0.1", store_options(port, /*server=*/false));
    return c10::make_intrusive<c10d::PrefixStore>(prefix, store);
  };
  return rendezvous;
}

struct node_store_host::server {
  c10::intrusive_ptr<c10d::TCPStore> store;
};

node_store_host::node_store_host() : server_(std::make_unique<server>()) {
  // Port 0: a free port, told to the trainers with their assignment.
  server_->store =
    c10::make_intrusive<c10d::TCPStore>("127.0.0.1", store_options(0, /*server=*/true));
}

node_store_host::~node_store_host() = default;

uint16_t node_store_host::port() const {
  return server_->store->getPort();
}

struct node_reducer::group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#ifdef DDACTOR_WITH_CUDA
  // For CUDA tensors, made at the first one (every rank makes the same calls, so all at once).
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
};

namespace {

// Gloo and c10d report a late or lost rank as c10::Error or std::runtime_error.
template <class Call>
void collective(const char* what, int rank, Call&& call) {
  try {
    call();
  } catch (const std::exception& e) {
    throw node_collective_error(std::string("trainer ") + std::to_string(rank) + ": " + what +
                                " across the node's trainers failed: " + e.what());
  }
}

void check_tensor(const torch::Tensor& tensor) {
  if (!tensor.defined() || !tensor.is_contiguous())
    throw std::invalid_argument("node_reducer takes contiguous tensors");
}

} // namespace

node_reducer::node_reducer(std::shared_ptr<node_rendezvous> rendezvous,
                           node_reducer_options options)
  : options_(options) {
  if (options_.ranks < 1 || options_.rank < 0 || options_.rank >= options_.ranks)
    throw std::invalid_argument("node_reducer: rank " + std::to_string(options_.rank) +
                                " of " + std::to_string(options_.ranks));
  if (options_.ranks == 1)
    return;
  if (!rendezvous)
    throw std::invalid_argument("node_reducer: several ranks need a rendezvous");
  auto gloo_options = c10d::ProcessGroupGloo::Options::create(options_.timeout);
  // Loopback: the ranks share a process, and the machine's name may resolve to nothing usable.
  gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  // One thread of Gloo's own per rank: calls are synchronous here, one at a time.
  gloo_options->threads = 1;
  group_ = std::make_unique<group>();
  collective("joining", options_.rank, [&] {
    group_->store = rendezvous->open();  // connects to the peer's store for attached trainers
    group_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(
      group_->store, options_.rank, options_.ranks, gloo_options);
  });
}

node_reducer::~node_reducer() = default;

bool node_reducer::uses_nccl() const {
#ifdef DDACTOR_WITH_CUDA
  return options_.nccl;
#else
  return false;
#endif
}

template <class Operation>
void node_reducer::run_on_group(torch::Tensor& tensor, const char* what, Operation&& operation) {
#ifdef DDACTOR_WITH_CUDA
  if (options_.nccl && tensor.is_cuda()) {
    if (!group_->nccl)
      collective("joining NCCL", options_.rank, [&] {
        group_->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(
          c10::make_intrusive<c10d::PrefixStore>("nccl", group_->store), options_.rank,
          options_.ranks);
      });
    std::vector<at::Tensor> tensors{tensor};
    collective(what, options_.rank,
               [&] { operation(*group_->nccl, tensors)->wait(options_.timeout); });
    return;
  }
#endif
  // Gloo reduces host memory: a tensor elsewhere goes through a host copy, written back after.
  const bool staged = !tensor.device().is_cpu();
  std::vector<at::Tensor> tensors{staged ? tensor.to(torch::kCPU) : tensor};
  collective(what, options_.rank,
             [&] { operation(*group_->gloo, tensors)->wait(options_.timeout); });
  if (staged)
    tensor.copy_(tensors[0]);
}

void node_reducer::sum_(torch::Tensor& tensor) {
  check_tensor(tensor);
  if (!group_)
    return;
  run_on_group(tensor, "a sum", [](auto& group, std::vector<at::Tensor>& tensors) {
    return group.allreduce(tensors, c10d::AllreduceOptions{});
  });
}

void node_reducer::broadcast_(torch::Tensor& tensor, int root) {
  check_tensor(tensor);
  if (root < 0 || root >= options_.ranks)
    throw std::invalid_argument("node_reducer: no rank " + std::to_string(root));
  if (!group_)
    return;
  c10d::BroadcastOptions broadcast;
  broadcast.rootRank = root;
  run_on_group(tensor, "a broadcast", [&](auto& group, std::vector<at::Tensor>& tensors) {
    return group.broadcast(tensors, broadcast);
  });
}

} // namespace ddactor
