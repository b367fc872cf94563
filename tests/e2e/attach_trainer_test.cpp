// End-to-end tests of trainers added to a running peer (run.attach, `ddactor trainer`): a
// trainer process attaches to a lone peer, which trains with it from its next step (each step
// then takes both trainers' shards: the data position says so, to the example); killed with
// SIGKILL, it is left out and the peer goes on from its newest checkpoint and stops cleanly,
// having skipped and repeated no example. A process with another key, and bytes of other
// protocols, are refused, logged and counted, and the peer trains on unharmed; when it stops,
// its attached trainer ends too.
#include <gtest/gtest.h>
#include <httplib.h>

#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <regex>
#include <thread>

#include "runtime/checkpoint_files.hpp"
#include "tests/e2e/checkpoint_compare.hpp"
#include "tests/e2e/process.hpp"
#include "tests/runtime/secure/socket_helpers.hpp"

namespace ddactor::testing {
namespace {

using namespace std::chrono_literals;

// A model big enough that the run does not finish a data pass while the test watches, and that
// a step's compute outweighs the node's sum.
const std::vector<std::string> slower_model{"--set", "model.hidden_size=128", "--set",
                                            "model.depth=3", "--set", "model.patch_size=4"};

class attach_trainer : public ::testing::Test {
 protected:
  temp_directory dir{::testing::UnitTest::GetInstance()->current_test_info()->name()};
  std::filesystem::path log(const std::string& name) { return dir.path() / (name + ".log"); }
  std::filesystem::path config(const std::string& name, const std::string& more = {}) {
    auto path = dir.path() / (name + ".toml");
    write_text_file(path, tiny_run_config(dir.path() / name, 100000) + more);
    return path;
  }
  // A process that ends with exit 0 within `timeout`.
  static void expect_exit_ok(child_process& process, std::chrono::seconds timeout) {
    const auto code = process.wait_for(timeout);
    ASSERT_TRUE(code.has_value()) << "did not stop:\n" << process.output();
    EXPECT_EQ(*code, 0) << process.output();
  }
  // Ctrl-C to the peer; it ends with exit 0.
  static void stop_with_ctrl_c(child_process& peer) {
    peer.send_signal(SIGINT);
    expect_exit_ok(peer, 120s);
  }
  std::vector<std::string> args(std::vector<std::string> head,
                                const std::filesystem::path& config_file) {
    head.insert(head.end(), {"--config", config_file.string(), "--set", "run.attach=true"});
    head.insert(head.end(), slower_model.begin(), slower_model.end());
    return head;
  }
};

// Every match of `pattern`'s first group in `text`, in order.
std::vector<double> numbers_after(const std::string& text, const std::string& pattern) {
  std::vector<double> found;
  const std::regex re(pattern);
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator();
       ++it)
    found.push_back(std::stod((*it)[1].str()));
  return found;
}

// Waits until `needle` appears at least `count` times in the process's output.
bool wait_for_count(child_process& process, const std::string& needle, size_t count,
                    std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (process.count_in_output(needle) >= count)
      return true;
    if (!process.running())
      return false;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

double mean(const std::vector<double>& values, size_t from, size_t to) {
  double sum = 0;
  for (size_t i = from; i < to; ++i)
    sum += values[i];
  return to > from ? sum / static_cast<double>(to - from) : 0;
}

TEST_F(attach_trainer, an_attached_trainer_joins_the_steps_and_its_death_loses_no_example) {
  const auto path = config("run");
  child_process peer(DDACTOR_BINARY, args({}, path), log("peer"));
  ASSERT_TRUE(peer.wait_for_output("may attach on 127.0.0.1:", 120s)) << peer.output();
  // Alone for a few log lines (every 5 steps): its pace before.
  ASSERT_TRUE(wait_for_count(peer, " samples/s ", 3, 120s)) << peer.output();
  const auto alone_lines = peer.count_in_output(" samples/s ");

  auto trainer = std::make_unique<child_process>(DDACTOR_BINARY, args({"trainer"}, path),
                                                 log("trainer"));
  const auto pid = std::to_string(trainer->pid());
  ASSERT_TRUE(peer.wait_for_output("trainer attached from pid " + pid + " (cpu)", 120s))
    << peer.output() << trainer->output();
  ASSERT_TRUE(peer.wait_for_output("2 trainers in this peer", 120s))
    << peer.output() << trainer->output();
  EXPECT_TRUE(trainer->wait_for_output("joins the node's trainers as trainer 1 of 2", 60s))
    << trainer->output();
  const auto joined_lines = peer.count_in_output(" samples/s ");
  ASSERT_TRUE(wait_for_count(peer, " samples/s ", joined_lines + 8, 120s)) << peer.output();
  const auto together_lines = peer.count_in_output(" samples/s ");

  trainer->send_signal(SIGKILL);
  ASSERT_TRUE(trainer->wait_for(30s).has_value());
  ASSERT_TRUE(wait_for_count(peer, "trainer ready:", 3, 120s)) << peer.output();
  ASSERT_TRUE(wait_for_count(peer, " samples/s ", together_lines + 3, 120s)) << peer.output();
  ASSERT_NO_FATAL_FAILURE(stop_with_ctrl_c(peer));

  const auto out = peer.output();
  // Left out: when its connection closed, or when the set's sum failed, whichever came first.
  EXPECT_NE(out.find("the attached trainer of pid " + pid), std::string::npos) << out;
  const auto starts = numbers_after(out, R"(trainer ready: .* starting at step (\d+))");
  ASSERT_EQ(starts.size(), 3u) << out;
  const auto joined_at = static_cast<int64_t>(starts[1]);
  const auto restarted_at = static_cast<int64_t>(starts[2]);
  EXPECT_NE(out.find("restart with 2 trainers (1 here, 1 attached)"), std::string::npos) << out;
  EXPECT_GE(restarted_at, joined_at);
  // Rank 0 stopped between two steps, and the new set started where it stopped.
  EXPECT_EQ(numbers_after(out, R"(stopping at step (\d+) for a new set)"),
            std::vector<double>{starts[1]})
    << out;
  // The final checkpoint's data position counts every step's examples once: 16 a step alone,
  // 32 (both shards) a step with the attached trainer, up to the checkpoint the set restarted
  // from when it died, and 16 again since.
  const auto last = newest_checkpoint(dir.path() / "run");
  const auto step = std::stoll(last.metadata.at("step"));
  EXPECT_GT(step, restarted_at);
  EXPECT_EQ(last.metadata.at("data_epoch"), "0");
  EXPECT_EQ(std::stoll(last.metadata.at("data_position")),
            16 * joined_at + 32 * (restarted_at - joined_at) + 16 * (step - restarted_at))
    << "joined at " << joined_at << ", restarted at " << restarted_at << ", ended at " << step;

  // The pace: the node's samples/s (rank 0's log) alone, with the attached trainer, and after.
  const auto rates = numbers_after(out, R"(\| ([0-9.]+) samples/s \|)");
  ASSERT_GE(rates.size(), together_lines);
  std::printf("samples/s alone %.1f, with the attached trainer %.1f (%zu lines), after its "
              "death %.1f\n",
              mean(rates, 1, alone_lines), mean(rates, joined_lines + 1, together_lines),
              together_lines - joined_lines - 1, mean(rates, together_lines + 1, rates.size()));
}

// A lone peer of a swarm: the attached trainer follows rank 0's node commands from another
// process, and its weights' digest equals rank 0's at every round; killed, it is left out and
// the peer trains on by itself (its restarted trainer redoes the epochs since its checkpoint).
TEST_F(attach_trainer, in_a_swarm_it_joins_from_the_next_epoch_and_its_death_is_survived) {
  const auto path = config("run");
  const std::vector<std::string> swarm{"--set", "network.listen=\"127.0.0.1:0\"", "--set",
                                       "train.target_batch_size=64", "--set", "train.log_every=1"};
  auto peer_args = args({}, path);
  peer_args.insert(peer_args.end(), swarm.begin(), swarm.end());
  child_process peer(DDACTOR_BINARY, peer_args, log("peer"));
  ASSERT_TRUE(peer.wait_for_output("may attach on 127.0.0.1:", 120s)) << peer.output();
  ASSERT_TRUE(wait_for_count(peer, " samples/s ", 3, 120s)) << peer.output();
  auto trainer = std::make_unique<child_process>(DDACTOR_BINARY, args({"trainer"}, path),
                                                 log("trainer"));
  ASSERT_TRUE(peer.wait_for_output("2 trainers in this peer", 120s))
    << peer.output() << trainer->output();
  const auto joined_lines = peer.count_in_output(" samples/s ");
  ASSERT_TRUE(wait_for_count(peer, " samples/s ", joined_lines + 8, 120s)) << peer.output();
  trainer->send_signal(SIGKILL);
  ASSERT_TRUE(trainer->wait_for(30s).has_value());
  ASSERT_TRUE(wait_for_count(peer, "trainer ready:", 3, 120s)) << peer.output();
  const auto alone_again = peer.count_in_output(" samples/s ");
  ASSERT_TRUE(wait_for_count(peer, " samples/s ", alone_again + 5, 120s)) << peer.output();
  ASSERT_NO_FATAL_FAILURE(stop_with_ctrl_c(peer));

  const auto out = peer.output();
  const auto starts = numbers_after(out, R"(trainer ready: .* starting at epoch (\d+))");
  ASSERT_EQ(starts.size(), 3u) << out;
  EXPECT_NE(out.find("restart with 2 trainers (1 here, 1 attached)"), std::string::npos) << out;
  EXPECT_EQ(out.find("differ from trainer 0's"), std::string::npos) << out;
  // Rank 0 finished its epoch (its round applied) before it stopped: the new set starts at the
  // next epoch, which nobody trains twice.
  EXPECT_EQ(numbers_after(out, R"(stopping at epoch (\d+) for a new set)"),
            std::vector<double>{starts[1]})
    << out;
  EXPECT_NE(read_text_file(log("trainer")).find("joins the node's trainers as trainer 1 of 2"),
            std::string::npos);
  const auto last = newest_checkpoint(dir.path() / "run");
  EXPECT_GT(std::stoll(last.metadata.at("step")), static_cast<int64_t>(starts[2]));
}

TEST_F(attach_trainer, a_stranger_and_other_protocols_are_refused_and_counted) {
  const auto metrics_port = free_port();
  const auto path = config("run", "[monitoring]\nlisten = \"127.0.0.1:" +
                                    std::to_string(metrics_port) + "\"\n");
  child_process peer(DDACTOR_BINARY, args({}, path), log("peer"));
  ASSERT_TRUE(peer.wait_for_output("may attach on 127.0.0.1:", 120s)) << peer.output();
  ASSERT_TRUE(wait_for_count(peer, " samples/s ", 1, 120s)) << peer.output();
  auto address = read_text_file(dir.path() / "run" / "attach.addr");
  address.erase(address.find_last_not_of('\n') + 1);
  const auto port = static_cast<uint16_t>(std::stoi(address.substr(address.find(':') + 1)));

  // Another run's key (the stranger can reach the port, but not read this run's key).
  const auto stranger = config("stranger");
  std::filesystem::create_directories(dir.path() / "stranger");
  write_text_file(dir.path() / "stranger" / "attach.key", std::string(64, 'a') + "\n");
  std::filesystem::permissions(dir.path() / "stranger" / "attach.key",
                               std::filesystem::perms::owner_read |
                                 std::filesystem::perms::owner_write);
  EXPECT_NE(run_ddactor({"trainer", "--config", stranger.string(), "--peer", address},
                        log("stranger"), 120s),
            0);
  EXPECT_NE(read_text_file(log("stranger")).find("refused this trainer"), std::string::npos)
    << read_text_file(log("stranger"));

  // HTTP, a frame of 4 GiB, and a frame of no known type: closed without a word.
  const std::vector<std::vector<uint8_t>> garbage{
    {'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1', '.', '1', '\r', '\n'},
    {0xff, 0xff, 0xff, 0xff, 1, 2, 3},
    {0, 0, 0, 3, 9, 9, 9},
  };
  for (const auto& bytes : garbage) {
    const int fd = connect_to(port);
    ASSERT_GE(fd, 0);
    ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    EXPECT_TRUE(read_bytes(fd, 1, 10s).empty());
    ::close(fd);
  }
  ASSERT_TRUE(peer.wait_for_output("wrong_key", 30s)) << peer.output();
  ASSERT_TRUE(wait_for_count(peer, ": oversized", 2, 30s)) << peer.output();
  ASSERT_TRUE(peer.wait_for_output(": malformed", 30s)) << peer.output();

  httplib::Client client("127.0.0.1", metrics_port);
  const auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics) << "no /metrics";
  EXPECT_NE(metrics->body.find("ddactor_attach_refused_total{reason=\"wrong_key\"} 1"),
            std::string::npos)
    << metrics->body;
  EXPECT_NE(metrics->body.find("ddactor_attach_refused_total{reason=\"oversized\"} 2"),
            std::string::npos);
  EXPECT_NE(metrics->body.find("ddactor_attach_refused_total{reason=\"malformed\"} 1"),
            std::string::npos);
  EXPECT_NE(metrics->body.find("ddactor_attached_trainers 0"), std::string::npos);

  // Unharmed: it trains on alone, still admits the run's own trainer, and when it stops that
  // trainer ends with it, exit 0.
  const auto lines = peer.count_in_output(" samples/s ");
  ASSERT_TRUE(wait_for_count(peer, " samples/s ", lines + 2, 120s)) << peer.output();
  EXPECT_EQ(peer.count_in_output("trainer ready:"), 1u) << peer.output();
  child_process trainer(DDACTOR_BINARY, args({"trainer"}, path), log("trainer"));
  ASSERT_TRUE(peer.wait_for_output("2 trainers in this peer", 120s))
    << peer.output() << trainer.output();
  const auto joined = peer.count_in_output(" samples/s ");
  ASSERT_TRUE(wait_for_count(peer, " samples/s ", joined + 2, 120s)) << peer.output();
  ASSERT_NO_FATAL_FAILURE(stop_with_ctrl_c(peer));
  ASSERT_NO_FATAL_FAILURE(expect_exit_ok(trainer, 60s));
  EXPECT_NE(trainer.output().find("the peer's run is over"), std::string::npos)
    << trainer.output();
}

// An attached trainer whose device fits 4 examples at a time (debug.out_of_memory_above = 4,
// batches of 16) runs out of memory in its first step; the peer leaves it out and goes on, and
// the trainer attaches again after a backoff with half the micro-batch: 8 fails too, 4 trains.
// The node then trains with it, and both end with exit 0 when the peer stops.
TEST_F(attach_trainer, out_of_memory_attaches_again_with_smaller_micro_batches) {
  const auto path = config("run");
  child_process peer(DDACTOR_BINARY, args({}, path), log("peer"));
  ASSERT_TRUE(peer.wait_for_output("may attach on 127.0.0.1:", 120s)) << peer.output();
  ASSERT_TRUE(wait_for_count(peer, " samples/s ", 1, 120s)) << peer.output();
  child_process trainer(DDACTOR_BINARY,
                        args({"trainer", "--set", "debug.out_of_memory_above=4"}, path),
                        log("trainer"));
  ASSERT_TRUE(trainer.wait_for_output("attaches again with micro-batches of 8", 120s))
    << trainer.output() << peer.output();
  ASSERT_TRUE(trainer.wait_for_output("attaches again with micro-batches of 4", 120s))
    << trainer.output() << peer.output();
  ASSERT_TRUE(wait_for_count(trainer, "joins the node's trainers as trainer 1 of 2", 3, 120s))
    << trainer.output() << peer.output();
  // Trains with the node now: the peer logs steps of the set of two, and leaves nobody out.
  const auto left_out = peer.count_in_output("they go on without the attached trainer");
  EXPECT_EQ(left_out, 2u) << peer.output();
  const auto lines = peer.count_in_output(" samples/s ");
  ASSERT_TRUE(wait_for_count(peer, " samples/s ", lines + 4, 120s)) << peer.output();
  EXPECT_EQ(peer.count_in_output("they go on without the attached trainer"), left_out)
    << peer.output();
  EXPECT_EQ(trainer.count_in_output("ran out of memory at"), 2u) << trainer.output();
  ASSERT_NO_FATAL_FAILURE(stop_with_ctrl_c(peer));
  ASSERT_NO_FATAL_FAILURE(expect_exit_ok(trainer, 60s));
}

} // namespace
} // namespace ddactor::testing
