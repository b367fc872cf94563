#pragma once
// The typed form of a ddactor run file (TOML). Every key a user can set lives here, with its default;
// config/example.toml documents each one, and config/config_loader.cpp fills these structs and
// rejects unknown keys, wrong types and impossible values with the file, line and key.
//
// Sections added by later capabilities (network, averaging, monitoring, ddm) get their own struct.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace ddactor {

/// [run]: what this process does and where it keeps its files.
struct run_section {
  std::string name = "ddactor";
  /// Folder for checkpoints, sample grids and logs; relative paths are relative to the working
  /// directory. Empty means "runs/<name>".
  std::filesystem::path dir;
  /// "train" for the DiT; later capabilities add modes.
  std::string mode = "train";
  uint64_t seed = 0;
  /// LibTorch intra-op threads; 0 uses every core.
  int threads = 0;
  /// Trainers in this peer, each with its own slice of every batch, reduced inside the node
  /// before the optimizer step (models/node_reducer.hpp); on the CPU they share run.threads.
  int trainers = 1;
  /// "cpu", "cuda" or "cuda:N" (CUDA needs a build with DDACTOR_CUDA and a GPU).
  std::string device = "cpu";
  /// One trainer per device listed (["cuda:0", "cuda:1"]): rank r trains on devices[r], and
  /// run.trainers is their number. Empty: run.trainers trainers on run.device.
  std::vector<std::string> devices{};
  /// Whether trainers of other processes on this machine may join this peer (`ddactor
  /// trainer`): it then listens on 127.0.0.1 and writes attach.addr and attach.key (mode 0600)
  /// to the run folder. Off by default, so that a peer opens no port nobody asked for.
  bool attach = false;

  /// The device rank `rank` of this peer's trainers trains on (run.device past the list).
  const std::string& device_of_rank(int rank) const {
    const auto index = static_cast<size_t>(rank);
    return index < devices.size() ? devices[index] : device;
  }

  bool operator==(const run_section&) const = default;
};

/// [model]: the DiT. A preset ("S/4", "B/2", ...) fills the size keys; keys set explicitly win.
struct model_section {
  std::string preset = "custom";
  int hidden_size = 128;
  int depth = 4;
  int num_heads = 4;
  int patch_size = 4;
  double mlp_ratio = 4.0;
  /// "class" (labels, with a null class for classifier-free guidance), "caption" (a small text
  /// encoder trained with the model) or "none".
  std::string conditioning = "class";
  int num_classes = 10;
  /// Probability that a training example's condition is replaced by the null condition (CFG).
  double condition_dropout = 0.1;
  /// Caption encoder: transformer layers over the caption's UTF-8 bytes, and the byte budget.
  int text_layers = 2;
  int text_max_bytes = 64;
  /// A diffusers Stable Diffusion folder (model_index.json, unet/, vae/, text_encoder/,
  /// tokenizer/, scheduler/). Set: its UNet is fine-tuned (full or LoRA, see [train]) instead of
  /// training a DiT. Empty: the DiT above.
  std::filesystem::path pretrained;
  /// With pretrained: train the DiT above on the folder's VAE latents (4 channels,
  /// resolution / 8), conditioned on its CLIP text encoder, instead of fine-tuning its UNet.
  bool latent = false;

  bool operator==(const model_section&) const = default;
};

/// [data]: where images come from and how they are batched.
struct data_section {
  /// "fashion-mnist" (IDX files) or "folder" (images with same-named .txt captions).
  std::string source = "fashion-mnist";
  std::filesystem::path path = "/usr/share/datasets/fashion-mnist";
  /// Images are resized and centre-cropped to resolution x resolution.
  int resolution = 28;
  /// 1 (grey) or 3 (RGB).
  int channels = 1;
  int batch_size = 64;
  /// Forward and backward on at most this many examples at a time, their gradients summed
  /// (0: the whole batch at once): a large batch in the memory of a small one, same gradients.
  int micro_batch_size = 0;
  /// Batches the data loader may have in flight to the trainer (credits).
  int prefetch = 4;
  /// Fraction of a folder data set held out for evaluation (Fashion-MNIST uses its test split).
  double holdout_fraction = 0.05;
  /// Stable Diffusion: aspect-ratio buckets (sides multiples of 64, at most resolution^2
  /// pixels); images are batched with others of their bucket at its size. false: every image is
  /// centre-cropped to resolution x resolution.
  bool buckets = false;
  /// Stable Diffusion / latent DiT: encode every image (VAE) and caption (text encoder) once and
  /// keep the results on disk in the run folder; training then reads them.
  bool cache_latents = true;

  bool operator==(const data_section&) const = default;
};

/// [train]: optimisation and the rhythm of logging, checkpoints and sample grids.
struct train_section {
  /// Stop after this many optimizer steps (0: no step limit).
  int64_t steps = 2000;
  /// Stop after this many seconds of training in this process (0: no time limit).
  double max_seconds = 0;
  double lr = 3e-4;
  double weight_decay = 0.0;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_eps = 1e-8;
  int64_t warmup_steps = 100;
  /// Gradient norm clip; 0 disables.
  double grad_clip = 1.0;
  double ema_decay = 0.999;
  /// Logit-normal timestep sampling (Esser et al. 2024): t = sigmoid(N(mean, std)).
  double logit_normal_mean = 0.0;
  double logit_normal_std = 1.0;
  int64_t log_every = 10;
  int64_t checkpoint_every = 500;
  /// Checkpoints kept on disk (oldest removed first); at least 1.
  int keep_checkpoints = 3;
  /// Write a sample grid every this many steps (0: only at the end).
  int64_t sample_every = 500;
  /// Swarm training: samples the whole swarm accumulates per epoch (0: every local batch is an
  /// epoch, no averaging). With a network, train.steps counts global epochs.
  int64_t target_batch_size = 0;
  /// What the swarm averages: "gradients" (identical steps everywhere), "parameters" (local
  /// steps, parameters averaged each epoch) or "diloco" (local AdamW steps, then an outer
  /// Nesterov step on the averaged pseudo-gradient each epoch).
  std::string averaging = "gradients";
  /// What the forward and backward passes compute in: "fp32", "bf16" (autocast; weights,
  /// gradients and the optimizer stay fp32) or "fp16" (autocast with dynamic loss scaling; CUDA
  /// only).
  std::string precision = "fp32";
  /// DiLoCo's outer optimizer (Douillard et al. 2023): SGD with Nesterov momentum.
  double outer_lr = 0.7;
  double outer_momentum = 0.9;
  /// Stable Diffusion: 0 fine-tunes the whole UNet; > 0 trains LoRA adapters of this rank on the
  /// lora_targets layers (scale lora_alpha / lora_rank), the UNet frozen.
  int lora_rank = 0;
  double lora_alpha = 8.0;
  std::vector<std::string> lora_targets = {"to_q", "to_k", "to_v", "to_out.0"};
  /// Stable Diffusion: offset noise (a per-image, per-channel constant added to the noise).
  double offset_noise = 0.0;
  /// Stable Diffusion: min-SNR loss weighting with this gamma (Hang et al. 2023; 5 is usual);
  /// 0: off.
  double min_snr_gamma = 0.0;
  /// Stable Diffusion: probability that a caption is replaced by the empty prompt (CFG).
  double caption_dropout = 0.1;
  /// Stable Diffusion: activation checkpointing and chunked attention in the UNet (less memory,
  /// about a third more compute).
  bool checkpoint_activations = false;

  bool operator==(const train_section&) const = default;
};

/// [sample]: defaults for `ddactor sample` and the grids written while training.
struct sample_section {
  int steps = 20;
  /// DiT: "euler" or "heun". Stable Diffusion: "ddim", "euler" or "dpm++2m"; any other value
  /// (the default "heun") takes the folder's scheduler where it is one of those, else dpm++2m.
  std::string sampler = "heun";
  /// Classifier-free guidance scale; 1 means no guidance.
  double cfg_scale = 2.0;
  /// Images per class (rows of the grid) or per prompt.
  int per_class = 8;
  uint64_t seed = 1234;

  bool operator==(const sample_section&) const = default;
};

/// [eval]: the Frechet distance and conditional accuracy measured by `ddactor eval`.
struct eval_section {
  /// Generated images compared with the reference split; keep it fixed to compare runs.
  int num_samples = 2000;
  int steps = 20;
  std::string sampler = "heun";
  double cfg_scale = 2.0;
  int batch_size = 250;
  uint64_t seed = 4321;
  /// Where the feature classifier is cached once trained. Empty: $XDG_CACHE_HOME/ddactor or
  /// ~/.cache/ddactor.
  std::filesystem::path cache_dir;

  bool operator==(const eval_section&) const = default;
};

/// [network]: how this peer joins a swarm. An empty `listen` means no network: a single peer.
/// Durations are in seconds.
struct network_section {
  /// "host:port" to accept peers on ("0.0.0.0:7000"; port 0 picks a free port), or up to 4 of
  /// them on one port (["0.0.0.0:7000", "[::]:7000"]: IPv4 and IPv6).
  std::vector<std::string> listen{};
  /// "host:port" other peers should dial, when it differs from `listen` (port forwarding); a
  /// list gives the addresses to try in order (IPv4 and IPv6). Empty: discovered.
  std::vector<std::string> announce{};
  /// Whether other peers can dial this one: "auto" asks the initial peers (they report the
  /// address they see and try to connect back), "yes" trusts network.listen / announce, "no"
  /// never waits for inbound connections (behind NAT or a firewall): the peer dials out, keeps
  /// reservations at reachable peers' relays, and reduces no part in rounds.
  std::string reachable = "auto";
  /// "host:port" of any peers of the swarm; empty starts a new swarm. Any live one is enough.
  std::vector<std::string> initial_peers;
  /// Peers average only within the same swarm id; empty means run.name.
  std::string swarm_id;
  /// Membership gossip (heartbeat) period; a peer silent for suspect_after is suspected and
  /// removed after remove_after.
  double gossip_interval = 1.0;
  double suspect_after = 3.0;
  double remove_after = 8.0;
  /// Transport heartbeats (CAF's BASP) and the silence after which a connection is dropped.
  double heartbeat_interval = 0.5;
  double connection_timeout = 3.0;
  /// Limit for dialling a peer, and the pause between bootstrap attempts while alone.
  double connect_timeout = 5.0;
  double bootstrap_retry = 2.0;
  /// Training starts once the swarm has this many peers (this one included).
  int wait_for_peers = 1;
  /// Links between peers go through the gateway (runtime/secure/link_gateway.hpp): a mutual
  /// handshake (keys, admission) and sealed frames. false: plain CAF, for trusted networks only.
  bool encryption = true;
  /// The swarm key (32 bytes as 64 hex characters); the DDACTOR_SWARM_KEY environment variable
  /// is used when empty. Every peer of the swarm needs the same one.
  std::filesystem::path swarm_key_file;
  /// Public keys (64 hex characters each) admitted; empty: any holder of the swarm key.
  std::vector<std::string> allowlist;
  /// A swarm without a key or allowlist: anyone who knows its id and an address may join.
  /// Must be asked for.
  bool open = false;
  /// This peer's Ed25519 key (its seed in hex, mode 0600); empty: <run dir>/peer/peer_key.
  std::filesystem::path identity_file;
  /// A link that has not finished its handshake by then is dropped.
  double handshake_timeout = 5.0;
  /// Handshakes at once from one address (more are refused until these finish).
  int max_handshakes_per_address = 8;
  /// Seconds a peer stays left out of this peer's rounds once its misbehaviour (invalid or
  /// unsigned chunks, a result an audit disproved, unanswered audits) reaches the ban score.
  double ban_time = 600;

  bool operator==(const network_section&) const = default;
};

/// [averaging]: how peers average (train.averaging says what). Durations in seconds.
/// averaging.overlap: true, false or "auto".
enum class overlap_policy : uint8_t { off, on, automatic };

struct averaging_section {
  /// Largest averaging group (at most 64); a larger swarm averages in several groups.
  int group_size = 16;
  /// How long peers ready for an epoch wait for others before the groups are formed.
  double matchmaking_time = 5.0;
  /// Deadline of one all-reduce; a round that cannot finish in time is abandoned.
  double allreduce_timeout = 60.0;
  /// Elements per chunk on the wire (parts are streamed in chunks).
  int chunk_elements = 262144;
  /// Limit for one request to another peer (state manifests and chunks, round joins).
  double request_timeout = 10.0;
  /// Bytes per chunk of state sent to late joiners.
  int state_chunk_bytes = 4 * 1024 * 1024;
  /// Codec for all-reduce chunks: "none", "fp16", "bf16", "int8" (blockwise), "topk" (with error
  /// feedback) or "adaptive" (small tensors exact, large ones int8).
  std::string compression = "none";
  /// A lossless zstd stage on top of the codec (0: off, 1-19).
  int zstd_level = 0;
  int int8_block_size = 256;
  double topk_fraction = 0.05;
  /// With "topk" in gradients mode: AdamW treats a coordinate's zeros as "not sent yet" and
  /// catches up when its sum arrives (models/adamw.hpp); false: plain AdamW.
  bool topk_catch_up = true;
  /// "adaptive": tensors with fewer elements than this travel exactly.
  int adaptive_exact_below = 16384;
  /// Threads (compressor actors) that encode and decode chunks while the network carries others.
  int compressor_threads = 2;
  /// How state for late joiners travels: "none", "zstd" (lossless), "fp16" or "bf16" (floats
  /// halved: joiners start from a rounded copy).
  std::string state_compression = "none";
  /// Epochs between fresh copies of the state this peer serves to joiners (encoding costs
  /// about one pass over the model and optimizer).
  int state_every = 1;
  /// This peer's link in Mbit/s (the slower of upload and download), for the leader's cut of the
  /// vector: a slow link reduces a smaller part. 0: measured from this peer's own rounds.
  double bandwidth = 0;
  /// Train the next epoch (up to the samples this peer put into the round, at most
  /// train.target_batch_size) while this epoch's round runs. Gradients mode: the average is
  /// applied when it arrives (delayed parameter updates: every peer applies the same updates in
  /// the same order, so the weights stay identical; see step_ahead for the weights they train on).
  /// DiLoCo mode: the inner steps go on from the weights whose pseudo-gradient is in the round;
  /// the outer step moves the anchor as without overlap (identical on every peer), and the inner
  /// steps taken meanwhile stay on top of it (as Streaming DiLoCo overlaps its outer rounds).
  /// off: training pauses during every round. Parameter averaging always pauses. auto (the
  /// default): on in DiLoCo mode (1.003-1.006x validation loss, 0.50 -> 0.60 of the compute used in
  /// ddactor_overlap_bench) and in gradients mode where step_ahead applies (one trainer per peer:
  /// 0.94x and 0.81x the held-out loss after the same 90 s at 2 and 4 peers in the same bench,
  /// 1.014x at equal epochs in ddactor_swarm_convergence_bench), off where it does not (1.3-1.4x).
  /// An overlapping peer trains at most its share of the epoch during a round (epochs stay the
  /// target's size; a round slower than an epoch's compute leaves the rest of it idle).
  overlap_policy overlap = overlap_policy::automatic;
  /// Gradients mode with overlap: the next epoch trains on the weights after a step with this
  /// peer's own gradient (a prediction of the swarm's step) instead of the weights before it;
  /// when the average arrives that step is undone and the average applied, so every peer still
  /// applies the same updates (ddactor_staleness_bench, 4 peers each on its own guess: 1.016x
  /// validation loss against training without overlap; the stale weights cost 1.26-1.40x). Costs
  /// one copy of the shared state (weights, optimizer moments, EMA) in host memory and a second
  /// optimizer step per epoch. Not with several trainers per peer.
  bool step_ahead = true;
  /// A member's weight (its claimed samples) counts at most this many times the median weight of
  /// its group; a larger claim is clipped (every member clips alike) and counted. 0: no bound.
  double max_weight_ratio = 16;
  /// Distinct peers that must vouch for a state (epoch and weight digest) before this peer falls
  /// behind it or adopts a downloaded copy; fewer when fewer others are there.
  int state_quorum = 2;
  /// How each reducer combines its part: "mean" (weighted) or "centered_clip" (a hostile input
  /// moves the result at most clip_radius; 0: the median distance of the inputs from their
  /// coordinate-wise median), with clip_iterations steps.
  std::string aggregation = "mean";
  double clip_radius = 0;
  int clip_iterations = 3;
  /// The chance that this peer audits one other reducer after each round: it fetches the inputs
  /// the reducer reduced (signed by their senders), recomputes its part and bans it if the result
  /// does not follow (runtime/allreduce/reducer_audit.hpp). An auditor also checks other
  /// auditors' accusations. 0: never (the peer still shows its own evidence to auditors).
  double audit_probability = 0.1;

  bool operator==(const averaging_section&) const = default;
};

/// [ddm]: Decentralized Diffusion Models. `ddactor cluster` splits the data into num_experts
/// clusters; expert k trains on cluster k (ddm.expert = k) in <root>/expert-k; the router
/// (run.mode = "router") in <root>/router; <root> is run.dir, or runs/<run.name>.
struct ddm_section {
  /// K: experts, one per coarse cluster.
  int num_experts = 4;
  /// k-means first finds this many fine clusters, then consolidates them into num_experts.
  int fine_clusters = 64;
  /// A TorchScript feature extractor (e.g. an exported DINOv2); empty: the built-in one.
  std::filesystem::path features;
  /// Dimensions of the built-in features (PCA of downsampled pixels).
  int feature_dims = 32;
  /// Images are resized to this before the TorchScript extractor (0: as loaded).
  int features_resolution = 0;
  /// "kmeans", or "random" (the ablation: a seeded random split into clusters of equal size).
  std::string partition = "kmeans";
  /// The assignment file; empty: <root>/clusters.safetensors.
  std::filesystem::path assignments;
  uint64_t seed = 0;
  /// -1: not an expert run; 0..num_experts-1: train expert k on cluster k only.
  int expert = -1;
  int kmeans_iterations = 100;
  /// Mini-batch size of k-means on large data sets (more than 100000 images; Lloyd below).
  int kmeans_batch = 4096;
  /// The router model (a small DiT classifier).
  int router_hidden_size = 128;
  int router_depth = 2;
  int router_heads = 4;
  int router_patch_size = 4;
  /// Default routing at inference: "top1", "topk" or "full", and k for "topk".
  std::string strategy = "top1";
  int top_k = 2;

  bool operator==(const ddm_section&) const = default;
};

/// [serve]: `ddactor serve` (the router with its experts) and `ddactor serve-expert`.
struct serve_section {
  /// "host:port" of the HTTP API (POST /v1/generate, GET /healthz); empty: no HTTP.
  std::string http = "127.0.0.1:8080";
  /// "host:port" where `serve` publishes its router and `serve-expert` its expert over CAF (apart
  /// from network.listen, the training swarm's address); empty: not published (serve-expert
  /// needs it).
  std::string listen;
  /// Where expert k is: "host:port" of a `ddactor serve-expert` peer, or "" for the local
  /// checkpoint in <root>/expert-k. Missing entries are local.
  std::vector<std::string> experts;
  /// When an expert is unavailable: route its samples to the next-best expert (true) or fail the
  /// request with a clear error (false).
  bool fall_back = true;
  /// Limit for one velocity request to a remote expert.
  double expert_timeout = 10.0;
  /// Largest number of images one request may ask for, in all.
  int max_count = 64;
  /// Requests in progress at once (they interleave step by step); more get HTTP 429.
  int max_queue = 8;
  /// Seconds one HTTP request may take from arrival to its image.
  double request_timeout = 600.0;
  /// A file holding the token clients of POST /v1/generate must present ("Authorization: Bearer
  /// <token>"; readable by its owner only). Empty: the environment variable DDACTOR_SERVE_TOKEN,
  /// and where that is unset too, no token is asked (/healthz never asks).
  std::filesystem::path token_file;
  /// PEM certificate (chain) and private key (chmod 600) to serve `http` over HTTPS; both or
  /// neither. Empty: plain HTTP (keep it on loopback, or behind a TLS proxy).
  std::filesystem::path tls_certificate_file;
  std::filesystem::path tls_key_file;

  bool operator==(const serve_section&) const = default;
};

/// [monitoring]: the Prometheus endpoint of this peer.
struct monitoring_section {
  /// "host:port" serving GET /metrics and GET /healthz; empty: no endpoint.
  std::string listen;
  /// PEM certificate (chain) and private key (chmod 600) to serve `listen` over HTTPS; both or
  /// neither. Empty: plain HTTP, as Prometheus scrapes by default.
  std::filesystem::path tls_certificate_file;
  std::filesystem::path tls_key_file;
  /// Collect metrics at all (off only to measure what instrumentation costs).
  bool enabled = true;

  bool operator==(const monitoring_section&) const = default;
};

/// [debug]: fault injection for tests of supervision. Never set these in real runs.
struct debug_section {
  /// The trainer throws once when it reaches this step (0: never).
  int64_t crash_trainer_at_step = 0;
  /// ... and again in every restarted trainer, as a deterministic failure would.
  bool crash_trainer_every_time = false;
  /// A step that runs more than this many examples at a time (its micro-batch, or its whole
  /// batch) fails as out of memory, as on a device that fits this many (0: never).
  int64_t out_of_memory_above = 0;
  /// The data loader throws once after producing this many batches (0: never).
  int64_t crash_loader_after_batches = 0;
  /// Every batch the trainer computes takes this many milliseconds longer, as on a slower device
  /// (0: never); keeps a peer training alone from finishing before a late joiner arrives.
  int64_t batch_delay_ms = 0;
  /// The process kills itself (SIGKILL) in the middle of the averaging round of this epoch
  /// (0: never), as a "sender" (after sending half its parts) or a "reducer" (after reducing its
  /// part, before sending the result).
  int64_t die_in_round = 0;
  std::string die_as = "sender";
  /// From this epoch on (0: never) the peer sends all-reduce chunks full of NaN, as a broken or
  /// hostile peer would.
  int64_t corrupt_chunks_from = 0;
  /// This peer attacks its swarm, for tests of the defences: "" (never), "forged_state" (it
  /// reports an epoch 100000 past its own, serves its weights negated as that epoch's state and
  /// sends its report under the other peers' ids too),
  /// "scaled_values" (it sends reducers its values times -100: finite, so they pass validation),
  /// "silent_leader" (as matchmaking leader it takes joins and never answers them),
  /// "lying_reducer" (it sends every member the same negated result for its part: digests agree,
  /// only audits can tell), "false_accuser" (it audits a reducer after every round and accuses
  /// it whatever it finds, with the inputs it was shown, one of them altered, as proof: to have
  /// honest rounds discarded).
  std::string byzantine;
  /// Hostile fault injection (corrupt_chunks_from, byzantine) is refused unless this is true.
  bool allow_byzantine = false;

  bool operator==(const debug_section&) const = default;
};

/// A whole run file.
struct run_config {
  /// The file it was read from (for messages and relative paths); empty for defaults.
  std::filesystem::path source_file;
  run_section run;
  model_section model;
  data_section data;
  train_section train;
  sample_section sample;
  eval_section eval;
  network_section network;
  averaging_section averaging;
  monitoring_section monitoring;
  ddm_section ddm;
  serve_section serve;
  debug_section debug;

  /// The folder of this run: the DDM root, or for a DDM expert <root>/expert-k, for the router
  /// <root>/router.
  std::filesystem::path run_dir() const;
  /// run.dir, or runs/<run.name>.
  std::filesystem::path ddm_root() const;
  /// ddm.assignments, or <root>/clusters.safetensors.
  std::filesystem::path assignments_path() const;

  /// Compares every key and source_file (tests, and a checkpoint's config against a run file).
  bool operator==(const run_config&) const = default;
};

} // namespace ddactor
