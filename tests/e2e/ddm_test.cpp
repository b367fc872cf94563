// End-to-end test of a Decentralized Diffusion Model with the real binary: cluster Fashion-MNIST
// into 2 clusters, train 2 tiny experts (each on its own cluster only) and the router, sample
// with each routing strategy, then serve it over HTTP with one expert in another process
// (`serve-expert`), SIGKILL that process, and check that the server keeps answering: with
// fall-back the dead expert's samples go to the other expert, without it the request fails with
// 503 and a clear reason.
#include <gtest/gtest.h>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <thread>

#include "runtime/cluster_assignment.hpp"
#include "tests/e2e/process.hpp"

namespace ddactor::testing {
namespace {

using namespace std::chrono_literals;

const std::filesystem::path fashion_mnist = "/usr/share/datasets/fashion-mnist";

// Experts and router small enough for a CI core: a few milliseconds a step.
std::string ddm_config(const std::filesystem::path& root) {
  return "[run]\nname = \"e2e-ddm\"\ndir = \"" + root.string() +
         "\"\nseed = 3\nthreads = 1\n"
         "[model]\nhidden_size = 32\ndepth = 1\nnum_heads = 2\npatch_size = 7\n"
         "[data]\nbatch_size = 16\nprefetch = 2\n"
         "[train]\nsteps = 20\nwarmup_steps = 2\nlog_every = 5\ncheckpoint_every = 20\n"
         "sample_every = 0\n"
         "[sample]\nsteps = 2\nper_class = 1\nsampler = \"euler\"\n"
         "[ddm]\nnum_experts = 2\nfine_clusters = 8\nseed = 1\nkmeans_iterations = 20\n"
         "router_hidden_size = 32\nrouter_depth = 1\nrouter_heads = 2\nrouter_patch_size = 7\n";
}

bool is_png(const std::string& bytes) {
  return bytes.size() > 8 && bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0;
}

httplib::Result post_generate(uint16_t port, const nlohmann::json& body) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(120, 0);
  return client.Post("/v1/generate", body.dump(), "application/json");
}

class ddm : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::is_directory(fashion_mnist))
      GTEST_SKIP() << "Fashion-MNIST is not installed (dataset-fashion-mnist)";
    write_text_file(config, ddm_config(root));
  }
  temp_directory dir{::testing::UnitTest::GetInstance()->current_test_info()->name()};
  std::filesystem::path root = dir.path() / "ddm";
  std::filesystem::path config = dir.path() / "ddm.toml";
  std::filesystem::path log(const std::string& name) { return dir.path() / (name + ".log"); }

  int ddactor(std::vector<std::string> args, const std::string& name) {
    args.insert(args.begin(), {"--config", config.string()});
    return run_ddactor(args, log(name));
  }
};

TEST_F(ddm, experts_train_on_their_cluster_and_the_served_ensemble_survives_a_dead_expert) {
  // 1. The data split.
  ASSERT_EQ(ddactor({"cluster"}, "cluster"), 0) << read_text_file(log("cluster"));
  const auto clusters = read_cluster_assignment(root / "clusters.safetensors");
  ASSERT_EQ(clusters.num_clusters, 2);

  // 2. Each expert sees its cluster only; the router sees everything, labelled by cluster.
  for (int k = 0; k < 2; ++k) {
    const auto name = "expert-" + std::to_string(k);
    ASSERT_EQ(ddactor({"--set", "ddm.expert=" + std::to_string(k)}, name), 0)
        << read_text_file(log(name));
    EXPECT_NE(read_text_file(log(name))
                  .find("DDM expert " + std::to_string(k) + ": " +
                        std::to_string(clusters.sizes[k]) + " of 60000 training images"),
              std::string::npos)
        << read_text_file(log(name));
    EXPECT_TRUE(std::filesystem::exists(root / name / "checkpoints")) << name;
  }
  ASSERT_EQ(ddactor({"--set", "run.mode=\"router\""}, "router"), 0) << read_text_file(log("router"));
  EXPECT_NE(read_text_file(log("router")).find("DDM router: 60000 images labelled with their cluster"),
            std::string::npos)
      << read_text_file(log("router"));

  // 3. `sample` combines the experts with the router, with every strategy.
  for (std::string strategy : {"top1", "topk", "full"}) {
    const auto grid = dir.path() / (strategy + ".png");
    ASSERT_EQ(ddactor({"sample", "--ensemble", strategy, "--out", grid.string()}, "sample-" + strategy),
              0)
        << read_text_file(log("sample-" + strategy));
    EXPECT_TRUE(is_png(read_text_file(grid))) << strategy;
  }

  // 4. Expert 1 served by another process; two routers: one falls back, one fails clearly.
  const uint16_t expert_port = free_port();
  child_process expert(DDACTOR_BINARY,
                       {"serve-expert", "--config", config.string(), "--expert", "1", "--set",
                        "serve.listen=\"127.0.0.1:" + std::to_string(expert_port) + "\""},
                       log("serve-expert"));
  ASSERT_TRUE(expert.wait_for_output("serving on", 60s)) << expert.output();

  const std::string remote_experts =
      "serve.experts=[\"\", \"127.0.0.1:" + std::to_string(expert_port) + "\"]";
  const uint16_t lenient_port = free_port();
  const uint16_t strict_port = free_port();
  child_process lenient(DDACTOR_BINARY,
                        {"serve", "--config", config.string(), "--set", remote_experts, "--set",
                         "serve.http=\"127.0.0.1:" + std::to_string(lenient_port) + "\"", "--set",
                         "serve.fall_back=true", "--set", "serve.expert_timeout=3.0"},
                        log("serve-lenient"));
  child_process strict(DDACTOR_BINARY,
                       {"serve", "--config", config.string(), "--set", remote_experts, "--set",
                        "serve.http=\"127.0.0.1:" + std::to_string(strict_port) + "\"", "--set",
                        "serve.fall_back=false", "--set", "serve.expert_timeout=3.0"},
                       log("serve-strict"));
  ASSERT_TRUE(lenient.wait_for_output("Ctrl-C stops", 60s)) << lenient.output();
  ASSERT_TRUE(strict.wait_for_output("Ctrl-C stops", 60s)) << strict.output();

  // "full" asks every expert for every sample: expert 1's velocities come over CAF.
  const nlohmann::json request = {{"class", 3}, {"count", 4}, {"steps", 3}, {"strategy", "full"}};
  for (uint16_t port : {lenient_port, strict_port}) {
    auto answer = post_generate(port, request);
    ASSERT_TRUE(answer) << httplib::to_string(answer.error());
    EXPECT_EQ(answer->status, 200) << answer->body;
    EXPECT_EQ(answer->get_header_value("Content-Type"), "image/png");
    EXPECT_TRUE(is_png(answer->body));
  }

  // A malformed request is refused with a reason, not served.
  auto bad = post_generate(lenient_port, {{"class", 99}, {"count", 1}});
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400) << bad->body;
  auto unknown = post_generate(lenient_port, {{"colour", "red"}});
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 400) << unknown->body;
  EXPECT_NE(unknown->body.find("unknown field 'colour'"), std::string::npos) << unknown->body;

  // 5. The remote expert dies.
  expert.send_signal(SIGKILL);
  ASSERT_TRUE(expert.wait_for(10s).has_value());

  auto fell_back = post_generate(lenient_port, request);
  ASSERT_TRUE(fell_back) << httplib::to_string(fell_back.error());
  EXPECT_EQ(fell_back->status, 200) << fell_back->body;
  EXPECT_TRUE(is_png(fell_back->body));
  EXPECT_TRUE(lenient.wait_for_output("expert 1", 5s)) << lenient.output();

  auto failed = post_generate(strict_port, request);
  ASSERT_TRUE(failed) << httplib::to_string(failed.error());
  EXPECT_EQ(failed->status, 503) << failed->body;
  EXPECT_NE(failed->body.find("expert 1"), std::string::npos) << failed->body;

  // Both servers keep serving: requests that need only the local expert still succeed.
  for (uint16_t port : {lenient_port, strict_port}) {
    httplib::Client client("127.0.0.1", port);
    auto health = client.Get("/healthz");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200) << health->body;
    EXPECT_TRUE(lenient.running());
    EXPECT_TRUE(strict.running());
  }
  lenient.send_signal(SIGTERM);
  strict.send_signal(SIGTERM);
  EXPECT_EQ(lenient.wait_for(30s), std::optional<int>(0)) << lenient.output();
  EXPECT_EQ(strict.wait_for(30s), std::optional<int>(0)) << strict.output();
}

TEST_F(ddm, an_expert_without_an_assignment_file_fails_with_a_clear_message) {
  EXPECT_EQ(ddactor({"--set", "ddm.expert=0"}, "expert"), 1);
  const auto output = read_text_file(log("expert"));
  EXPECT_NE(output.find("clusters.safetensors"), std::string::npos) << output;
}

}  // namespace
}  // namespace ddactor::testing
