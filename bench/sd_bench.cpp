// ddactor_sd_bench: what fine-tuning Stable Diffusion costs on a CPU peer and on the wire.
//
//   step        One training step of the full-size SD 1.5 UNet (its config from the SD 1.x
//               manifests, random weights) at a 32 x 32 latent (256 px), batch 1, a 77 x 768
//               text context: forward, DDPM loss, backward and an AdamW step over what is trained.
//               Three variants, each in a process of its own so that its peak RSS is its own:
//               the whole UNet, LoRA rank 8 on to_q/to_k/to_v/to_out.0 (the UNet frozen), and the
//               whole UNet with activation checkpointing. Prints s/step (median of --steps after
//               one warm-up step) and peak RSS, and each against the whole UNet's.
//   bytes       What one averaging round moves for SD 1.5, whole UNet against LoRA rank 8: the
//               averaged values (counted from the manifest's shapes), bytes per codec, what each
//               peer of a group of n sends (the butterfly's 2(n-1)/n of the vector) and that
//               time at --rate-mbit (the bandwidth bound; a measured round among peers on shaped
//               links is ddactor_allreduce_bench --megabytes <the LoRA size>).
//   throughput  Training samples/s of one `ddactor` peer fine-tuning the tiny SD pipeline
//               (tests/models/sd/tiny_sd_folder.hpp, latents cached), and of a latent DiT on
//               the same latents (model.latent), against the DiT quickstart
//               (config/quickstart.toml), all --steps steps, alternated --repeats times.
//
// Nothing is asserted; the figures are printed.
//
//   ddactor_sd_bench step [--steps 2] [--latent 32] [--threads 0]
//   ddactor_sd_bench bytes [--rank 8] [--rate-mbit 100]
//   ddactor_sd_bench throughput [--steps 60] [--repeats 2]
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <regex>

#include "bench/spawned_process.hpp"
#include "models/sd/low_rank_adapters.hpp"
#include "models/sd/unet2d_condition.hpp"
#include "runtime/image_io.hpp"
#include "tests/models/sd/tiny_sd_folder.hpp"

namespace {

using namespace ddactor;
using clock_type = std::chrono::steady_clock;
namespace fs = std::filesystem;

fs::path manifests() { return fs::path(DDACTOR_SD1_FIXTURES) / "manifests"; }

double peak_rss_gib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / (1024.0 * 1024.0);  // ru_maxrss is in KiB
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// ---- step ------------------------------------------------------------------------------------

// One variant in this process; prints "RESULT <variant> <s/step> <peak GiB> <trained values>".
int step_variant(const std::string& variant, int steps, int64_t latent) {
  const auto config_file = manifests() / "sd15_unet_config.json";
  memory_saving_options memory;
  memory.checkpoint_activations = variant == "checkpointed";
  torch::manual_seed(0);
  unet2d_condition unet(unet2d_condition_config::from_file(config_file), memory);
  unet->train();
  std::vector<torch::Tensor> trained;
  low_rank_adapters adapters{nullptr};
  if (variant == "lora") {
    for (auto& p : unet->parameters())
      p.set_requires_grad(false);
    adapters = low_rank_adapters(find_adapter_sites(*unet, default_lora_targets()), 8, 8.0);
    adapters->attach_to(*unet);
    trained = adapters->parameters();
  } else {
    trained = unet->parameters();
  }
  int64_t values = 0;
  for (const auto& p : trained)
    values += p.numel();
  torch::optim::AdamW optimizer(trained, torch::optim::AdamWOptions(1e-5));
  std::vector<double> seconds;
  for (int i = 0; i <= steps; ++i) {
    const auto x0 = torch::randn({1, 4, latent, latent});
    const auto noise = torch::randn_like(x0);
    const auto context = torch::randn({1, 77, 768});
    const auto t = torch::randint(0, 1000, {1}, torch::kLong);
    const auto start = clock_type::now();
    optimizer.zero_grad();
    const auto x_t = 0.7 * x0 + 0.71 * noise;  // the schedule's arithmetic is negligible here
    auto loss = (unet->forward(x_t, t, context) - noise).pow(2).mean();
    loss.backward();
    optimizer.step();
    const double s = std::chrono::duration<double>(clock_type::now() - start).count();
    std::fprintf(stderr, "  %s step %d: %.1f s (loss %.4f)%s\n", variant.c_str(), i, s,
                 loss.item<double>(), i == 0 ? ", warm-up" : "");
    if (i > 0)
      seconds.push_back(s);
  }
  std::printf("RESULT %s %.3f %.3f %lld\n", variant.c_str(), median(seconds), peak_rss_gib(),
              static_cast<long long>(values));
  return 0;
}

int step_bench(const std::string& self, int steps, int64_t latent, int threads) {
  std::printf("SD 1.5 UNet training step, latent %lldx%lld (%lld px), batch 1, 77x768 context, "
              "AdamW; %d measured step(s) after a warm-up, %d LibTorch threads\n",
              static_cast<long long>(latent), static_cast<long long>(latent),
              static_cast<long long>(latent * 8), steps, threads > 0 ? threads : torch::get_num_threads());
  struct row {
    std::string variant;
    double seconds = 0, gib = 0;
    long long values = 0;
  };
  std::vector<row> rows;
  const auto logs = fs::temp_directory_path() / ("ddactor_sd_bench_" + std::to_string(::getpid()));
  for (const std::string variant : {"full", "lora", "checkpointed"}) {
    spawned_process child(self, {"step-one", "--variant", variant, "--steps", std::to_string(steps),
                                 "--latent", std::to_string(latent), "--threads",
                                 std::to_string(threads)},
                          logs / (variant + ".log"));
    const auto code = child.wait_for(std::chrono::hours(2));
    const auto out = child.output();
    std::fputs(out.c_str(), stderr);
    std::smatch m;
    static const std::regex result(R"(RESULT (\S+) (\S+) (\S+) (\S+))");
    if (!code || *code != 0 || !std::regex_search(out, m, result)) {
      std::printf("  %-13s failed (exit %d)\n", variant.c_str(), code ? *code : -1);
      continue;
    }
    rows.push_back({variant, std::stod(m[2]), std::stod(m[3]), std::stoll(m[4])});
  }
  fs::remove_all(logs);
  std::printf("%-13s %14s %10s %14s %12s %12s\n", "variant", "trained", "s/step", "peak RSS GiB",
              "time vs full", "RSS vs full");
  for (const auto& r : rows) {
    const auto& full = rows.front();
    std::printf("%-13s %14lld %10.2f %14.2f %12.2f %12.2f\n", r.variant.c_str(), r.values,
                r.seconds, r.gib, r.seconds / full.seconds, r.gib / full.gib);
  }
  return rows.size() == 3 ? 0 : 1;
}

// ---- bytes -----------------------------------------------------------------------------------

int bytes_bench(int64_t rank, double rate_mbit) {
  std::ifstream in(manifests() / "sd15_unet_state_dict_shapes.json");
  if (!in)
    throw std::runtime_error((manifests() / "sd15_unet_state_dict_shapes.json").string() +
                             " is absent");
  const auto shapes = nlohmann::json::parse(in);
  int64_t full = 0, lora = 0, sites = 0;
  for (const auto& [key, shape] : shapes.items()) {
    int64_t n = 1;
    for (const auto& d : shape)
      n *= d.get<int64_t>();
    full += n;
    // The default LoRA targets: the four attention projections of every transformer block.
    for (const std::string target : {".to_q.weight", ".to_k.weight", ".to_v.weight",
                                     ".to_out.0.weight"})
      if (key.ends_with(target) && shape.size() == 2) {
        lora += rank * (shape[0].get<int64_t>() + shape[1].get<int64_t>());
        ++sites;
      }
  }
  std::printf("SD 1.5 UNet: %lld values averaged for a full fine-tune; LoRA rank %lld on "
              "to_q/to_k/to_v/to_out.0 (%lld layers): %lld values (%.2f%%)\n",
              static_cast<long long>(full), static_cast<long long>(rank),
              static_cast<long long>(sites), static_cast<long long>(lora), 100.0 * lora / full);
  // Bytes per value on the wire (int8 blockwise: one byte plus a float32 scale per 256 values).
  const std::vector<std::pair<std::string, double>> codecs = {
    {"float32", 4.0}, {"fp16/bf16", 2.0}, {"int8 blockwise", 1.0 + 4.0 / 256}};
  const double bytes_per_second = rate_mbit * 1e6 / 8;
  std::printf("%-15s %12s %12s %9s | bytes each peer sends per round (2(n-1)/n) and that time at "
              "%.0f Mbit/s\n",
              "codec", "full MB", "LoRA MB", "ratio", rate_mbit);
  for (const auto& [name, bytes] : codecs) {
    const double f = full * bytes / 1e6, l = lora * bytes / 1e6;
    std::printf("%-15s %12.1f %12.2f %9.0fx |", name.c_str(), f, l, f / l);
    for (int n : {2, 4, 8}) {
      const double share = 2.0 * (n - 1) / n;
      std::printf("  n=%d: full %.0f MB %.0f s, LoRA %.1f MB %.2f s;", n, f * share,
                  f * share * 1e6 / bytes_per_second, l * share, l * share * 1e6 / bytes_per_second);
    }
    std::printf("\n");
  }
  std::printf("(a measured LoRA round: ddactor_allreduce_bench --peers 4 --megabytes %.1f "
              "--modes shaped --rate-mbit %.0f --delay-ms 50)\n",
              lora * 4.0 / 1e6, rate_mbit);
  return 0;
}

// ---- throughput ------------------------------------------------------------------------------

// The mean of every "N samples/s" a run logged after its first line (start-up excluded).
double logged_samples_per_second(const std::string& log) {
  static const std::regex rate(R"(\| ([0-9.]+) samples/s)");
  std::vector<double> rates;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), rate); it != std::sregex_iterator();
       ++it)
    rates.push_back(std::stod((*it)[1].str()));
  if (rates.size() < 2)
    return 0;
  double sum = 0;
  for (size_t i = 1; i < rates.size(); ++i)
    sum += rates[i];
  return sum / static_cast<double>(rates.size() - 1);
}

int throughput_bench(int steps, int repeats) {
  if (const auto why = tiny_sd::missing_fixtures(); !why.empty())
    throw std::runtime_error(why);
  const auto root = fs::temp_directory_path() / ("ddactor_sd_throughput_" + std::to_string(::getpid()));
  fs::remove_all(root);
  tiny_sd::assemble(root / "pipeline");
  fs::create_directories(root / "images");
  // 64 captioned 64 x 64 images.
  for (int i = 0; i < 64; ++i) {
    std::vector<uint8_t> hwc;
    for (int y = 0; y < 64; ++y)
      for (int x = 0; x < 64; ++x)
        for (int c = 0; c < 3; ++c)
          hwc.push_back(static_cast<uint8_t>((i * 37 + x * 3 + y * 5 + c * 60) % 256));
    write_png(root / "images" / ("img" + std::to_string(i) + ".png"), hwc, 64, 64, 3);
    tiny_sd::write_file(root / "images" / ("img" + std::to_string(i) + ".txt"),
                        i % 2 ? "a red photo with stripes" : "a blue picture of lines");
  }
  const auto every = std::to_string(std::max(1, steps / 6));
  const std::vector<std::string> common{
    "--set", "train.steps=" + std::to_string(steps), "--set", "train.log_every=" + every,
    "--set", "train.checkpoint_every=100000", "--set", "train.sample_every=0", "--set", "run.threads=2"};
  struct variant {
    std::string name;
    std::vector<std::string> args;
  };
  std::ofstream(root / "sd.toml")
    << "[run]\nname = \"sd\"\n[model]\npretrained = \"" << (root / "pipeline").string()
    << "\"\n[data]\nsource = \"folder\"\npath = \"" << (root / "images").string()
    << "\"\nresolution = 64\nbatch_size = 16\nholdout_fraction = 0\n[train]\nlr = 0.0001\n";
  const std::vector<variant> variants = {
    {"DiT quickstart (Fashion-MNIST 28 px, batch 128)",
     {"--config", fs::path(DDACTOR_SOURCE_DIR "/config/quickstart.toml").string()}},
    {"tiny SD full (64 px -> 32x32x4 latents, batch 16)", {"--config", (root / "sd.toml").string()}},
    {"tiny SD LoRA rank 4", {"--config", (root / "sd.toml").string(), "--set", "train.lora_rank=4"}},
    // The quickstart's DiT shape on the same latents (model.latent): what the latent path costs
    // a DiT, against the UNet above.
    {"latent DiT (quickstart shape, 32x32x4 latents, CLIP)",
     {"--config", (root / "sd.toml").string(), "--set", "model.latent=true", "--set",
      "model.hidden_size=128", "--set", "model.depth=4", "--set", "model.num_heads=4", "--set",
      "model.patch_size=4", "--set", "sample.sampler=\"euler\""}},
  };
  std::vector<std::vector<double>> rates(variants.size());
  for (int r = 0; r < repeats; ++r)
    for (size_t v = 0; v < variants.size(); ++v) {
      auto args = variants[v].args;
      args.insert(args.end(), common.begin(), common.end());
      const auto run = root / ("run" + std::to_string(r) + "_" + std::to_string(v));
      args.insert(args.end(), {"--set", "run.dir=\"" + run.string() + "\""});
      spawned_process child(DDACTOR_BINARY, args, root / ("log" + std::to_string(v)));
      const auto code = child.wait_for(std::chrono::minutes(20));
      const double rate = logged_samples_per_second(child.output());
      if (!code || *code != 0 || rate <= 0) {
        std::fprintf(stderr, "%s failed:\n%s\n", variants[v].name.c_str(), child.output().c_str());
        continue;
      }
      rates[v].push_back(rate);
      fs::remove_all(run);
    }
  fs::remove_all(root);
  std::printf("training throughput of one ddactor peer, %d steps, median of %d runs each "
              "(alternated), 2 LibTorch threads\n",
              steps, repeats);
  std::printf("%-52s %12s %14s\n", "run", "samples/s", "vs quickstart");
  for (size_t v = 0; v < variants.size(); ++v) {
    const double m = median(rates[v]);
    std::printf("%-52s %12.1f %14.3f\n", variants[v].name.c_str(), m,
                m / std::max(1e-9, median(rates[0])));
  }
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"ddactor_sd_bench: Stable Diffusion fine-tuning costs"};
  app.require_subcommand(1);
  int steps = 2;
  int64_t latent = 32;
  int threads = 0;
  std::string variant = "full";
  auto* step = app.add_subcommand("step", "SD 1.5 UNet training step: full, LoRA, checkpointed");
  step->add_option("--steps", steps, "measured steps per variant")->capture_default_str();
  step->add_option("--latent", latent, "latent side (32 = 256 px)")->capture_default_str();
  step->add_option("--threads", threads, "LibTorch threads (0: its default)");
  auto* step_one = app.add_subcommand("step-one", "one variant (what `step` runs per process)");
  step_one->add_option("--variant", variant)->check(CLI::IsMember({"full", "lora", "checkpointed"}));
  step_one->add_option("--steps", steps);
  step_one->add_option("--latent", latent);
  step_one->add_option("--threads", threads);
  int64_t rank = 8;
  double rate_mbit = 100;
  auto* bytes = app.add_subcommand("bytes", "bytes per averaging round, full vs LoRA");
  bytes->add_option("--rank", rank, "LoRA rank")->capture_default_str();
  bytes->add_option("--rate-mbit", rate_mbit, "link rate for the bound")->capture_default_str();
  int throughput_steps = 60, repeats = 2;
  auto* throughput = app.add_subcommand("throughput", "tiny SD fine-tune vs DiT quickstart");
  throughput->add_option("--steps", throughput_steps)->capture_default_str();
  throughput->add_option("--repeats", repeats)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    if (threads > 0)
      torch::set_num_threads(threads);
    if (*step)
      return step_bench(fs::canonical("/proc/self/exe"), steps, latent, threads);
    if (*step_one)
      return step_variant(variant, steps, latent);
    if (*bytes)
      return bytes_bench(rank, rate_mbit);
    return throughput_bench(throughput_steps, repeats);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ddactor_sd_bench: %s\n", e.what());
    return 1;
  }
}
