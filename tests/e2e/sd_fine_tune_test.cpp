// Multi-process tests of Stable Diffusion fine-tuning with the real binary: two ddactor peers on
// loopback fine-tune a tiny diffusers folder (the SD 1.x fixture parts, tests/models/sd/
// tiny_sd_folder.hpp) on a generated folder of captioned images, the whole UNet or LoRA adapters.
// The loss falls, both peers end with bit-identical weights, a peer resumes from its checkpoint,
// `ddactor sample` writes a PNG, and what the run wrote (the diffusers folder of a full fine-tune,
// the LoRA file) loads again and samples what the run's checkpoint samples. Broken folders are
// refused at the start naming the file and the key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <map>
#include <numeric>
#include <regex>

#include "runtime/checkpoint_files.hpp"
#include "runtime/cluster_assignment.hpp"
#include "runtime/image_io.hpp"
#include "runtime/safetensors.hpp"
#include "tests/e2e/checkpoint_compare.hpp"
#include "tests/e2e/process.hpp"
#include "tests/models/sd/tiny_sd_folder.hpp"

namespace ddactor::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// Epochs of a run and the epoch of its mid-run checkpoint (a run may train fewer: train_swarm).
constexpr int64_t epochs = 16;
constexpr int64_t checkpoint_every = 8;
// The whole UNet's loss falls fast enough to show in fewer epochs (seen: 1.19 -> 0.48 by the
// tenth); each epoch costs about 2 s.
constexpr int64_t unet_epochs = 10;
constexpr int64_t unet_checkpoint_every = 5;

// Eight 64 x 64 RGB images of two kinds, each with a caption: red-ish horizontal stripes and
// blue-ish vertical ones, so that the captions tell the model something.
void write_image_folder(const fs::path& folder) {
  fs::create_directories(folder);
  for (int i = 0; i < 8; ++i) {
    const bool red = i % 2 == 0;
    std::vector<uint8_t> hwc;
    for (int y = 0; y < 64; ++y)
      for (int x = 0; x < 64; ++x) {
        const int stripe = ((red ? y : x) / (4 + i)) % 2;
        hwc.push_back(static_cast<uint8_t>(red ? 150 + 100 * stripe : 20 + 10 * i));
        hwc.push_back(static_cast<uint8_t>(40 + 5 * i));
        hwc.push_back(static_cast<uint8_t>(red ? 30 : 120 + 120 * stripe));
      }
    const auto name = "image" + std::to_string(i);
    write_png(folder / (name + ".png"), hwc, 64, 64, 3);
    write_text_file(folder / (name + ".txt"),
                    red ? "a red photo with stripes" : "a blue picture of lines");
  }
}

// Every "| loss X" of a log, in order.
std::vector<double> logged_losses(const std::string& log) {
  static const std::regex loss(R"(\| loss ([0-9.]+))");
  std::vector<double> out;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), loss); it != std::sregex_iterator();
       ++it)
    out.push_back(std::stod((*it)[1].str()));
  return out;
}

double mean(const std::vector<double>& values, size_t from, size_t to) {
  return std::accumulate(values.begin() + static_cast<std::ptrdiff_t>(from),
                         values.begin() + static_cast<std::ptrdiff_t>(to), 0.0) /
         static_cast<double>(to - from);
}

// The tensors of a safetensors file whose names start with `prefix`, by name without it.
std::map<std::string, std::vector<std::byte>> tensors_of(const fs::path& file,
                                                         const std::string& prefix) {
  std::map<std::string, std::vector<std::byte>> out;
  for (auto& t : read_safetensors_file(file).tensors)
    if (t.name.starts_with(prefix))
      out[t.name.substr(prefix.size())] = std::move(t.data);
  return out;
}

// The largest difference of two PNGs' bytes (they must have the same size).
int largest_difference(const fs::path& a, const fs::path& b) {
  const auto x = decode_image_file(a), y = decode_image_file(b);
  EXPECT_EQ(x.width, y.width);
  EXPECT_EQ(x.height, y.height);
  EXPECT_EQ(x.pixels.size(), y.pixels.size());
  int most = 0;
  for (size_t i = 0; i < std::min(x.pixels.size(), y.pixels.size()); ++i)
    most = std::max(most, std::abs(int{x.pixels[i]} - int{y.pixels[i]}));
  return most;
}

class sd_fine_tune : public ::testing::Test {
 protected:
  temp_directory dir{::testing::UnitTest::GetInstance()->current_test_info()->name()};
  fs::path pipeline = dir.path() / "pipeline";
  fs::path images = dir.path() / "images";
  fs::path config = dir.path() / "sd.toml";
  uint16_t bootstrap_port = free_port();
  std::vector<std::unique_ptr<child_process>> peers;
  int64_t trained_epochs = 0;  // by the last train_swarm

  void SetUp() override {
    if (!tiny_sd::missing_fixtures().empty())
      return;
    tiny_sd::assemble(pipeline);
    write_image_folder(images);
    write_text_file(config,
                    "[run]\nname = \"sd\"\nthreads = 1\nseed = 5\n"
                    "[model]\npretrained = \"" + pipeline.string() + "\"\n"
                    "[data]\nsource = \"folder\"\npath = \"" + images.string() +
                      "\"\nresolution = 64\nbatch_size = 4\nprefetch = 2\nholdout_fraction = 0\n"
                    "[train]\nsteps = " + std::to_string(epochs) +
                      "\ntarget_batch_size = 8\nlr = 0.002\nwarmup_steps = 1\nema_decay = 0\n"
                      "log_every = 1\ncheckpoint_every = " + std::to_string(checkpoint_every) +
                      "\nkeep_checkpoints = 10\nsample_every = 0\ncaption_dropout = 0.1\n"
                    "[sample]\nsteps = 3\nper_class = 1\nsampler = \"ddim\"\ncfg_scale = 3.0\n"
                    "[network]\ngossip_interval = 0.3\nsuspect_after = 1.5\nremove_after = 3.0\n"
                    "heartbeat_interval = 0.2\nconnection_timeout = 1.5\nwait_for_peers = 2\n"
                    // Matchmaking ends as soon as both peers are in; the long window keeps a
                    // loaded machine from splitting a round into two groups of one (with 5 s,
                    // steps of 13 s under heavy load split a third of the rounds).
                    "[averaging]\nmatchmaking_time = 30.0\nallreduce_timeout = 10.0\n"
                    "chunk_elements = 65536\n");
  }

  fs::path run_dir(int i) const { return dir.path() / ("peer" + std::to_string(i)); }
  fs::path log(const std::string& name) const { return dir.path() / (name + ".log"); }

  std::vector<std::string> peer_args(int i, const std::vector<std::string>& extra) const {
    std::vector<std::string> args{"--config", config.string(), "--set",
                                  "run.dir=\"" + run_dir(i).string() + "\""};
    if (i == 0)
      args.insert(args.end(), {"--set", "network.listen=\"127.0.0.1:" +
                                          std::to_string(bootstrap_port) + "\""});
    else
      args.insert(args.end(), {"--set", "network.listen=\"127.0.0.1:0\"", "--set",
                               "network.initial_peers=[\"127.0.0.1:" +
                                 std::to_string(bootstrap_port) + "\"]"});
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  // Two peers train `steps` epochs together and both end with exit code 0.
  void train_swarm(std::vector<std::string> extra, int64_t steps = epochs) {
    extra.insert(extra.end(), {"--set", "train.steps=" + std::to_string(steps)});
    trained_epochs = steps;
    peers.clear();
    for (int i = 0; i < 2; ++i) {
      peers.push_back(std::make_unique<child_process>(DDACTOR_BINARY, peer_args(i, extra),
                                                      log("peer" + std::to_string(i))));
      if (i == 0) {
        ASSERT_TRUE(peers[0]->wait_for_output("listening for peers", 60s)) << peers[0]->output();
      }
    }
    for (int i = 0; i < 2; ++i) {
      // Within the e2e limit of 300 s: 16 epochs took up to 13 s each on an overloaded machine.
      const auto code = peers[static_cast<size_t>(i)]->wait_for(270s);
      ASSERT_TRUE(code.has_value()) << "peer " << i << " did not finish:\n"
                                    << peers[static_cast<size_t>(i)]->output();
      ASSERT_EQ(*code, 0) << peers[static_cast<size_t>(i)]->output();
    }
  }

  // The loss of the last four epochs is below `factor` times that of the first four, on each
  // peer.
  void expect_loss_falls(double factor) {
    for (int i = 0; i < 2; ++i) {
      const auto losses = logged_losses(peers[static_cast<size_t>(i)]->output());
      ASSERT_GE(losses.size(), static_cast<size_t>(trained_epochs))
        << peers[static_cast<size_t>(i)]->output();
      const double first = mean(losses, 0, 4), last = mean(losses, losses.size() - 4, losses.size());
      EXPECT_LT(last, factor * first) << "peer " << i << ": loss " << first << " -> " << last;
    }
  }

  // Both peers' checkpoints at `epoch` hold the same weights and optimizer state, byte for byte.
  void expect_identical_at(int64_t epoch) {
    const auto reference = tensors_of(checkpoint_path(run_dir(0), epoch), "");
    const auto other = tensors_of(checkpoint_path(run_dir(1), epoch), "");
    size_t compared = 0;
    for (const auto& [name, bytes] : reference) {
      if (!name.starts_with("model.") && !name.starts_with("optimizer."))
        continue;
      ASSERT_EQ(other.count(name), 1u) << name;
      EXPECT_TRUE(other.at(name) == bytes) << "the peers differ in " << name << " at epoch " << epoch;
      ++compared;
    }
    EXPECT_GT(compared, 0u);
  }

  // `ddactor sample` with the shared config and `extra`; returns the PNG it wrote.
  fs::path sample(const std::string& name, const std::vector<std::string>& extra) {
    const auto out = dir.path() / (name + ".png");
    std::vector<std::string> args{"sample", "--config", config.string(), "--prompt",
                                  "a red photo with stripes", "--seed", "11", "--out",
                                  out.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    EXPECT_EQ(run_ddactor(args, log(name), 120s), 0) << read_text_file(log(name));
    EXPECT_TRUE(fs::is_regular_file(out)) << read_text_file(log(name));
    return out;
  }
};

TEST_F(sd_fine_tune, two_peers_fine_tune_the_whole_unet_and_write_a_diffusers_folder) {
  SKIP_WITHOUT_TINY_SD();
  train_swarm({"--set", "train.checkpoint_every=" + std::to_string(unet_checkpoint_every)},
              unet_epochs);
  expect_loss_falls(0.8);  // seen: 0.98 -> 0.54 (means of four epochs)
  expect_identical_at(unet_checkpoint_every);
  expect_identical_at(unet_epochs);
  for (int i = 0; i < 2; ++i)
    EXPECT_NE(peers[static_cast<size_t>(i)]->output().find("group of 2"), std::string::npos);

  // The written folder holds the final weights: the UNet file equals the checkpoint's model.*,
  // with the same keys (the config and the other parts as they were).
  const auto written = run_dir(0) / "diffusers";
  const auto unet = tensors_of(written / "unet" / "diffusion_pytorch_model.safetensors", "");
  const auto trained = tensors_of(checkpoint_path(run_dir(0), unet_epochs), "model.");
  ASSERT_EQ(unet.size(), trained.size());
  for (const auto& [name, bytes] : trained) {
    ASSERT_EQ(unet.count(name), 1u) << name;
    EXPECT_TRUE(unet.at(name) == bytes) << name;
  }
  const auto pretrained_unet =
    tensors_of(pipeline / "unet" / "diffusion_pytorch_model.safetensors", "");
  EXPECT_FALSE(pretrained_unet == unet) << "training changed nothing";
  EXPECT_EQ(read_text_file(written / "unet" / "config.json"),
            read_text_file(pipeline / "unet" / "config.json"));
  EXPECT_TRUE(fs::exists(written / "model_index.json"));

  // Sampling: from the run's checkpoint, from the written folder as a pretrained model (it loads
  // as any diffusers folder does) and from the original folder.
  const auto from_checkpoint =
    sample("from_checkpoint", {"--set", "run.dir=\"" + run_dir(0).string() + "\""});
  const auto from_folder =
    sample("from_folder", {"--set", "model.pretrained=\"" + written.string() + "\"", "--set",
                           "run.dir=\"" + (dir.path() / "fresh").string() + "\""});
  const auto untrained =
    sample("untrained", {"--set", "run.dir=\"" + (dir.path() / "fresh").string() + "\""});
  // One 64 px image in a 2 px grid border, after its row's label (the prompt).
  const auto png = decode_image_file(from_checkpoint);
  const std::vector<std::string> label = {"a red photo with stripes"};
  EXPECT_EQ(png.width, row_label_column_width(label, 64, 2) + 68);
  EXPECT_EQ(png.height, 68);
  EXPECT_EQ(largest_difference(from_checkpoint, from_folder), 0);
  EXPECT_GT(largest_difference(from_checkpoint, untrained), 8);
}

TEST_F(sd_fine_tune, two_peers_train_lora_adapters_average_only_them_and_write_a_lora_file) {
  SKIP_WITHOUT_TINY_SD();
  train_swarm({"--set", "train.lora_rank=4", "--set", "train.lora_alpha=4", "--set",
               "train.lr=0.01"});
  // Adapters on the attention projections alone move a random tiny UNet less: seen 1.15 -> 0.98.
  expect_loss_falls(0.92);
  expect_identical_at(epochs);
  // Only the adapters are trained, so only they are in the checkpoint's model and averaged.
  const auto trained = tensors_of(checkpoint_path(run_dir(0), epochs), "model.");
  ASSERT_FALSE(trained.empty());
  for (const auto& [name, bytes] : trained)
    EXPECT_TRUE(name.ends_with(".lora.down.weight") || name.ends_with(".lora.up.weight")) << name;

  // The LoRA file has diffusers' keys and, applied to the pretrained folder alone, samples what
  // the run's checkpoint samples (up to the rounding of B * alpha / rank and back).
  const auto lora = run_dir(0) / "lora.safetensors";
  const auto file = tensors_of(lora, "");
  EXPECT_EQ(file.size(), trained.size());
  for (const auto& [name, bytes] : file)
    EXPECT_TRUE(name.starts_with("unet.") && trained.count(name.substr(5)) == 1) << name;
  const auto from_checkpoint =
    sample("from_checkpoint", {"--set", "run.dir=\"" + run_dir(0).string() + "\""});
  const auto from_lora_file =
    sample("from_lora_file", {"--set", "run.dir=\"" + (dir.path() / "fresh").string() + "\"",
                              "--lora", lora.string()});
  const auto untrained =
    sample("untrained", {"--set", "run.dir=\"" + (dir.path() / "fresh").string() + "\""});
  EXPECT_LE(largest_difference(from_checkpoint, from_lora_file), 1);
  EXPECT_GT(largest_difference(from_checkpoint, untrained), 8);
}

TEST_F(sd_fine_tune, a_peer_resumes_from_its_checkpoint) {
  SKIP_WITHOUT_TINY_SD();
  // A short run is enough to leave a checkpoint (what the training does is the tests' above).
  constexpr int64_t swarm_epochs = 4;
  const std::vector<std::string> lora{"--set", "train.lora_rank=2", "--set", "train.lr=0.01",
                                      "--set", "train.checkpoint_every=2"};
  train_swarm(lora, swarm_epochs);
  // Peer 0 alone, two epochs further: it starts from its last checkpoint, not from scratch.
  std::vector<std::string> alone{"--config", config.string(), "--set",
                                 "run.dir=\"" + run_dir(0).string() + "\"", "--set",
                                 "network.listen=\"127.0.0.1:0\"", "--set",
                                 "network.wait_for_peers=1", "--set",
                                 "train.steps=" + std::to_string(swarm_epochs + 2)};
  alone.insert(alone.end(), lora.begin(), lora.end());
  ASSERT_EQ(run_ddactor(alone, log("resumed"), 120s), 0)
    << read_text_file(log("resumed"));
  const auto out = read_text_file(log("resumed"));
  EXPECT_NE(out.find("resumed from " + checkpoint_path(run_dir(0), swarm_epochs).string()),
            std::string::npos)
    << out;
  EXPECT_NE(out.find("swarm epoch " + std::to_string(swarm_epochs)), std::string::npos) << out;
  EXPECT_EQ(out.find("epoch 1/"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(checkpoint_path(run_dir(0), swarm_epochs + 2))) << out;
  EXPECT_NE(out.find("latent cache: 8 of 8 images cached"), std::string::npos) << out;
}

// Several trainers in one peer fine-tune Stable Diffusion too (run.trainers): 2 trainers with
// batches of 2 (each a slice of the node's bucketed batch of 4, drawing noise, timesteps and
// caption dropout for the whole) end where 1 trainer with batches of 4 ends.
TEST_F(sd_fine_tune, two_trainers_train_lora_as_one_trainer_with_their_joint_batch) {
  SKIP_WITHOUT_TINY_SD();
  const auto train_alone = [&](const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> args{"--config",
                                  config.string(),
                                  "--set",
                                  "run.dir=\"" + (dir.path() / name).string() + "\"",
                                  "--set",
                                  "network.wait_for_peers=1",
                                  "--set",
                                  "train.lora_rank=2",
                                  "--set",
                                  "train.lr=0.01",
                                  "--set",
                                  "train.steps=4",
                                  "--set",
                                  "train.checkpoint_every=4"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_ddactor(args, log(name), 180s);
  };
  ASSERT_EQ(train_alone("two", {"--set", "run.trainers=2", "--set", "data.batch_size=2"}), 0)
    << read_text_file(log("two"));
  ASSERT_EQ(train_alone("one", {"--set", "data.batch_size=4"}), 0) << read_text_file(log("one"));
  const auto two_log = read_text_file(log("two"));
  EXPECT_NE(two_log.find("2 trainers in this peer"), std::string::npos) << two_log;
  const auto one = newest_checkpoint(dir.path() / "one");
  const auto two = newest_checkpoint(dir.path() / "two");
  EXPECT_EQ(one.metadata.at("step"), "4");
  EXPECT_EQ(two.metadata.at("step"), "4");
  const auto difference = compare_checkpoints(one, two, 1e-4f);
  EXPECT_GT(difference.compared, 2);
  std::printf("largest relative difference over %d tensors: %.3g\n", difference.compared,
              static_cast<double>(difference.largest));
}

// The DiT on the folder's VAE latents, conditioned on its CLIP text encoder (model.latent): a
// small DiT, sampled with the DiT's own sampler.
const std::vector<std::string> latent_dit_args = {
  "--set", "model.latent=true",     "--set", "model.hidden_size=32", "--set", "model.depth=2",
  "--set", "model.num_heads=2",     "--set", "model.patch_size=4",   "--set", "train.lr=0.003",
  "--set", "sample.sampler=\"euler\"", "--set", "sample.steps=4"};

std::vector<std::string> with_latent_dit(std::vector<std::string> args) {
  args.insert(args.end(), latent_dit_args.begin(), latent_dit_args.end());
  return args;
}

TEST_F(sd_fine_tune, two_peers_train_a_latent_dit_conditioned_on_the_text_encoder) {
  SKIP_WITHOUT_TINY_SD();
  train_swarm(latent_dit_args);
  expect_loss_falls(0.9);  // seen: 0.99 -> 0.75 (means of four epochs)
  expect_identical_at(checkpoint_every);
  expect_identical_at(epochs);
  const auto checkpoint = read_safetensors_file(checkpoint_path(run_dir(0), epochs));
  EXPECT_EQ(checkpoint.metadata.at("model.latent"), "true");
  EXPECT_EQ(checkpoint.metadata.at("model.conditioning"), "text_embedding");
  // The tiny VAE halves 64 px into 32 x 32 latents with 4 channels.
  EXPECT_EQ(checkpoint.metadata.at("model.image_size"), "32");
  EXPECT_EQ(checkpoint.metadata.at("model.in_channels"), "4");
  // Only the DiT is trained and averaged: no VAE or text-encoder weight is in the checkpoint.
  for (const auto& tensor : checkpoint.tensors)
    EXPECT_EQ(tensor.name.find("encoder"), std::string::npos) << tensor.name;

  // `ddactor sample` decodes the DiT's latents into a 64 px image per prompt; the negative prompt
  // reaches the model (guidance's null branch).
  const auto run = std::vector<std::string>{"--set", "run.dir=\"" + run_dir(0).string() + "\""};
  const auto red = sample("latent_red", with_latent_dit(run));
  const auto png = decode_image_file(red);
  const std::vector<std::string> label = {"a red photo with stripes"};
  EXPECT_EQ(png.width, row_label_column_width(label, 64, 2) + 68);
  EXPECT_EQ(png.height, 68);
  auto negative_args = with_latent_dit(run);
  negative_args.insert(negative_args.end(), {"--negative-prompt", "a blue picture of lines"});
  const auto negative = sample("latent_negative", negative_args);
  EXPECT_GT(largest_difference(red, negative), 0) << "the negative prompt changed nothing";
}

TEST_F(sd_fine_tune, cluster_on_latents_and_train_an_expert_on_its_cluster) {
  SKIP_WITHOUT_TINY_SD();
  const auto root = dir.path() / "ddm";
  const auto ddm_args = with_latent_dit(
    {"--config", config.string(), "--set", "run.dir=\"" + root.string() + "\"", "--set",
     "ddm.num_experts=2", "--set", "ddm.fine_clusters=2", "--set", "ddm.feature_dims=4"});
  auto cluster_args = ddm_args;
  cluster_args.insert(cluster_args.begin(), "cluster");
  ASSERT_EQ(run_ddactor(cluster_args, log("cluster"), 120s), 0) << read_text_file(log("cluster"));
  const auto clusters = read_cluster_assignment(root / "clusters.safetensors");
  EXPECT_NE(clusters.features.find("VAE latents"), std::string::npos) << clusters.features;
  ASSERT_EQ(clusters.assignment.size(), 8u);
  // The red striped images (even) and the blue ones (odd) differ most in colour, which the
  // latents keep: each kind is one cluster.
  for (size_t i = 0; i < 8; ++i)
    EXPECT_EQ(clusters.assignment[i], clusters.assignment[i % 2]) << "image " << i;
  EXPECT_NE(clusters.assignment[0], clusters.assignment[1]);

  // With ddm.features a TorchScript module (made by PyTorch, where it is installed) clusters the
  // same images' pixels instead.
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0) {
    const auto modules = dir.path() / "modules";
    const std::string make = "/usr/bin/python3 '" DDACTOR_SOURCE_DIR
                             "/tests/tools/make_feature_module.py' '" +
                             modules.string() + "' >/dev/null 2>&1";
    ASSERT_EQ(std::system(make.c_str()), 0);
    auto scripted = cluster_args;
    scripted.insert(scripted.end(),
                    {"--set", "ddm.features=\"" + (modules / "rgb_maps.pt").string() + "\"",
                     "--set", "ddm.features_resolution=16", "--set",
                     "ddm.assignments=\"" + (dir.path() / "scripted.safetensors").string() + "\""});
    ASSERT_EQ(run_ddactor(scripted, log("scripted"), 120s), 0) << read_text_file(log("scripted"));
    const auto by_module = read_cluster_assignment(dir.path() / "scripted.safetensors");
    EXPECT_NE(by_module.features.find("torchscript: rgb_maps.pt"), std::string::npos)
      << by_module.features;
    EXPECT_EQ(by_module.assignment.size(), 8u);
    EXPECT_EQ(by_module.data, clusters.data);  // the same examples, the same fingerprint
  }

  // Expert 1 trains alone on its four images, reading the latents the cluster command cached.
  auto expert_args = ddm_args;
  expert_args.insert(expert_args.end(), {"--set", "ddm.expert=1", "--set", "train.steps=2",
                                         "--set", "train.target_batch_size=0"});
  ASSERT_EQ(run_ddactor(expert_args, log("expert"), 120s), 0) << read_text_file(log("expert"));
  const auto out = read_text_file(log("expert"));
  EXPECT_NE(out.find("DDM expert 1: 4 of 8 training images"), std::string::npos) << out;
  EXPECT_NE(out.find("latent cache: 8 of 8 images cached"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(checkpoint_path(root / "expert-1", 2))) << out;
}

// A broken pretrained folder stops `ddactor` at the start with one error naming the file and
// the key (or the missing part); nothing trains.
TEST_F(sd_fine_tune, broken_folders_are_refused_naming_the_file_and_the_key) {
  SKIP_WITHOUT_TINY_SD();
  const auto run = [&](const std::string& name) {
    const int code =
      run_ddactor({"--config", config.string(), "--set",
                   "run.dir=\"" + (dir.path() / ("run_" + name)).string() + "\""},
                  log(name), 60s);
    return std::pair{code, read_text_file(log(name))};
  };
  const auto expect_refused = [&](const std::string& name,
                                  const std::vector<std::string>& words) {
    const auto [code, out] = run(name);
    EXPECT_NE(code, 0) << name << ":\n" << out;
    for (const auto& w : words)
      EXPECT_NE(out.find(w), std::string::npos) << name << ": no \"" << w << "\" in\n" << out;
    EXPECT_EQ(out.find("frame #"), std::string::npos) << "a stack trace:\n" << out;
    EXPECT_EQ(out.find("| loss"), std::string::npos) << out;
  };

  // A missing part.
  fs::rename(pipeline / "text_encoder", dir.path() / "text_encoder.away");
  expect_refused("missing_part", {(pipeline / "text_encoder").string()});
  fs::rename(dir.path() / "text_encoder.away", pipeline / "text_encoder");

  // A truncated weights file.
  const auto vae_weights = pipeline / "vae" / "diffusion_pytorch_model.safetensors";
  auto bytes = read_text_file(vae_weights);
  fs::remove(vae_weights);
  write_text_file(vae_weights, bytes.substr(0, bytes.size() / 2));
  expect_refused("truncated", {vae_weights.string()});
  fs::remove(vae_weights);
  fs::create_symlink(tiny_sd::fixtures() / "tiny_vae" / "diffusion_pytorch_model.safetensors",
                     vae_weights);

  // A tensor of the wrong shape: the text encoder's token embedding, one row short.
  {
    const auto file = pipeline / "text_encoder" / "model.safetensors";
    auto content = read_safetensors_file(file);
    const std::string key = "text_model.embeddings.token_embedding.weight";
    for (auto& t : content.tensors)
      if (t.name == key) {
        t.data.resize(t.data.size() - static_cast<size_t>(t.shape[1]) * sizeof(float));
        t.shape[0] -= 1;
      }
    fs::remove(file);
    write_safetensors_file(file, content);
    expect_refused("wrong_shape", {file.string(), key});
    fs::remove(file);
    fs::create_symlink(tiny_sd::fixtures() / "tiny_clip_text" / "model.safetensors", file);
  }

  // An unknown block type in the UNet's config.
  {
    const auto file = pipeline / "unet" / "config.json";
    auto text = read_text_file(file);
    const auto at = text.find("\"CrossAttnDownBlock2D\"");
    ASSERT_NE(at, std::string::npos);
    text.replace(at, std::string("\"CrossAttnDownBlock2D\"").size(), "\"SimpleCrossAttnDownBlock2D\"");
    fs::remove(file);
    write_text_file(file, text);
    expect_refused("unknown_block", {file.string(), "down_block_types", "SimpleCrossAttnDownBlock2D"});
  }
}

} // namespace
} // namespace ddactor::testing
