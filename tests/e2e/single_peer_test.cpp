// End-to-end tests of one ddactor peer: the real binary trains a tiny DiT on Fashion-MNIST, is
// stopped with Ctrl-C (SIGINT), resumes, survives injected crashes of its trainer and data
// loader, and samples from its checkpoints.
#include <gtest/gtest.h>

#include <csignal>

#include "runtime/checkpoint_files.hpp"
#include "runtime/image_io.hpp"
#include "runtime/safetensors.hpp"
#include "tests/e2e/process.hpp"

namespace ddactor::testing {
namespace {

using namespace std::chrono_literals;

int64_t checkpoint_step(const std::filesystem::path& file) {
  return std::stoll(read_safetensors_file(file).metadata.at("step"));
}

int64_t newest_step(const std::filesystem::path& run_dir) {
  auto files = list_checkpoints(run_dir);
  return files.empty() ? -1 : files.back().step;
}

class single_peer : public ::testing::Test {
 protected:
  temp_directory dir{::testing::UnitTest::GetInstance()->current_test_info()->name()};
  std::filesystem::path run_dir = dir.path() / "run";
  std::filesystem::path config = dir.path() / "run.toml";
  std::filesystem::path log(const std::string& name) { return dir.path() / (name + ".log"); }
};

TEST_F(single_peer, trains_checkpoints_resumes_and_samples) {
  write_text_file(config, tiny_run_config(run_dir, 30));
  ASSERT_EQ(run_ddactor({"--config", config.string()}, log("first")), 0)
    << read_text_file(log("first"));
  auto first = read_text_file(log("first"));
  EXPECT_NE(first.find("step 30/30"), std::string::npos) << first;
  EXPECT_NE(first.find("samples/s"), std::string::npos);
  EXPECT_NE(first.find("ETA"), std::string::npos);
  auto files = list_checkpoints(run_dir);
  ASSERT_EQ(files.size(), 3u);  // 10, 20, 30 kept (keep_checkpoints = 3)
  EXPECT_EQ(files.back().step, 30);
  EXPECT_EQ(checkpoint_step(files.back().path), 30);
  EXPECT_TRUE(std::filesystem::exists(run_dir / "samples" / "latest.png"));
  EXPECT_TRUE(std::filesystem::exists(run_dir / "config.toml"));

  // Resume: same run, a higher step target.
  ASSERT_EQ(run_ddactor({"--config", config.string(), "--set", "train.steps=45"}, log("second")),
            0);
  auto second = read_text_file(log("second"));
  EXPECT_NE(second.find("resumed from"), std::string::npos) << second;
  EXPECT_NE(second.find("starting at step 30"), std::string::npos) << second;
  EXPECT_EQ(second.find("step 5/45"), std::string::npos) << "did not resume: " << second;
  EXPECT_EQ(newest_step(run_dir), 45);
  auto content = read_safetensors_file(list_checkpoints(run_dir).back().path);
  EXPECT_NE(content.find("ema.final_layer.linear.weight"), nullptr);
  EXPECT_NE(content.find("optimizer.exp_avg"), nullptr);
  // 45 steps x 16 samples in a 60000-image epoch: epoch 0, position 720.
  EXPECT_EQ(content.metadata.at("data_epoch"), "0");
  EXPECT_EQ(content.metadata.at("data_position"), "720");

  // Python can read the checkpoint (a spec reader on numpy, handing tensors to PyTorch).
  auto python_log = log("python");
  auto reader = std::filesystem::path(DDACTOR_SOURCE_DIR) / "tests/tools/read_safetensors.py";
  if (std::system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") == 0) {
    child_process python("/usr/bin/python3", {reader.string(), files.back().path.string()},
                         python_log);
    ASSERT_EQ(python.wait_for(60s), 0) << python.output();
    EXPECT_NE(python.output().find("\"model.final_layer.linear.weight\""), std::string::npos)
      << python.output();
  }

  // Sample one class from the newest checkpoint.
  auto grid = dir.path() / "grid.png";
  ASSERT_EQ(run_ddactor({"sample", "--config", config.string(), "--out", grid.string(),
                         "--class", "3", "--count", "4", "--steps", "2"},
                        log("sample")),
            0)
    << read_text_file(log("sample"));
  auto image = decode_image_file(grid);
  // 4 images of 28x28 in one row with 2 px padding, after the row's label (class 3's name).
  EXPECT_EQ(image.height, 28 + 2 * 2);
  const std::vector<std::string> label = {"Dress"};
  EXPECT_EQ(image.width, row_label_column_width(label, 28, 2) + 4 * 28 + 5 * 2);
  EXPECT_GT(row_label_column_width(label, 28, 2), 0);
}

TEST_F(single_peer, ctrl_c_checkpoints_and_a_restart_resumes) {
  write_text_file(config, tiny_run_config(run_dir, 100000));
  child_process peer(DDACTOR_BINARY, {"--config", config.string()}, log("run"));
  ASSERT_TRUE(peer.wait_for_output("step 15/", 120s)) << peer.output();
  peer.send_signal(SIGINT);
  auto code = peer.wait_for(60s);
  ASSERT_TRUE(code.has_value()) << "did not stop after SIGINT:\n" << peer.output();
  EXPECT_EQ(*code, 0) << peer.output();
  EXPECT_NE(peer.output().find("stopping after a checkpoint"), std::string::npos);
  auto stopped_at = newest_step(run_dir);
  EXPECT_GE(stopped_at, 15);

  ASSERT_EQ(run_ddactor({"--config", config.string(), "--set",
                         "train.steps=" + std::to_string(stopped_at + 5)},
                        log("resume")),
            0);
  auto resumed = read_text_file(log("resume"));
  EXPECT_NE(resumed.find("starting at step " + std::to_string(stopped_at)), std::string::npos)
    << resumed;
  EXPECT_EQ(newest_step(run_dir), stopped_at + 5);
}

TEST_F(single_peer, supervisor_restarts_a_crashed_trainer_and_data_loader) {
  write_text_file(config, tiny_run_config(run_dir, 40));
  ASSERT_EQ(run_ddactor({"--config", config.string(), "--set", "debug.crash_trainer_at_step=15",
                         "--set", "debug.crash_loader_after_batches=30"},
                        log("crash")),
            0)
    << read_text_file(log("crash"));
  auto out = read_text_file(log("crash"));
  EXPECT_NE(out.find("injected trainer crash"), std::string::npos) << out;
  EXPECT_NE(out.find("trainer restarted"), std::string::npos) << out;
  EXPECT_NE(out.find("injected data loader crash"), std::string::npos) << out;
  EXPECT_NE(out.find("data_loader restarted"), std::string::npos) << out;
  // The restarted trainer resumed from the step-10 checkpoint and went on to the end.
  EXPECT_NE(out.find("starting at step 10"), std::string::npos) << out;
  EXPECT_EQ(newest_step(run_dir), 40);
}

TEST_F(single_peer, trains_on_an_image_folder_with_captions_and_samples_a_prompt) {
  auto images = dir.path() / "images";
  std::filesystem::create_directories(images);
  // 24 tiny pictures of two kinds, a corrupt PNG and a caption without its image.
  for (int i = 0; i < 24; ++i) {
    bool red = i % 2 == 0;
    std::vector<uint8_t> pixels(16 * 16 * 3, 255);
    for (int y = 4; y < 12; ++y)
      for (int x = 4; x < 12; ++x) {
        auto* p = &pixels[static_cast<size_t>((y * 16 + x) * 3)];
        p[0] = red ? 220 : 20;
        p[1] = 20;
        p[2] = red ? 20 : 220;
      }
    auto name = "img" + std::to_string(i);
    write_png(images / (name + ".png"), pixels, 16, 16, 3);
    write_text_file(images / (name + ".txt"), red ? "a red square" : "a blue square");
  }
  write_text_file(images / "broken.png", "this is not a png");
  write_text_file(images / "broken.txt", "a broken picture");
  write_text_file(images / "orphan.txt", "a caption without an image");
  write_text_file(config, "[run]\nname = \"folder\"\ndir = \"" + run_dir.string() +
                            "\"\nthreads = 1\n[model]\nhidden_size = 32\ndepth = 1\n"
                            "num_heads = 2\npatch_size = 4\ntext_layers = 1\n"
                            "text_max_bytes = 16\n[data]\nsource = \"folder\"\npath = \"" +
                            images.string() +
                            "\"\nresolution = 16\nbatch_size = 8\nholdout_fraction = 0.1\n"
                            "[train]\nsteps = 12\nlog_every = 4\ncheckpoint_every = 6\n"
                            "[sample]\nsteps = 2\nper_class = 2\n");
  ASSERT_EQ(run_ddactor({"--config", config.string()}, log("train")), 0)
    << read_text_file(log("train"));
  auto out = read_text_file(log("train"));
  EXPECT_NE(out.find("2 files of"), std::string::npos) << out;  // the corrupt PNG, the orphan
  EXPECT_NE(out.find("22 training and 2 held-out images (3x16x16)"), std::string::npos) << out;
  EXPECT_EQ(newest_step(run_dir), 12);
  auto grid = dir.path() / "prompt.png";
  ASSERT_EQ(run_ddactor({"sample", "--config", config.string(), "--out", grid.string(),
                         "--prompt", "a red square", "--count", "3"},
                        log("sample")),
            0)
    << read_text_file(log("sample"));
  auto image = decode_image_file(grid);
  const std::vector<std::string> label = {"a red square"};
  EXPECT_EQ(image.width, row_label_column_width(label, 16, 2) + 3 * 16 + 4 * 2);
  EXPECT_EQ(image.channels, 3);
  // A class index makes no sense for a caption model: a clear error, exit code 1.
  EXPECT_EQ(run_ddactor({"sample", "--config", config.string(), "--out", grid.string(),
                         "--class", "1"},
                        log("bad_sample")),
            1);
  EXPECT_NE(read_text_file(log("bad_sample")).find("caption-conditioned"), std::string::npos);
}

TEST_F(single_peer, bad_config_names_file_line_and_key) {
  write_text_file(config, "[train]\nsteps = 10\nlr = -1.0\n");
  ASSERT_EQ(run_ddactor({"check-config", config.string()}, log("check")), 2);
  auto out = read_text_file(log("check"));
  EXPECT_NE(out.find(config.string() + ":3:"), std::string::npos) << out;
  EXPECT_NE(out.find("train.lr"), std::string::npos) << out;

  write_text_file(config, tiny_run_config(run_dir, 5));
  ASSERT_EQ(run_ddactor({"check-config", config.string()}, log("check_ok")), 0);
  EXPECT_NE(read_text_file(log("check_ok")).find("is valid"), std::string::npos);
}

TEST_F(single_peer, corrupt_newest_checkpoint_is_skipped_on_resume) {
  write_text_file(config, tiny_run_config(run_dir, 20));
  ASSERT_EQ(run_ddactor({"--config", config.string()}, log("first")), 0);
  // Truncate the newest checkpoint as a crash of a non-atomic writer would have.
  auto newest = list_checkpoints(run_dir).back().path;
  std::filesystem::resize_file(newest, std::filesystem::file_size(newest) / 2);
  ASSERT_EQ(run_ddactor({"--config", config.string(), "--set", "train.steps=25"}, log("second")),
            0);
  auto out = read_text_file(log("second"));
  EXPECT_NE(out.find("skipping checkpoint"), std::string::npos) << out;
  EXPECT_NE(out.find("starting at step 10"), std::string::npos) << out;
}

} // namespace
} // namespace ddactor::testing
