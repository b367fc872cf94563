// Multi-process tests of a swarm at a glance: a real 3-peer swarm on loopback, monitoring.listen
// on its first peer. Debian's chromium, headless, loads the status page and must show every peer
// with no console message and no uncaught error; `ddactor status --peer` must list every peer
// through any of them, and fail with one clear line, in bounded time, where no peer answers.
#include <gtest/gtest.h>
#include <httplib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "monitoring/metrics_http_server.hpp"
#include "monitoring/status_page.hpp"
#include "tests/e2e/process.hpp"

namespace ddactor::testing {
namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

constexpr const char* chromium_binary = "/usr/bin/chromium";
constexpr std::size_t swarm_size = 3;

bool executable(const char* path) { return ::access(path, X_OK) == 0; }

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    text.pop_back();
  return text;
}

std::vector<std::string> nonempty_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty())
      lines.push_back(line);
  return lines;
}

// What headless chromium made of a page: the DOM after its scripts ran, and its log.
struct browser_visit {
  int exit_status = -1;
  std::string dom;
  std::string log;

  // Messages the page wrote to the console, its uncaught exceptions and failed loads among them
  // (this chromium logs every level as INFO:CONSOLE, so any such line counts).
  std::vector<std::string> console_lines() const {
    std::vector<std::string> out;
    for (const auto& line : nonempty_lines(log))
      if (line.find(":CONSOLE") != std::string::npos || line.find("Uncaught") != std::string::npos)
        out.push_back(line);
    return out;
  }
};

// Loads `url` in headless chromium long enough (in virtual time) for the page to fetch its data
// and refresh twice. Flags that work as root in a container, a fresh profile each time.
browser_visit visit(const std::string& url, const std::filesystem::path& dir) {
  auto profile = dir / "chromium-profile";
  std::filesystem::remove_all(profile);
  auto dom_file = dir / "dom.html";
  auto log_file = dir / "chromium.log";
  std::string command = std::string("timeout 120 ") + chromium_binary +
                        " --headless --no-sandbox --disable-gpu --disable-dev-shm-usage"
                        " --disable-background-networking --disable-component-update"
                        " --disable-sync --no-first-run --user-data-dir='" +
                        profile.string() +
                        "' --virtual-time-budget=5000 --enable-logging=stderr --v=0"
                        " --dump-dom '" +
                        url + "' > '" + dom_file.string() + "' 2> '" + log_file.string() + "'";
  browser_visit out;
  out.exit_status = std::system(command.c_str());
  out.dom = read_text_file(dom_file);
  out.log = read_text_file(log_file);
  return out;
}

// `ddactor status` with `args`: exit code, everything it printed, how long it took.
struct status_run {
  int exit_code = -1;
  std::string output;
  double seconds = 0;
};

status_run run_status(const std::vector<std::string>& args, const std::filesystem::path& log) {
  std::vector<std::string> full{"status"};
  full.insert(full.end(), args.begin(), args.end());
  auto started = clock_type::now();
  status_run out;
  out.exit_code = run_ddactor(full, log, 60s);
  out.seconds = std::chrono::duration<double>(clock_type::now() - started).count();
  out.output = read_text_file(log);
  return out;
}

// One swarm for the whole suite: starting three peers takes a while on a small machine.
class status_of_a_swarm : public ::testing::Test {
 protected:
  static inline std::unique_ptr<temp_directory> dir;
  static inline std::vector<std::unique_ptr<child_process>> peers;
  static inline uint16_t bootstrap_port = 0;
  static inline uint16_t monitoring_port = 0;
  static inline std::vector<std::string> peer_ids;
  static inline std::string setup_failure;

  static std::filesystem::path run_dir(std::size_t i) {
    return dir->path() / ("peer" + std::to_string(i));
  }

  static std::optional<nlohmann::json> fetch_status() {
    httplib::Client client("127.0.0.1", monitoring_port);
    client.set_connection_timeout(5);
    client.set_read_timeout(10);
    auto response = client.Get("/status.json");
    if (!response || response->status != 200)
      return std::nullopt;
    auto document = nlohmann::json::parse(response->body, nullptr, false);
    if (document.is_discarded())
      return std::nullopt;
    return document;
  }

  static void SetUpTestSuite() {
    dir = std::make_unique<temp_directory>("status_of_a_swarm");
    bootstrap_port = free_port();
    monitoring_port = free_port();
    // A tiny model that trains until killed; rounds every few batches.
    auto config = dir->path() / "swarm.toml";
    write_text_file(config,
                    "[run]\nname = \"e2e-status\"\nthreads = 1\n"
                    "[model]\nhidden_size = 32\ndepth = 1\nnum_heads = 2\npatch_size = 7\n"
                    "[data]\nbatch_size = 16\nprefetch = 2\n"
                    "[train]\nsteps = 1000000\ntarget_batch_size = 64\nwarmup_steps = 2\n"
                    "log_every = 100\ncheckpoint_every = 1000000\nkeep_checkpoints = 2\n"
                    "sample_every = 0\n"
                    "[sample]\nsteps = 1\nper_class = 1\n"
                    "[network]\ngossip_interval = 0.3\nsuspect_after = 1.5\nremove_after = 3.0\n"
                    "heartbeat_interval = 0.2\nconnection_timeout = 1.5\nwait_for_peers = 3\n"
                    "[averaging]\nmatchmaking_time = 1.5\nallreduce_timeout = 10.0\n"
                    "chunk_elements = 4096\n");
    for (std::size_t i = 0; i < swarm_size; ++i) {
      std::vector<std::string> args{"--config", config.string(), "--set",
                                    "run.dir=\"" + run_dir(i).string() + "\""};
      if (i == 0)
        args.insert(args.end(),
                    {"--set", "network.listen=\"127.0.0.1:" + std::to_string(bootstrap_port) + "\"",
                     "--set",
                     "monitoring.listen=\"127.0.0.1:" + std::to_string(monitoring_port) + "\""});
      else
        args.insert(args.end(), {"--set", "network.listen=\"127.0.0.1:0\"", "--set",
                                 "network.initial_peers=[\"127.0.0.1:" +
                                   std::to_string(bootstrap_port) + "\"]"});
      peers.push_back(std::make_unique<child_process>(
        DDACTOR_BINARY, args, dir->path() / ("peer" + std::to_string(i) + ".log")));
      if (i == 0 && !peers[0]->wait_for_output("listening for peers", 60s)) {
        setup_failure = "the first peer did not start:\n" + peers[0]->output();
        return;
      }
    }
    // Every peer's id, as it keeps it in its state folder.
    auto deadline = clock_type::now() + 60s;
    for (std::size_t i = 0; i < swarm_size; ++i) {
      while (trimmed(read_text_file(run_dir(i) / "peer" / "peer_id")).size() != 32 &&
             clock_type::now() < deadline)
        std::this_thread::sleep_for(100ms);
      peer_ids.push_back(trimmed(read_text_file(run_dir(i) / "peer" / "peer_id")));
    }
    // The first peer sees the whole swarm and has averaged at least once.
    deadline = clock_type::now() + 120s;
    std::optional<nlohmann::json> status;
    while (clock_type::now() < deadline) {
      status = fetch_status();
      if (status && status->at("peers").size() == swarm_size && !status->at("rounds").empty())
        return;
      std::this_thread::sleep_for(300ms);
    }
    setup_failure = "the first peer never saw 3 peers and a round; last status: " +
                    (status ? status->dump() : std::string("none")) + "\n" + peers[0]->output();
  }

  static void TearDownTestSuite() {
    peers.clear();  // SIGKILL: no final checkpoint needed here
    // temp_directory keeps a failed test's folder, but knows no test here: the suite decides.
    const auto* suite = ::testing::UnitTest::GetInstance()->current_test_suite();
    if (suite != nullptr && suite->failed_test_count() > 0) {
      std::cerr << "kept for inspection: " << dir->path() << "\n";
      (void)dir.release();  // not removed
    }
    dir.reset();
  }

  void SetUp() override {
    if (!setup_failure.empty())
      FAIL() << setup_failure;
  }
};

TEST_F(status_of_a_swarm, the_status_page_shows_every_peer_in_a_headless_browser) {
  if (!executable(chromium_binary))
    GTEST_SKIP() << chromium_binary << " not found (Debian package 'chromium')";
  auto page = visit("http://127.0.0.1:" + std::to_string(monitoring_port) + "/", dir->path());
  ASSERT_EQ(page.exit_status, 0) << page.log;
  // The page fetched the status and rendered it without an error of its own.
  EXPECT_NE(page.dom.find("data-state=\"ok\""), std::string::npos) << page.dom;
  EXPECT_EQ(page.dom.find("data-page-errors="), std::string::npos) << page.dom;
  EXPECT_EQ(page.console_lines(), std::vector<std::string>{}) << page.log;
  // Every peer of the swarm has its row: its short id shown, its full id in the title.
  for (const auto& id : peer_ids) {
    EXPECT_NE(page.dom.find("<tr data-peer-id=\"" + id + "\""), std::string::npos)
      << id << " missing in\n" << page.dom;
    EXPECT_NE(page.dom.find("title=\"" + id + "\">" + id.substr(0, 8) + "</abbr>"),
              std::string::npos)
      << id << " missing in\n" << page.dom;
  }
  EXPECT_NE(page.dom.find("3 peers in view"), std::string::npos) << page.dom;
  // And the rounds table has the round the setup waited for.
  EXPECT_NE(page.dom.find("<td>averaged</td>"), std::string::npos) << page.dom;
}

TEST_F(status_of_a_swarm, ddactor_status_lists_every_peer_through_any_of_them) {
  auto first = run_status({"--peer", "127.0.0.1:" + std::to_string(bootstrap_port)},
                          dir->path() / "status-first.log");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_NE(first.output.find("3 peers in view"), std::string::npos) << first.output;
  for (const char* heading : {"PEER", "ADDRESS", "EPOCH", "SAMPLES/S", "ROLE", "LAST SEEN",
                              "REACHABILITY", "Last rounds", "DURATION", "SENT", "RECEIVED"})
    EXPECT_NE(first.output.find(heading), std::string::npos) << heading << "\n" << first.output;
  for (const auto& id : peer_ids)
    EXPECT_NE(first.output.find(id), std::string::npos) << id << "\n" << first.output;
  EXPECT_NE(first.output.find(peer_ids[0] + " *"), std::string::npos) << first.output;

  // The JSON, asked of another peer at the address it announces: the same swarm from there.
  auto json = run_status({"--peer", "127.0.0.1:" + std::to_string(bootstrap_port), "--json"},
                         dir->path() / "status-json.log");
  ASSERT_EQ(json.exit_code, 0) << json.output;
  auto document = nlohmann::json::parse(json.output);
  ASSERT_EQ(document.at("peers").size(), swarm_size) << json.output;
  std::string second_address;
  for (const auto& peer : document.at("peers"))
    if (peer.at("peer_id") == peer_ids[1])
      second_address = peer.at("address");
  ASSERT_FALSE(second_address.empty()) << json.output;
  auto second = run_status({"--peer", second_address}, dir->path() / "status-second.log");
  ASSERT_EQ(second.exit_code, 0) << second.output;
  for (const auto& id : peer_ids)
    EXPECT_NE(second.output.find(id), std::string::npos) << id << "\n" << second.output;
  EXPECT_NE(second.output.find(peer_ids[1] + " *"), std::string::npos) << second.output;
}

// Without a swarm: the harness itself, and the command where nothing answers.
class status_without_a_swarm : public ::testing::Test {
 protected:
  temp_directory dir{::testing::UnitTest::GetInstance()->current_test_info()->name()};
};

// The browser check can fail: a page whose data cannot be fetched says so in its DOM, and an
// uncaught exception is both on the console and counted in the DOM.
TEST_F(status_without_a_swarm, the_browser_check_sees_a_page_that_fails) {
  if (!executable(chromium_binary))
    GTEST_SKIP() << chromium_binary << " not found (Debian package 'chromium')";
  metrics_registry registry;
  metrics_http_server server(registry);
  auto serve = [](std::string body) {
    return [body = std::move(body)](const http_request&) {
      http_response response;
      response.content_type = "text/html; charset=utf-8";
      response.body = body;
      return response;
    };
  };
  auto broken = std::string(status_page_html());
  broken.insert(broken.rfind("</body>"), "<script>no_such_function();</script>\n");
  server.add_page("/", serve(std::string(status_page_html())));
  server.add_page("/broken/", serve(broken));
  server.start("127.0.0.1", 0);  // and no status.json anywhere
  auto base = "http://127.0.0.1:" + std::to_string(server.port());

  auto no_data = visit(base + "/", dir.path());
  ASSERT_EQ(no_data.exit_status, 0) << no_data.log;
  EXPECT_NE(no_data.dom.find("data-state=\"error\""), std::string::npos) << no_data.dom;
  EXPECT_NE(no_data.dom.find("Cannot update (the peer answered HTTP 404)"), std::string::npos)
    << no_data.dom;

  auto failing = visit(base + "/broken/", dir.path());
  ASSERT_EQ(failing.exit_status, 0) << failing.log;
  EXPECT_NE(failing.dom.find("data-page-errors=\"1\""), std::string::npos) << failing.dom;
  auto console = failing.console_lines();
  ASSERT_EQ(console.size(), 1u) << failing.log;
  EXPECT_NE(console[0].find("Uncaught ReferenceError: no_such_function"), std::string::npos)
    << console[0];
}

TEST_F(status_without_a_swarm, ddactor_status_fails_with_one_clear_line_in_bounded_time) {
  // Nothing listens there: refused at once.
  auto dead = std::to_string(free_port());
  auto refused = run_status({"--peer", "127.0.0.1:" + dead, "--timeout", "5"},
                            dir.path() / "refused.log");
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_LT(refused.seconds, 20) << refused.output;
  ASSERT_EQ(nonempty_lines(refused.output).size(), 1u) << refused.output;
  EXPECT_TRUE(refused.output.starts_with("ddactor status: cannot get the status of 127.0.0.1:" +
                                         dead + ": cannot connect"))
    << refused.output;

  // Something accepts connections there but never answers: the --timeout bounds the wait.
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(listener, 8), 0);
  socklen_t length = sizeof address;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
  auto silent_port = std::to_string(ntohs(address.sin_port));
  auto silent = run_status({"--peer", "127.0.0.1:" + silent_port, "--timeout", "2"},
                           dir.path() / "silent.log");
  ::close(listener);
  EXPECT_EQ(silent.exit_code, 1) << silent.output;
  EXPECT_GE(silent.seconds, 1.5) << silent.output;
  EXPECT_LT(silent.seconds, 15) << silent.output;
  ASSERT_EQ(nonempty_lines(silent.output).size(), 1u) << silent.output;
  EXPECT_NE(silent.output.find("no connection within 2 s"), std::string::npos) << silent.output;

  // Not an address at all: a usage error.
  auto malformed = run_status({"--peer", "no-port-here"}, dir.path() / "malformed.log");
  EXPECT_EQ(malformed.exit_code, 2) << malformed.output;
  EXPECT_NE(malformed.output.find("is not HOST:PORT"), std::string::npos) << malformed.output;
}

} // namespace
} // namespace ddactor::testing
