#include "runtime/checkpoint_files.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/temporary_folder.hpp"

namespace ddactor {
namespace {

// A run folder with its checkpoint folder made, removed at the end.
struct temp_run_dir {
  testing::temporary_folder folder{"ddactor_ckpt_files"};
  const std::filesystem::path path = folder.path();
  temp_run_dir() { std::filesystem::create_directories(checkpoint_directory(path)); }
  void touch(const std::string& name) { std::ofstream(checkpoint_directory(path) / name) << "x"; }
};

TEST(checkpoint_files, names_sort_by_step) {
  EXPECT_EQ(checkpoint_path("r", 42).filename(), "step_000000000042.safetensors");
}

TEST(checkpoint_files, lists_only_checkpoints_oldest_first) {
  temp_run_dir dir;
  dir.touch("step_000000000200.safetensors");
  dir.touch("step_000000000010.safetensors");
  dir.touch("step_000000000010.safetensors.tmp");
  dir.touch("notes.txt");
  dir.touch("step_00000000abcd.safetensors");
  auto files = list_checkpoints(dir.path);
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].step, 10);
  EXPECT_EQ(files[1].step, 200);
}

TEST(checkpoint_files, prune_keeps_the_newest) {
  temp_run_dir dir;
  for (int s : {1, 2, 3, 4, 5})
    dir.touch(checkpoint_path(dir.path, s).filename().string());
  auto removed = prune_checkpoints(dir.path, 2);
  EXPECT_EQ(removed.size(), 3u);
  auto files = list_checkpoints(dir.path);
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].step, 4);
  EXPECT_EQ(files[1].step, 5);
}

TEST(checkpoint_files, missing_folder_is_empty) {
  EXPECT_TRUE(list_checkpoints("/nonexistent/ddactor/run").empty());
}

} // namespace
} // namespace ddactor
