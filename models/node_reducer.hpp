#pragma once
// The collective of the trainers of one node (one peer, several trainers): each trainer holds
// the node_reducer of its rank r in [0, ranks), and together they sum tensors or copy one rank's
// tensor to all, through LibTorch's c10d ProcessGroupGloo over loopback. The ranks find each
// other through a node_rendezvous made once per set of trainers (a set restarted after a failure
// meets in a fresh one, never in its predecessor's): an in-process key-value store when every
// rank is a thread of the peer, or, when trainers of other processes take part (`ddactor
// trainer`, run.attach), the peer's c10d TCPStore on 127.0.0.1 under a fresh prefix per set.
//
// A collective call blocks the calling thread until every rank made the same call (trainers run
// on their own threads, never on CAF's scheduler). It fails with node_collective_error when a
// rank does not come within the timeout or its connection closes (its trainer died), so that no
// trainer waits for ever on a dead one; the supervisor then restarts the whole set.
//
// Every rank must make the same calls in the same order with tensors of the same shape and
// dtype. The results are bit-identical on every rank: Gloo reduces each chunk of a sum on one
// rank and copies the result to the others.
//
// One rank alone (ranks = 1) makes no group: its calls return at once.
//
// Tensors on a GPU are reduced by NCCL in CUDA builds where every rank is on a GPU (options'
// nccl; a group made at the first such call, on the same rendezvous); elsewhere Gloo reduces a
// host copy of a tensor that is not on the host.
//
// Thread-safety: one node_reducer per thread; a node_rendezvous is shared by all ranks.

#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

namespace ddactor {

/// Where the ranks of one set of trainers meet (opaque: a c10d store).
class node_rendezvous;

/// A fresh meeting place for one set of trainers, all in this process.
std::shared_ptr<node_rendezvous> make_node_rendezvous();

/// A meeting place in the c10d TCPStore at 127.0.0.1:port, under `prefix` (one per set). Each
/// rank opens its own connection to the store when it joins.
std::shared_ptr<node_rendezvous> make_node_rendezvous(uint16_t port, const std::string& prefix);

/// The peer's c10d TCPStore, served on 127.0.0.1 (a free port) while this object lives, for
/// sets with trainers of other processes. Its keys are unauthenticated (c10d has no
/// authentication): a set's prefix is a fresh random secret given only to authenticated
/// trainers, so that no other process finds the set's keys.
class node_store_host {
 public:
  node_store_host();
  ~node_store_host();
  node_store_host(const node_store_host&) = delete;
  node_store_host& operator=(const node_store_host&) = delete;
  uint16_t port() const;

 private:
  struct server;
  std::unique_ptr<server> server_;
};

struct node_reducer_options {
  int rank = 0;
  int ranks = 1;
  /// How long joining and each collective call wait for the other ranks. Rank 0 writes sample
  /// grids and checkpoint snapshots between two steps while the others wait in the next one.
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};
  /// Every rank trains on a GPU (run.devices, no attached trainer): CUDA tensors go through
  /// NCCL in CUDA builds. Otherwise (a set mixing devices, e.g. an attached trainer) Gloo sums
  /// host copies on every rank: all ranks must agree, as NCCL and Gloo groups do not meet.
  bool nccl = false;
};

/// A rank did not come in time, or its connection closed.
class node_collective_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class node_reducer {
 public:
  /// Joins the group: blocks until every rank has joined (or throws after the timeout).
  node_reducer(std::shared_ptr<node_rendezvous> rendezvous, node_reducer_options options);
  ~node_reducer();
  node_reducer(const node_reducer&) = delete;
  node_reducer& operator=(const node_reducer&) = delete;

  int rank() const { return options_.rank; }
  /// Whether CUDA tensors go through NCCL (a CUDA build and options' nccl).
  bool uses_nccl() const;
  int ranks() const { return options_.ranks; }

  /// Replaces `tensor` (contiguous; on any device, see the top) by its sum over all ranks.
  void sum_(torch::Tensor& tensor);

  /// Replaces `tensor` by rank `root`'s.
  void broadcast_(torch::Tensor& tensor, int root);

 private:
  struct group;
  // `operation(process_group, tensors)` on Gloo (a host copy for a tensor not on the host) or,
  // in CUDA builds, NCCL for a CUDA tensor; waits for it.
  template <class Operation>
  void run_on_group(torch::Tensor& tensor, const char* what, Operation&& operation);

  node_reducer_options options_;
  std::unique_ptr<group> group_;  // null for one rank alone
};

} // namespace ddactor
