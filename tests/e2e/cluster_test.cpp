// End-to-end tests of `ddactor cluster` (Decentralized Diffusion Models): the real binary clusters
// Fashion-MNIST into 4 experts' clusters and writes the assignment file; a second run writes the
// same bytes; the random partition (the ablation) is balanced and differs; the k-means clusters
// follow the garment classes far more than random ones do; bad settings fail with a clear message.
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <numeric>

#include "runtime/cluster_assignment.hpp"
#include "runtime/idx_dataset.hpp"
#include "tests/e2e/process.hpp"

namespace ddactor::testing {
namespace {

const std::filesystem::path fashion_mnist = "/usr/share/datasets/fashion-mnist";

std::string cluster_config(const std::filesystem::path& run_dir) {
  return "[run]\nname = \"e2e-cluster\"\ndir = \"" + run_dir.string() +
         "\"\nthreads = 2\n"
         "[ddm]\nnum_experts = 4\nfine_clusters = 64\nseed = 5\nkmeans_iterations = 60\n";
}

// The share of images that belong to their cluster's most common class, over all clusters.
double purity(const cluster_assignment& clusters, const std::vector<int64_t>& labels) {
  std::vector<std::vector<int64_t>> counts(clusters.num_clusters, std::vector<int64_t>(10, 0));
  for (size_t i = 0; i < labels.size(); ++i) ++counts[clusters.assignment[i]][labels[i]];
  int64_t majority = 0;
  for (const auto& row : counts) majority += *std::max_element(row.begin(), row.end());
  return static_cast<double>(majority) / static_cast<double>(labels.size());
}

class cluster_command : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::is_directory(fashion_mnist))
      GTEST_SKIP() << "Fashion-MNIST is not installed (dataset-fashion-mnist)";
    write_text_file(config, cluster_config(run_dir));
  }
  temp_directory dir{::testing::UnitTest::GetInstance()->current_test_info()->name()};
  std::filesystem::path run_dir = dir.path() / "run";
  std::filesystem::path config = dir.path() / "run.toml";
  std::filesystem::path log(const std::string& name) { return dir.path() / (name + ".log"); }
};

TEST_F(cluster_command, kmeans_file_is_complete_deterministic_and_follows_the_classes) {
  ASSERT_EQ(run_ddactor({"cluster", "--config", config.string()}, log("first")), 0)
      << read_text_file(log("first"));
  const auto output = read_text_file(log("first"));
  EXPECT_NE(output.find("main classes"), std::string::npos) << output;
  EXPECT_NE(output.find("images per cluster (rows) and class (columns)"), std::string::npos);
  EXPECT_NE(output.find("k-means: 64 fine clusters merged into 4"), std::string::npos) << output;

  const auto file = run_dir / "clusters.safetensors";
  const auto clusters = read_cluster_assignment(file);
  EXPECT_EQ(clusters.num_clusters, 4);
  EXPECT_EQ(clusters.partition, "kmeans");
  EXPECT_EQ(clusters.seed, 5u);
  EXPECT_EQ(clusters.fine_clusters, 64);
  EXPECT_EQ(clusters.feature_dims, 32);
  EXPECT_EQ(clusters.data.count, 60000);
  EXPECT_EQ(clusters.data.source, "fashion-mnist");
  EXPECT_EQ(clusters.data.resolution, 28);
  ASSERT_EQ(clusters.assignment.size(), 60000u);
  EXPECT_EQ(std::accumulate(clusters.sizes.begin(), clusters.sizes.end(), int64_t{0}), 60000);
  for (int k = 0; k < 4; ++k) {
    EXPECT_GT(clusters.sizes[k], 0) << k;
    EXPECT_EQ(static_cast<int64_t>(indices_of_cluster(clusters, k).size()), clusters.sizes[k]);
  }
  EXPECT_NE(clusters.features.find("builtin"), std::string::npos) << clusters.features;
  // The file belongs to the data a peer loads.
  const auto train = load_fashion_mnist(fashion_mnist, dataset_split::train);
  run_config run;
  EXPECT_NO_THROW(check_assignment_matches(clusters, describe_training_data(run, train), file));

  // A second run writes the same bytes.
  const auto second = dir.path() / "second.safetensors";
  ASSERT_EQ(run_ddactor({"cluster", "--config", config.string(), "--set",
                         "ddm.assignments=" + second.string()},
                        log("second")),
            0)
      << read_text_file(log("second"));
  EXPECT_EQ(read_text_file(second), read_text_file(file)) << "two runs gave different files";

  // The random ablation: same format, equal sizes, another partition, no class structure.
  const auto random_file = dir.path() / "random.safetensors";
  ASSERT_EQ(run_ddactor({"cluster", "--config", config.string(), "--set", "ddm.partition=random",
                         "--set", "ddm.assignments=" + random_file.string()},
                        log("random")),
            0)
      << read_text_file(log("random"));
  const auto random = read_cluster_assignment(random_file);
  EXPECT_EQ(random.partition, "random");
  EXPECT_EQ(random.sizes, (std::vector<int64_t>{15000, 15000, 15000, 15000}));
  EXPECT_NE(random.assignment, clusters.assignment);
  EXPECT_EQ(random.data, clusters.data);

  // k-means clusters group garments (with 4 clusters over 10 classes, a random split has a purity
  // near 0.1; pixel clusters put footwear, trousers, bags and tops largely apart).
  const double kmeans_purity = purity(clusters, train.labels);
  const double random_purity = purity(random, train.labels);
  EXPECT_LT(random_purity, 0.12);
  EXPECT_GT(kmeans_purity, 0.25) << "k-means purity " << kmeans_purity;
}

TEST_F(cluster_command, impossible_settings_fail_with_a_clear_message) {
  EXPECT_EQ(run_ddactor({"cluster", "--config", config.string(), "--set",
                         "ddm.features=" + (dir.path() / "missing.pt").string()},
                        log("missing")),
            1);
  const auto output = read_text_file(log("missing"));
  EXPECT_NE(output.find((dir.path() / "missing.pt").string() +
                        ": no such TorchScript feature extractor"),
            std::string::npos)
      << output;
  EXPECT_EQ(run_ddactor({"cluster", "--config", config.string(), "--set", "ddm.fine_clusters=2"},
                        log("fine")),
            2);
  EXPECT_NE(read_text_file(log("fine")).find("ddm.fine_clusters (2) must be >= ddm.num_experts (4)"),
            std::string::npos)
      << read_text_file(log("fine"));
}

TEST_F(cluster_command, shows_progress_and_sigterm_stops_it_without_writing_a_file) {
  // Enough fine clusters that k-means runs for many seconds.
  child_process cluster(DDACTOR_BINARY,
                        {"cluster", "--config", config.string(), "--set", "ddm.fine_clusters=4096",
                         "--set", "ddm.kmeans_iterations=1000"},
                        log("stopped"));
  ASSERT_TRUE(cluster.wait_for_output("cluster: fine k-means", std::chrono::seconds(120)))
      << cluster.output();
  EXPECT_NE(cluster.output().find("cluster: features"), std::string::npos) << cluster.output();
  cluster.send_signal(SIGTERM);
  const auto code = cluster.wait_for(std::chrono::seconds(60));
  ASSERT_TRUE(code.has_value()) << "SIGTERM did not stop k-means:\n" << cluster.output();
  EXPECT_EQ(*code, 128 + SIGTERM) << cluster.output();
  EXPECT_NE(cluster.output().find("cluster: fine k-means interrupted after"), std::string::npos)
      << cluster.output();
  EXPECT_NE(cluster.output().find("stopped by SIGTERM"), std::string::npos) << cluster.output();
  EXPECT_FALSE(std::filesystem::exists(run_dir / "clusters.safetensors"));
}

}  // namespace
}  // namespace ddactor::testing
