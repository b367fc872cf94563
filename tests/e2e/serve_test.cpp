// `ddactor serve` under the load real clients bring, with the real binary: /healthz answers at
// once while a long generation runs, a one-image request is answered while a large one is still
// sampling, a request whose client hung up stops computing, a full queue answers 429 with
// Retry-After, clients that send a byte at a time cannot take the server away from others, and
// requests that ask for too much or for classes that do not exist are refused with 400. One tiny
// DDM (2 experts and a router) is trained once for the whole suite.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <thread>

#include "tests/e2e/process.hpp"

namespace ddactor::testing {
namespace {

using namespace std::chrono_literals;

const std::filesystem::path fashion_mnist = "/usr/share/datasets/fashion-mnist";

std::string ddm_config(const std::filesystem::path& root) {
  return "[run]\nname = \"e2e-serve\"\ndir = \"" + root.string() +
         "\"\nseed = 3\nthreads = 1\n"
         "[model]\nhidden_size = 32\ndepth = 1\nnum_heads = 2\npatch_size = 7\n"
         "[data]\nbatch_size = 16\nprefetch = 2\n"
         "[train]\nsteps = 10\nwarmup_steps = 2\nlog_every = 5\ncheckpoint_every = 10\n"
         "sample_every = 0\n"
         "[sample]\nsteps = 2\nper_class = 1\nsampler = \"euler\"\n"
         "[ddm]\nnum_experts = 2\nfine_clusters = 8\nseed = 1\nkmeans_iterations = 10\n"
         "router_hidden_size = 32\nrouter_depth = 1\nrouter_heads = 2\nrouter_patch_size = 7\n";
}

// A request that samples for many seconds: every class, the most steps, Heun.
const nlohmann::json large_request = {{"count", 6}, {"steps", 1000}, {"sampler", "heun"}};
const nlohmann::json small_request = {{"class", 3}, {"count", 1}, {"steps", 2}};

httplib::Result post(uint16_t port, const nlohmann::json& body, int read_timeout_s = 300) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(read_timeout_s, 0);
  return client.Post("/v1/generate", body.dump(), "application/json");
}

httplib::Result get(uint16_t port, const std::string& path, int read_timeout_s = 10) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(read_timeout_s, 0);
  return client.Get(path);
}

class serve : public ::testing::Test {
 protected:
  // The DDM every test serves, trained once.
  static inline std::unique_ptr<temp_directory> shared_dir;
  static inline std::filesystem::path config;

  static void SetUpTestSuite() {
    if (!std::filesystem::is_directory(fashion_mnist))
      return;
    shared_dir = std::make_unique<temp_directory>("serve_suite");
    const auto root = shared_dir->path() / "ddm";
    config = shared_dir->path() / "ddm.toml";
    write_text_file(config, ddm_config(root));
    const auto run = [&](std::vector<std::string> args, const std::string& name) {
      args.insert(args.begin(), {"--config", config.string()});
      return run_ddactor(args, shared_dir->path() / (name + ".log"));
    };
    bool ok = run({"cluster"}, "cluster") == 0 &&
              run({"--set", "ddm.expert=0"}, "expert-0") == 0 &&
              run({"--set", "ddm.expert=1"}, "expert-1") == 0 &&
              run({"--set", "run.mode=\"router\""}, "router") == 0;
    if (!ok)
      config.clear();
  }
  static void TearDownTestSuite() { shared_dir.reset(); }

  void SetUp() override {
    if (!std::filesystem::is_directory(fashion_mnist))
      GTEST_SKIP() << "Fashion-MNIST is not installed (dataset-fashion-mnist)";
    ASSERT_FALSE(config.empty()) << "training the DDM failed; logs in " << shared_dir->path();
  }

  temp_directory dir{::testing::UnitTest::GetInstance()->current_test_info()->name()};
  uint16_t port = free_port();
  std::unique_ptr<child_process> server;

  void start_server(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"serve", "--config", config.string(), "--set",
                                  "serve.http=\"127.0.0.1:" + std::to_string(port) + "\""};
    args.insert(args.end(), extra.begin(), extra.end());
    server = std::make_unique<child_process>(DDACTOR_BINARY, args, dir.path() / "serve.log");
    ASSERT_TRUE(server->wait_for_output("Ctrl-C stops", 60s)) << server->output();
  }

  // Requests in progress, from /healthz.
  int in_progress() {
    auto health = get(port, "/healthz");
    if (!health || health->status != 200)
      return -1;
    return nlohmann::json::parse(health->body).value("in_progress", -1);
  }

  void wait_until_in_progress(int n) {
    for (int i = 0; i < 600 && in_progress() != n; ++i)
      std::this_thread::sleep_for(50ms);
    ASSERT_EQ(in_progress(), n);
  }
};

// With serve.token_file, POST /v1/generate answers 401 (with WWW-Authenticate) to a request
// without the token or with another, and serves the one that presents it; /healthz stays open
// for load balancers.
TEST_F(serve, a_server_with_a_token_serves_only_clients_that_present_it) {
  const auto token = dir.path() / "serve.token";
  write_text_file(token, "a-long-enough-serve-token-7\n");
  std::filesystem::permissions(token, std::filesystem::perms::owner_read |
                                        std::filesystem::perms::owner_write);
  start_server({"--set", "serve.token_file=\"" + token.string() + "\""});
  auto without = post(port, small_request);
  ASSERT_TRUE(without);
  EXPECT_EQ(without->status, 401) << without->body;
  EXPECT_TRUE(without->has_header("WWW-Authenticate"));
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(300, 0);
  client.set_bearer_token_auth("another-token-of-length");
  auto wrong = client.Post("/v1/generate", small_request.dump(), "application/json");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  client.set_bearer_token_auth("a-long-enough-serve-token-7");
  auto right = client.Post("/v1/generate", small_request.dump(), "application/json");
  ASSERT_TRUE(right);
  EXPECT_EQ(right->status, 200) << right->body;
  EXPECT_EQ(right->get_header_value("Content-Type"), "image/png");
  auto health = get(port, "/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_TRUE(server->wait_for_output("401, no bearer token", 5s)) << server->output();
}

TEST_F(serve, health_answers_at_once_and_a_small_request_passes_a_large_one) {
  start_server();
  // The large request's client is the test's, so that the test can hang up once it has seen
  // what it needs: waiting for 60 images of 1000 Heun steps took minutes on a loaded machine.
  httplib::Client large_client("127.0.0.1", port);
  large_client.set_read_timeout(300, 0);
  auto large = std::async(std::launch::async, [&] {
    return large_client.Post("/v1/generate", large_request.dump(), "application/json");
  });
  wait_until_in_progress(1);
  // Health comes from state: at once, whatever is being sampled.
  auto health = get(port, "/healthz", 2);
  ASSERT_TRUE(health) << httplib::to_string(health.error());
  EXPECT_EQ(health->status, 200);
  auto small = post(port, small_request);
  ASSERT_TRUE(small) << httplib::to_string(small.error());
  EXPECT_EQ(small->status, 200) << small->body;
  EXPECT_EQ(large.wait_for(0s), std::future_status::timeout)
    << "the large request ended before the small one: nothing shows they interleave";
  large_client.stop();
  EXPECT_FALSE(large.get()) << "the large request was answered although its client hung up";
  // Every request is logged with its status, images and time; the abandoned one is cancelled.
  EXPECT_NE(server->output().find("POST /v1/generate from 127.0.0.1: 200 (1 images"),
            std::string::npos)
    << server->output();
  EXPECT_TRUE(server->wait_for_output("cancelled: its client is gone", 60s)) << server->output();
}

TEST_F(serve, a_request_whose_client_hung_up_stops_computing) {
  start_server();
  auto abandoned = std::async(std::launch::async, [&] { return post(port, large_request, 2); });
  wait_until_in_progress(1);
  EXPECT_FALSE(abandoned.get());  // the client gave up after 2 s
  ASSERT_TRUE(server->wait_for_output("cancelled: its client is gone", 60s)) << server->output();
  wait_until_in_progress(0);
  auto small = post(port, small_request);
  ASSERT_TRUE(small);
  EXPECT_EQ(small->status, 200) << small->body;
}

TEST_F(serve, a_full_queue_answers_429_with_retry_after) {
  start_server({"--set", "serve.max_queue=1"});
  auto large = std::async(std::launch::async, [&] { return post(port, large_request, 2); });
  wait_until_in_progress(1);
  auto refused = post(port, small_request);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 429) << refused->body;
  EXPECT_EQ(refused->get_header_value("Retry-After"), "5");
  large.get();
}

// Clients that send a byte now and then hold their connection slots and nothing else.
TEST_F(serve, slow_clients_cannot_take_the_server_from_others) {
  start_server();
  std::vector<int> slow;
  for (int i = 0; i < 8; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in from{};  // another address of this machine, as another host would have
    from.sin_family = AF_INET;
    ::inet_pton(AF_INET, "127.0.0.2", &from.sin_addr);
    ::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    ::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
    ::send(fd, "POST /v1/gen", 12, MSG_NOSIGNAL);
    slow.push_back(fd);
  }
  for (int round = 0; round < 3; ++round) {
    auto health = get(port, "/healthz", 5);
    ASSERT_TRUE(health) << httplib::to_string(health.error());
    EXPECT_EQ(health->status, 200);
    auto small = post(port, small_request, 60);
    ASSERT_TRUE(small) << httplib::to_string(small.error());
    EXPECT_EQ(small->status, 200) << small->body;
    for (int fd : slow)
      ::send(fd, "e", 1, MSG_NOSIGNAL);
  }
  for (int fd : slow)
    ::close(fd);
}

TEST_F(serve, requests_for_too_much_or_for_no_class_are_refused_with_a_reason) {
  start_server();
  const auto expect_refused = [&](const std::string& body, const std::string& words) {
    httplib::Client client("127.0.0.1", port);
    auto answer = client.Post("/v1/generate", body, "application/json");
    ASSERT_TRUE(answer) << body;
    EXPECT_EQ(answer->status, 400) << body << " -> " << answer->body;
    EXPECT_NE(answer->body.find(words), std::string::npos) << body << " -> " << answer->body;
  };
  // No class: 8 (the default count) for each of 10 classes, more than serve.max_count (64).
  expect_refused("{}", "asks for 80 images");
  expect_refused(R"({"class": -1})", "class must be");
  expect_refused(R"({"class": 9223372036854775808})", "class must be");
  expect_refused(R"({"class": 3.5})", "class must be");
  expect_refused(R"({"class": 10})", "class must be in [0, 10)");
  expect_refused(R"({"class": 3, "count": 0})", "count must be");
  expect_refused(R"({"class": 3, "cfg": "nan"})", "");
}

} // namespace
} // namespace ddactor::testing
