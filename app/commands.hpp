#pragma once
// The commands of the ddactor binary. Each returns the process exit code.

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "config/run_config.hpp"

namespace ddactor {

/// `ddactor --config run.toml` / `ddactor train`: runs a peer until its step or time limit, or
/// until Ctrl-C (which checkpoints first).
int train_command(const run_config& config);

struct sample_request {
  std::filesystem::path out = "samples.png";
  std::optional<int> class_index;
  /// Captions to generate, one row each (caption models, Stable Diffusion).
  std::vector<std::string> prompts;
  /// Stable Diffusion: what guidance steers away from (default: the empty prompt).
  std::optional<std::string> negative_prompt;
  /// Images per class/prompt (0: sample.per_class).
  int count = 0;
  std::optional<int> steps;
  std::optional<std::string> sampler;
  std::optional<double> cfg_scale;
  std::optional<uint64_t> seed;
  /// Empty: the newest checkpoint of the run.
  std::filesystem::path checkpoint;
  /// Sample with the raw weights instead of the EMA weights.
  bool raw_weights = false;
  /// Stable Diffusion: a LoRA file applied to model.pretrained instead of the run's checkpoint.
  std::filesystem::path lora;
  /// DDM: combine the experts of <root>/expert-* with the router of <root>/router ("top1",
  /// "topk", "full"); empty: the run's own model.
  std::string ensemble;
  int top_k = 2;
};

struct trainer_request {
  /// The peer's attach address "127.0.0.1:PORT"; empty: <run dir>/attach.addr.
  std::string peer;
  /// The device this trainer trains on; empty: run.device.
  std::string device;
};

/// `ddactor trainer`: one more trainer for the running peer of this run on this machine
/// (run.attach), until the peer's run ends. Left out (its set failed, e.g. out of memory), it
/// attaches again with backoff, after an out of memory with half the micro-batch. Exit code 0
/// when the run ends or on Ctrl-C, 1 when the peer stays away or keeps leaving it out; throws for
/// what the user must fix (no attach key or address, a device this build cannot use, no peer
/// answering the first time).
int trainer_command(const run_config& config, const trainer_request& request);

/// `ddactor sample`: writes a PNG grid generated from a checkpoint.
int sample_command(const run_config& config, const sample_request& request);

struct eval_request {
  std::filesystem::path checkpoint;
  bool raw_weights = false;
  /// DDM: "top1", "topk", "full" or "oracle" (each sample's expert is the cluster holding most
  /// training images of its class); empty: the run's own model.
  std::string ensemble;
  int top_k = 2;
};

/// `ddactor eval`: Frechet distance and class accuracy of generated images.
int eval_command(const run_config& config, const eval_request& request);

/// `ddactor serve`: a DDM's router with its experts (local, or remote `serve-expert` peers listed
/// in serve.experts), answering generation requests over HTTP (serve.http) and CAF
/// (serve.listen), until Ctrl-C.
int serve_command(const run_config& config);

/// `ddactor serve-expert --expert k`: serves expert k's velocities to routers on other peers
/// (published on serve.listen), until Ctrl-C.
int serve_expert_command(const run_config& config, int expert, const std::filesystem::path& checkpoint);

/// `ddactor cluster`: splits the training set into ddm.num_experts clusters (Decentralized
/// Diffusion Models) and writes the assignment file (ddm.assignments); prints the cluster sizes
/// and, for labelled data, the classes in each cluster.
int cluster_command(const run_config& config);

struct status_request {
  /// The address peers dial: the peer's network.listen (or network.announce) "host:port".
  std::string peer;
  /// Print the snapshot's JSON (the status page's /status.json) instead of tables.
  bool json = false;
  /// Connecting and asking together take at most this long.
  std::chrono::milliseconds timeout{5000};
  /// Peers admit holders of the swarm key only: read from here, else DDACTOR_SWARM_KEY.
  std::filesystem::path swarm_key_file;
  /// A key on the swarm's allowlist; empty: a fresh key pair.
  std::filesystem::path identity_file;
  /// The peer runs without the gateway (network.encryption = false).
  bool plain = false;
};

/// `ddactor status --peer HOST:PORT`: prints the swarm as a running peer sees it (its peers and
/// its last rounds). Needs no run file. Exit code 0, 1 when the peer cannot be reached or gives
/// no status in time (one line on stderr says why), 2 for an address that is not HOST:PORT.
int status_command(const status_request& request);

/// `ddactor keys`: prints the run's peer id and public key (creating the key pair if missing).
int keys_command(const run_config& config);

/// `ddactor keys --new-swarm-key FILE`: writes a fresh swarm key (mode 0600, never over a file).
int new_swarm_key_command(const std::filesystem::path& file);

} // namespace ddactor
