// ddactor: the command line. Parses arguments, reads and validates the run file, and dispatches to
// a command (app/commands.hpp). Errors a user can fix are printed as one clear line, exit code 2
// for usage and config errors, 1 for failures at run time.
#include <CLI/CLI.hpp>

#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>
#include <iostream>

#include "app/commands.hpp"
#include "app/logging_setup.hpp"
#include "app/sd_commands.hpp"
#include "models/readable_error.hpp"
#include "app/stop_signal.hpp"
#include "app/torch_setup.hpp"
#include "config/config_loader.hpp"
#include "runtime/progress_meter.hpp"
#include "runtime/version.hpp"

namespace {

constexpr const char* description = R"(ddactor trains diffusion models (DiT, flow matching) with actors.
One process is one peer; it trains, checkpoints, and writes sample grids while it runs.)";

constexpr const char* footer = R"(
Examples:
  ddactor --config config/quickstart.toml          train (resumes from the newest checkpoint)
  ddactor --config run.toml --set train.steps=500  override any key from the command line
  ddactor sample --config run.toml --out grid.png --class 3 --steps 30 --cfg 3.0
  ddactor eval --config run.toml                   Frechet distance and class accuracy
  ddactor cluster --config ddm.toml                DDM: split the data into ddm.num_experts
  ddactor --config ddm.toml --set ddm.expert=2     DDM: train expert 2 on its cluster
  ddactor --config ddm.toml --set run.mode=router  DDM: train the router
  ddactor eval --config ddm.toml --ensemble top1   DDM: the experts combined by the router
  ddactor serve --config ddm.toml                  DDM: POST /v1/generate on serve.http
  ddactor serve-expert --config ddm.toml --expert 1  DDM: serve expert 1 to remote routers
  ddactor check-config run.toml                    validate a run file and print it
  ddactor status --peer 127.0.0.1:7000             the swarm as a running peer sees it
  ddactor trainer --config run.toml                one more trainer for the running peer
  ddactor sample --config sd.toml --prompt "a red dress" --negative-prompt "blurry" \
      --sampler dpm++2m --steps 25 --cfg 7.5 --out grid.png   Stable Diffusion (model.pretrained)
  ddactor export --config sd.toml --out DIR        Stable Diffusion: a diffusers folder

Every key of a run file is documented in config/example.toml. Ctrl-C stops training after a
checkpoint; a second Ctrl-C aborts.)";

// A number that is finite and within [low, high] (CLI::Range lets NaN through).
CLI::Validator finite_within(double low, double high) {
  return CLI::Validator(
    [low, high](std::string& text) -> std::string {
      double value = 0;
      try {
        size_t used = 0;
        value = std::stod(text, &used);
        if (used != text.size())
          return "not a number: " + text;
      } catch (const std::exception&) {
        return "not a number: " + text;
      }
      if (!std::isfinite(value) || value < low || value > high)
        return "must be a number from " + CLI::detail::to_string(low) + " to " +
               CLI::detail::to_string(high) + ", got " + text;
      return {};
    },
    "NUMBER in [" + CLI::detail::to_string(low) + ", " + CLI::detail::to_string(high) + "]");
}

// --config and --set on a subcommand too: its --help then lists them (they bind the same
// variables as the top-level ones, so either place works).
void add_run_file_options(CLI::App* command, std::string& config_path,
                          std::vector<std::string>& overrides) {
  command->add_option("-c,--config", config_path, "run file (TOML); see config/example.toml");
  command->add_option("--set", overrides, "override a config key, e.g. --set train.lr=1e-4")
    ->type_name("KEY=VALUE");
}

} // namespace

int main(int argc, char** argv) {
  ddactor::use_passive_openmp_wait(argv);
  ddactor::keep_freed_memory();
  CLI::App app{description, "ddactor"};
  app.footer(footer);
  app.set_version_flag("--version", std::string("ddactor ") + ddactor::version_string);
  app.require_subcommand(0, 1);
  app.fallthrough();

  std::string config_path;
  std::vector<std::string> overrides;
  std::string log_level = "info";
  app.add_option("-c,--config", config_path, "run file (TOML); see config/example.toml");
  app.add_option("--set", overrides, "override a config key, e.g. --set train.lr=1e-4")
    ->type_name("KEY=VALUE");
  app.add_option("--log-level", log_level, "trace, debug, info, warn or error")
    ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));

  auto* train = app.add_subcommand("train", "train a model (the default command)");

  ddactor::trainer_request trainer_request;
  auto* trainer_cmd = app.add_subcommand(
    "trainer", "add a trainer to this run's peer running on this machine (run.attach = true)");
  trainer_cmd
    ->add_option("--peer", trainer_request.peer,
                 "the peer's attach address (default: what the peer wrote to <run dir>/"
                 "attach.addr)")
    ->type_name("127.0.0.1:PORT");
  trainer_cmd->add_option("--device", trainer_request.device,
                          "the device this trainer trains on (default: run.device)");

  ddactor::sample_request sample;
  std::optional<int> class_index;
  std::vector<std::string> prompts;
  std::optional<std::string> negative_prompt;
  std::optional<int> steps;
  std::optional<std::string> sampler;
  std::optional<double> cfg;
  std::optional<uint64_t> seed;
  std::string sample_checkpoint;
  std::string out = "samples.png";
  auto* sample_cmd = app.add_subcommand("sample", "write a PNG grid of generated images");
  sample_cmd->add_option("-o,--out", out, "output PNG file")->capture_default_str();
  auto* class_opt = sample_cmd->add_option("--class", class_index, "class index to generate");
  sample_cmd
    ->add_option("--prompt", prompts,
                 "caption to generate, one grid row each; repeat for more (caption models, "
                 "Stable Diffusion)")
    ->excludes(class_opt);
  sample_cmd->add_option("--negative-prompt", negative_prompt,
                         "Stable Diffusion: what guidance steers away from");
  sample_cmd
    ->add_option("-n,--count", sample.count,
                 "images per class or prompt (default: sample.per_class of the run file)")
    ->check(CLI::Range(1, 4096));
  sample_cmd->add_option("--steps", steps, "sampling steps (default: sample.steps)")
    ->check(CLI::Range(1, 1000));
  sample_cmd
    ->add_option("--sampler", sampler,
                 "DiT: euler or heun; Stable Diffusion: ddim, euler or dpm++2m (default: "
                 "sample.sampler, for SD else the folder's scheduler or dpm++2m)")
    ->check(CLI::IsMember({"euler", "heun", "ddim", "dpm++2m"}));
  sample_cmd
    ->add_option("--cfg", cfg,
                 "classifier-free guidance scale (1 = none; default: sample.cfg_scale)")
    ->check(finite_within(0, 100));
  sample_cmd->add_option("--seed", seed, "noise seed (default: sample.seed)");
  sample_cmd->add_option("--checkpoint", sample_checkpoint,
                         "checkpoint file (default: the run's newest)");
  sample_cmd->add_flag("--raw-weights", sample.raw_weights,
                       "use the trained weights instead of their EMA");
  std::string sample_lora;
  sample_cmd
    ->add_option("--lora", sample_lora,
                 "Stable Diffusion: apply this LoRA file (a run's lora.safetensors, or one "
                 "diffusers wrote) to model.pretrained instead of the run's checkpoint")
    ->excludes("--checkpoint");
  sample_cmd
    ->add_option("--ensemble", sample.ensemble,
                 "DDM: combine the experts with the router (top1, topk or full)")
    ->check(CLI::IsMember({"top1", "topk", "full"}));
  sample_cmd->add_option("--top-k", sample.top_k, "experts per sample for --ensemble topk");

  ddactor::eval_request eval;
  std::string eval_checkpoint;
  auto* eval_cmd = app.add_subcommand(
    "eval", "Frechet distance and class accuracy of generated Fashion-MNIST images");
  eval_cmd->add_option("--checkpoint", eval_checkpoint,
                       "checkpoint file (default: the run's newest)");
  eval_cmd->add_flag("--raw-weights", eval.raw_weights,
                     "use the trained weights instead of their EMA");
  eval_cmd
    ->add_option("--ensemble", eval.ensemble,
                 "DDM: evaluate the experts combined by the router (top1, topk, full) or each "
                 "sample's oracle cluster (oracle)")
    ->check(CLI::IsMember({"top1", "topk", "full", "oracle"}));
  eval_cmd->add_option("--top-k", eval.top_k, "experts per sample for --ensemble topk");

  auto* cluster_cmd = app.add_subcommand(
    "cluster", "Decentralized Diffusion Models: split the training images into ddm.num_experts "
               "clusters (features, k-means) and write the assignment file the experts share "
               "(ddm.assignments); prints each cluster's size and classes");

  auto* serve_cmd = app.add_subcommand(
    "serve", "serve a DDM (router + experts) over HTTP (serve.http) and CAF (serve.listen)");
  int serve_expert_index = 0;
  std::string serve_expert_checkpoint;
  auto* serve_expert_cmd =
    app.add_subcommand("serve-expert", "serve one DDM expert to routers on other peers");
  serve_expert_cmd->add_option("--expert", serve_expert_index, "which expert (0..K-1)")
    ->required();
  serve_expert_cmd->add_option("--checkpoint", serve_expert_checkpoint,
                               "checkpoint file (default: the expert's newest)");

  std::string export_out;
  std::string export_checkpoint;
  bool export_raw_weights = false;
  auto* export_cmd = app.add_subcommand(
    "export", "Stable Diffusion: write the fine-tuned model as a diffusers folder");
  export_cmd->add_option("-o,--out", export_out, "folder to write (must not exist)")->required();
  export_cmd->add_option("--checkpoint", export_checkpoint,
                         "checkpoint file (default: the run's newest)");
  export_cmd->add_flag("--raw-weights", export_raw_weights,
                       "use the trained weights instead of their EMA");

  ddactor::status_request status;
  double status_timeout = 5.0;
  auto* status_cmd = app.add_subcommand(
    "status", "show the swarm as a running peer sees it: its peers and its last rounds");
  status_cmd->description(
    "Asks the running peer at HOST:PORT how it sees its swarm and prints two tables: every peer "
    "in its view (id, address, epoch, samples/s, its role in the last round, when it was last "
    "heard from, whether it is suspected and reachable) and the last averaging rounds (result, "
    "group size, leader, duration, bytes sent and received). Needs no run file. Exit code 0; 1 "
    "when the peer cannot be reached or does not answer within --timeout; 2 for a malformed "
    "address.");
  status_cmd
    ->add_option("--peer", status.peer,
                 "the peer's address as other peers dial it: its network.listen (or "
                 "network.announce), e.g. 127.0.0.1:7000")
    ->required()
    ->type_name("HOST:PORT");
  status_cmd->add_flag("--json", status.json,
                       "print the raw snapshot as JSON (what the status page's /status.json serves)");
  status_cmd
    ->add_option("--timeout", status_timeout,
                 "seconds to wait for the connection and the answer together")
    ->check(CLI::Range(0.1, 600.0))
    ->type_name("SECONDS")
    ->capture_default_str();
  status_cmd
    ->add_option("--swarm-key-file", status.swarm_key_file,
                 "the swarm's key (else DDACTOR_SWARM_KEY): peers admit only its holders")
    ->type_name("FILE");
  status_cmd
    ->add_option("--identity-file", status.identity_file,
                 "a key pair on the swarm's network.allowlist (created if missing); default: a "
                 "fresh one")
    ->type_name("FILE");
  status_cmd->add_flag("--plain", status.plain,
                       "the peer runs with network.encryption = false (no handshake)");
  status_cmd->footer(R"(
Examples:
  ddactor status --peer 127.0.0.1:7000                 tables of the peers and the last rounds
  ddactor status --peer peer1.lan:7000 --json          the same as JSON (as GET /status.json)
  DDACTOR_SWARM_KEY=$(cat swarm.key) ddactor status --peer peer1.lan:7000

A peer with monitoring.listen set also serves this as a page at / that refreshes itself.)");

  std::string new_swarm_key;
  auto* keys_cmd = app.add_subcommand(
    "keys", "print this peer's id and public key (for allowlists), or create a swarm key");
  keys_cmd->description(
    "Prints the peer id and Ed25519 public key of the run's identity (network.identity_file, else "
    "<run dir>/peer/peer_key; created if missing, mode 0600): the public key is what other "
    "peers list in network.allowlist. With --new-swarm-key FILE it writes a fresh random swarm "
    "key there instead (mode 0600, never over an existing file): give the file to every peer "
    "of the swarm (network.swarm_key_file, or its content in DDACTOR_SWARM_KEY).");
  keys_cmd->add_option("--new-swarm-key", new_swarm_key, "write a new swarm key to FILE")
    ->type_name("FILE");
  keys_cmd->footer(R"(
Examples:
  ddactor keys --new-swarm-key swarm.key               a key for a new swarm
  ddactor keys --config run.toml                       this peer's id and public key)");

  std::string check_path;
  auto* check_cmd = app.add_subcommand("check-config", "validate a run file and print it");
  check_cmd->add_option("file", check_path, "run file to check");

  // Every subcommand lists the run-file options in its help, and a short pointer instead of the
  // examples of the top-level help.
  for (auto* command : app.get_subcommands({})) {
    add_run_file_options(command, config_path, overrides);
    command->footer("Every key of a run file is documented in config/example.toml; `ddactor "
                    "--help` lists the commands with examples.");
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Usage errors exit with 2, as the other mistakes of the command line do.
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  if (*status_cmd) {
    status.timeout = std::chrono::milliseconds(static_cast<int64_t>(status_timeout * 1000));
    return ddactor::status_command(status);
  }

  if (*keys_cmd && !new_swarm_key.empty())
    return ddactor::new_swarm_key_command(new_swarm_key);

  if (*check_cmd && check_path.empty())
    check_path = config_path;
  auto path = *check_cmd ? check_path : config_path;
  if (path.empty()) {
    std::cerr << "ddactor: no run file given (use --config FILE; try --help, or "
                 "config/quickstart.toml)\n";
    return 2;
  }
  ddactor::run_config config;
  try {
    if (*trainer_cmd && !trainer_request.device.empty())
      overrides.push_back("run.device=" + trainer_request.device);  // checked as run.device is
    config = ddactor::load_run_config(path, overrides);
  } catch (const std::exception& e) {
    std::cerr << "ddactor: " << e.what() << "\n";
    return 2;
  }
  if (*check_cmd) {
    std::cout << "# " << path << " is valid. Effective configuration:\n"
              << ddactor::describe_config(config);
    return 0;
  }

  if (*keys_cmd)
    return ddactor::keys_command(config);

  try {
    ddactor::check_device(config.run.device);
    for (const auto& device : config.run.devices)
      ddactor::check_device(device);
    if (!config.model.pretrained.empty() && (*serve_cmd || *serve_expert_cmd))
      throw std::invalid_argument(
        "ddactor serve routes a DDM of pixel DiTs; a run with model.pretrained (a Stable "
        "Diffusion fine-tune or a latent DiT) samples with `ddactor sample`");
  } catch (const std::exception& e) {
    std::cerr << "ddactor: " << config.source_file.string() << ": " << e.what() << "\n";
    return 2;
  }

  try {
    if (*trainer_cmd) {
      ddactor::setup_logging(log_level);
      return ddactor::trainer_command(config, trainer_request);
    }
    if (*sample_cmd || *eval_cmd || *cluster_cmd || *serve_cmd || *serve_expert_cmd ||
        *export_cmd) {
      ddactor::setup_logging(log_level);
      ddactor::configure_torch_threads(config.run.threads);
      ddactor::install_stop_handler();
      if (*serve_cmd || *serve_expert_cmd) {
        int code = 0;
        ddactor::run_on_worker_thread([&] {
          code = *serve_cmd ? ddactor::serve_command(config)
                            : ddactor::serve_expert_command(config, serve_expert_index,
                                                            serve_expert_checkpoint);
        });
        return code;
      }
      if (*cluster_cmd) {
        int code = 0;
        ddactor::run_on_worker_thread([&] { code = ddactor::cluster_command(config); });
        return code;
      }
      if (*export_cmd) {
        int code = 0;
        ddactor::run_on_worker_thread([&] {
          code = ddactor::export_command(config, export_out, export_checkpoint,
                                         export_raw_weights);
        });
        return code;
      }
      if (*sample_cmd) {
        sample.out = out;
        sample.class_index = class_index;
        sample.prompts = prompts;
        sample.negative_prompt = negative_prompt;
        sample.steps = steps;
        sample.sampler = sampler;
        sample.cfg_scale = cfg;
        sample.seed = seed;
        sample.checkpoint = sample_checkpoint;
        sample.lora = sample_lora;
        int code = 0;
        ddactor::run_on_worker_thread([&] { code = ddactor::sample_command(config, sample); });
        return code;
      }
      eval.checkpoint = eval_checkpoint;
      int code = 0;
      ddactor::run_on_worker_thread([&] { code = ddactor::eval_command(config, eval); });
      return code;
    }
    (void) train;
    ddactor::setup_logging(log_level, config.run_dir() / "ddactor.log");
    return ddactor::train_command(config);
  } catch (const ddactor::work_stopped&) {
    spdlog::warn("stopped by {} before the work was done; nothing was written",
                 ddactor::stop_signal_name());
    return ddactor::stopped_exit_code();
  } catch (const std::exception& e) {
    if (spdlog::default_logger())
      spdlog::error("{}", ddactor::readable_error(e));
    else
      std::cerr << "ddactor: " << ddactor::readable_error(e) << "\n";
    return 1;
  }
}
