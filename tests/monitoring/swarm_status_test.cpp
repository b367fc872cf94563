// Tests of monitoring/swarm_status: the board (what each actor writes, what a snapshot says at a
// given time, roles from the last round, the last 10 rounds, concurrent writers and readers), the
// JSON (round trip, hostile or malformed documents refused with the field named) and the text
// tables (aligned, control characters replaced).
#include "monitoring/swarm_status.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

namespace ddactor {
namespace {

using namespace std::chrono_literals;
using clock_type = swarm_status_board::clock;

const std::string self_id = "11111111aaaaaaaabbbbbbbbcccccccc";
const std::string peer_a = "22222222aaaaaaaabbbbbbbbcccccccc";
const std::string peer_b = "33333333aaaaaaaabbbbbbbbcccccccc";

const peer_status* find_peer(const swarm_status& status, const std::string& id) {
  for (const auto& p : status.peers)
    if (p.peer_id == id)
      return &p;
  return nullptr;
}

// A board as a 3-peer swarm leaves it: membership, progress and one averaged round.
std::unique_ptr<swarm_status_board> three_peer_board(clock_type::time_point t0) {
  auto owned = std::make_unique<swarm_status_board>([] { return std::string("training"); });
  auto& board = *owned;
  board.set_self(self_id, "demo", "127.0.0.1:7000");
  board.set_members({{peer_b, "127.0.0.1:7002", "demo", true, t0 - 4s},
                     {peer_a, "127.0.0.1:7001", "demo", false, t0 - 1s}});
  board.record_progress(self_id, 12, 100.5, t0);
  board.record_progress(peer_a, 12, 50.25, t0 - 500ms);
  round_status round;
  round.epoch = 11;
  round.group_size = 3;
  round.seconds = 0.25;
  round.bytes_sent = 2048;
  round.bytes_received = 4096;
  round.result = round_result::averaged;
  round.leader_id = peer_a;
  round.members = {peer_b, self_id, peer_a};
  board.record_round(round, t0 - 2s);
  return owned;
}

TEST(swarm_status_board_test, a_snapshot_joins_what_membership_progress_and_averager_wrote) {
  auto t0 = clock_type::now();
  auto owned = three_peer_board(t0);
  auto& board = *owned;
  auto status = board.snapshot(t0);

  EXPECT_EQ(status.peer_id, self_id);
  EXPECT_EQ(status.swarm_id, "demo");
  EXPECT_EQ(status.address, "127.0.0.1:7000");
  EXPECT_EQ(status.activity, "training");
  ASSERT_EQ(status.peers.size(), 3u);
  // Sorted by id, this peer included.
  EXPECT_EQ(status.peers[0].peer_id, self_id);
  EXPECT_EQ(status.peers[1].peer_id, peer_a);
  EXPECT_EQ(status.peers[2].peer_id, peer_b);

  const auto& self = status.peers[0];
  EXPECT_TRUE(self.is_self);
  EXPECT_EQ(self.epoch, 12);
  EXPECT_DOUBLE_EQ(self.samples_per_second.value(), 100.5);
  EXPECT_EQ(self.role, round_role::member);
  EXPECT_FALSE(self.last_seen_seconds.has_value());
  EXPECT_EQ(self.reachability, peer_reachability::unknown);

  const auto& a = status.peers[1];
  EXPECT_EQ(a.address, "127.0.0.1:7001");
  EXPECT_EQ(a.epoch, 12);
  EXPECT_EQ(a.role, round_role::leader);
  EXPECT_FALSE(a.suspected);
  // The newer of membership's (1 s) and progress' (0.5 s) news.
  EXPECT_NEAR(a.last_seen_seconds.value(), 0.5, 1e-6);
  EXPECT_EQ(a.reachability, peer_reachability::reachable);

  const auto& b = status.peers[2];
  EXPECT_TRUE(b.suspected);
  EXPECT_FALSE(b.epoch.has_value());  // no report yet
  EXPECT_EQ(b.role, round_role::member);
  EXPECT_NEAR(b.last_seen_seconds.value(), 4.0, 1e-6);

  ASSERT_EQ(status.rounds.size(), 1u);
  const auto& round = status.rounds[0];
  EXPECT_EQ(round.epoch, 11);
  EXPECT_EQ(round.group_size, 3);
  EXPECT_EQ(round.result, round_result::averaged);
  EXPECT_EQ(round.leader_id, peer_a);
  EXPECT_EQ(round.members, (std::vector<std::string>{self_id, peer_a, peer_b}));
  EXPECT_NEAR(round.ended_seconds_ago, 2.0, 1e-6);

  // Time passes for the same facts.
  auto later = board.snapshot(t0 + 10s);
  EXPECT_NEAR(find_peer(later, peer_a)->last_seen_seconds.value(), 10.5, 1e-6);
  EXPECT_NEAR(later.rounds[0].ended_seconds_ago, 12.0, 1e-6);
}

TEST(swarm_status_board_test, a_peer_that_stepped_alone_is_alone_and_the_others_roles_unknown) {
  auto t0 = clock_type::now();
  auto owned = three_peer_board(t0);
  auto& board = *owned;
  round_status alone;
  alone.epoch = 12;
  alone.result = round_result::alone;
  alone.detail = "matchmaking timed out";
  alone.leader_id = peer_a;  // ignored for the roles of an alone round
  board.record_round(alone, t0);
  auto status = board.snapshot(t0);
  EXPECT_EQ(find_peer(status, self_id)->role, round_role::alone);
  EXPECT_EQ(find_peer(status, peer_a)->role, round_role::unknown);
  EXPECT_EQ(find_peer(status, peer_b)->role, round_role::unknown);
  ASSERT_EQ(status.rounds.size(), 2u);
  EXPECT_EQ(status.rounds[0].epoch, 12);  // newest first
  EXPECT_EQ(status.rounds[0].detail, "matchmaking timed out");
}

TEST(swarm_status_board_test, keeps_the_last_ten_rounds_newest_first) {
  swarm_status_board board;
  auto t0 = clock_type::now();
  for (int epoch = 0; epoch < 25; ++epoch) {
    round_status round;
    round.epoch = epoch;
    board.record_round(round, t0 + std::chrono::seconds(epoch));
  }
  auto status = board.snapshot(t0 + 30s);
  ASSERT_EQ(status.rounds.size(), swarm_status_board::max_rounds);
  for (std::size_t i = 0; i < status.rounds.size(); ++i)
    EXPECT_EQ(status.rounds[i].epoch, 24 - static_cast<int64_t>(i));
}

TEST(swarm_status_board_test, peers_that_left_the_view_are_forgotten_with_their_progress) {
  auto t0 = clock_type::now();
  auto owned = three_peer_board(t0);
  auto& board = *owned;
  board.set_members({{peer_b, "127.0.0.1:7002", "demo", false, t0}});
  auto status = board.snapshot(t0);
  ASSERT_EQ(status.peers.size(), 2u);
  EXPECT_EQ(find_peer(status, peer_a), nullptr);
  // Back in the view later: its old report is gone, not shown as current.
  board.set_members({{peer_a, "127.0.0.1:7001", "demo", false, t0}});
  EXPECT_FALSE(find_peer(board.snapshot(t0), peer_a)->epoch.has_value());
  // This peer's own progress survives every change of the view.
  EXPECT_EQ(find_peer(board.snapshot(t0), self_id)->epoch, 12);
}

TEST(swarm_status_board_test, a_peer_outside_a_swarm_reports_only_its_activity) {
  swarm_status_board board([] { return std::string("training"); });
  auto status = board.snapshot();
  EXPECT_TRUE(status.peer_id.empty());
  EXPECT_TRUE(status.peers.empty());
  EXPECT_EQ(status.activity, "training");
  EXPECT_NE(render_swarm_status_text(status).find("not part of a swarm"), std::string::npos);
  EXPECT_EQ(swarm_status_board().snapshot().activity, "unknown");
}

TEST(swarm_status_board_test, writers_and_readers_on_several_threads_see_whole_updates) {
  swarm_status_board board;
  board.set_self(self_id, "demo", "127.0.0.1:7000");
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  writers.emplace_back([&] {
    for (int i = 0; !stop; ++i)
      board.set_members({{peer_a, "127.0.0.1:" + std::to_string(7000 + i % 100), "demo", false,
                          clock_type::now()}});
  });
  writers.emplace_back([&] {
    for (int64_t epoch = 0; !stop; ++epoch)
      board.record_progress(peer_a, epoch, 1.0, clock_type::now());
  });
  writers.emplace_back([&] {
    for (int64_t epoch = 0; !stop; ++epoch) {
      round_status round;
      round.epoch = epoch;
      board.record_round(round, clock_type::now());
    }
  });
  for (int i = 0; i < 2000; ++i) {
    auto status = board.snapshot();
    ASSERT_LE(status.rounds.size(), swarm_status_board::max_rounds);
    ASSERT_LE(status.peers.size(), 2u);
    for (std::size_t k = 1; k < status.rounds.size(); ++k)
      ASSERT_GT(status.rounds[k - 1].epoch, status.rounds[k].epoch);
    auto text = render_swarm_status_json(status);
    ASSERT_FALSE(text.empty());
  }
  stop = true;
  for (auto& t : writers)
    t.join();
}

// --- JSON ---------------------------------------------------------------------------------------

TEST(swarm_status_json_test, the_json_round_trips_every_field) {
  auto t0 = clock_type::now();
  auto status = three_peer_board(t0)->snapshot(t0);
  auto text = render_swarm_status_json(status);
  auto back = parse_swarm_status_json(text);
  EXPECT_EQ(back.peer_id, status.peer_id);
  EXPECT_EQ(back.swarm_id, status.swarm_id);
  EXPECT_EQ(back.address, status.address);
  EXPECT_EQ(back.activity, status.activity);
  EXPECT_EQ(back.version, status.version);
  ASSERT_EQ(back.peers.size(), status.peers.size());
  for (std::size_t i = 0; i < back.peers.size(); ++i) {
    const auto& x = back.peers[i];
    const auto& y = status.peers[i];
    EXPECT_EQ(x.peer_id, y.peer_id);
    EXPECT_EQ(x.address, y.address);
    EXPECT_EQ(x.swarm_id, y.swarm_id);
    EXPECT_EQ(x.is_self, y.is_self);
    EXPECT_EQ(x.suspected, y.suspected);
    EXPECT_EQ(x.epoch, y.epoch);
    EXPECT_EQ(x.samples_per_second, y.samples_per_second);
    EXPECT_EQ(x.role, y.role);
    EXPECT_EQ(x.last_seen_seconds, y.last_seen_seconds);
    EXPECT_EQ(x.reachability, y.reachability);
  }
  ASSERT_EQ(back.rounds.size(), 1u);
  EXPECT_EQ(back.rounds[0].epoch, 11);
  EXPECT_EQ(back.rounds[0].bytes_sent, 2048u);
  EXPECT_EQ(back.rounds[0].bytes_received, 4096u);
  EXPECT_EQ(back.rounds[0].members, status.rounds[0].members);
  EXPECT_EQ(back.rounds[0].result, round_result::averaged);

  // The page reads these names; absent facts are null, short ids are there for people.
  auto document = nlohmann::json::parse(text);
  EXPECT_EQ(document.at("short_id"), "11111111");
  EXPECT_TRUE(document.at("peers")[0].at("last_seen_seconds").is_null());
  EXPECT_TRUE(document.at("peers")[2].at("epoch").is_null());
  EXPECT_EQ(document.at("peers")[1].at("role"), "leader");
  EXPECT_EQ(document.at("peers")[1].at("short_id"), "22222222");
}

TEST(swarm_status_json_test, invalid_utf8_in_a_string_is_replaced_not_thrown_on) {
  swarm_status status;
  status.peer_id = self_id;
  status.activity = std::string("bad \xff byte");
  auto text = render_swarm_status_json(status);
  EXPECT_EQ(parse_swarm_status_json(text).activity, "bad \xEF\xBF\xBD byte");
}

struct malformed_case {
  const char* name;
  const char* document;
  const char* field;  // named in the error
};

class swarm_status_malformed : public ::testing::TestWithParam<malformed_case> {};

TEST_P(swarm_status_malformed, is_refused_naming_the_field) {
  try {
    parse_swarm_status_json(GetParam().document);
    FAIL() << "accepted " << GetParam().document;
  } catch (const swarm_status_error& error) {
    EXPECT_NE(std::string(error.what()).find(GetParam().field), std::string::npos)
      << error.what();
  }
}

INSTANTIATE_TEST_SUITE_P(
  documents, swarm_status_malformed,
  ::testing::Values(
    malformed_case{"not_json", "<html>", "not JSON"},
    malformed_case{"not_an_object", "[1,2]", "not an object"},
    malformed_case{"no_peers", R"({"rounds":[]})", "peers"},
    malformed_case{"peers_not_a_list", R"({"peers":{},"rounds":[]})", "peers"},
    malformed_case{"no_rounds", R"({"peers":[]})", "rounds"},
    malformed_case{"peer_without_id", R"({"peers":[{}],"rounds":[]})", "peers[0].peer_id"},
    malformed_case{"id_not_a_string", R"({"peers":[{"peer_id":7}],"rounds":[]})",
                   "peers[0].peer_id"},
    malformed_case{"epoch_not_an_integer",
                   R"({"peers":[{"peer_id":"x","epoch":"7"}],"rounds":[]})", "peers[0].epoch"},
    malformed_case{"epoch_too_large",
                   R"({"peers":[{"peer_id":"x","epoch":18446744073709551615}],"rounds":[]})",
                   "peers[0].epoch"},
    malformed_case{"negative_rate",
                   R"({"peers":[{"peer_id":"x","samples_per_second":-1}],"rounds":[]})",
                   "peers[0].samples_per_second"},
    malformed_case{"self_not_a_bool", R"({"peers":[{"peer_id":"x","self":1}],"rounds":[]})",
                   "peers[0].self"},
    malformed_case{"negative_bytes", R"({"peers":[],"rounds":[{"bytes_sent":-5}]})",
                   "rounds[0].bytes_sent"},
    malformed_case{"huge_group", R"({"peers":[],"rounds":[{"group_size":100000}]})",
                   "rounds[0].group_size"},
    malformed_case{"members_not_ids", R"({"peers":[],"rounds":[{"members":[1]}]})",
                   "rounds[0].members"}),
  [](const auto& info) { return std::string(info.param.name); });

TEST(swarm_status_json_test, oversized_documents_are_refused) {
  nlohmann::json many_peers = {{"peers", nlohmann::json::array()}, {"rounds", nlohmann::json::array()}};
  for (int i = 0; i < 5000; ++i)
    many_peers["peers"].push_back({{"peer_id", "x"}});
  EXPECT_THROW(parse_swarm_status_json(many_peers.dump()), swarm_status_error);
  nlohmann::json long_string = {{"peer_id", std::string(100000, 'a')},
                                {"peers", nlohmann::json::array()},
                                {"rounds", nlohmann::json::array()}};
  EXPECT_THROW(parse_swarm_status_json(long_string.dump()), swarm_status_error);
}

TEST(swarm_status_json_test, unknown_fields_and_names_from_a_newer_peer_are_tolerated) {
  auto status = parse_swarm_status_json(
    R"({"peer_id":"p","new_field":{"a":1},"peers":[{"peer_id":"p","role":"observer",
        "reachability":"relayed"}],"rounds":[{"result":"partial"}]})");
  ASSERT_EQ(status.peers.size(), 1u);
  EXPECT_EQ(status.peers[0].role, round_role::unknown);
  EXPECT_EQ(status.peers[0].reachability, peer_reachability::unknown);
  // A result this version cannot name is never shown as a success.
  EXPECT_EQ(status.rounds[0].result, round_result::failed);
}

// --- text ---------------------------------------------------------------------------------------

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  return lines;
}

TEST(swarm_status_text_test, tables_are_aligned_and_say_what_is_unknown) {
  auto t0 = clock_type::now();
  auto text = render_swarm_status_text(three_peer_board(t0)->snapshot(t0));
  auto lines = lines_of(text);
  ASSERT_GE(lines.size(), 10u) << text;
  EXPECT_EQ(lines[0], "Peer 11111111 at 127.0.0.1:7000, swarm 'demo', epoch 12, training");
  EXPECT_EQ(lines[1], "3 peers in view, 150.8 samples/s together");
  // The peers table: a header and one row per peer, columns starting at the same offsets.
  auto header = std::find_if(lines.begin(), lines.end(),
                             [](const std::string& l) { return l.starts_with("PEER "); });
  ASSERT_NE(header, lines.end()) << text;
  auto address_column = header->find("ADDRESS");
  auto reachability_column = header->find("REACHABILITY");
  for (int row = 1; row <= 3; ++row) {
    const auto& line = *(header + row);
    EXPECT_EQ(line.find("127.0.0.1:700"), address_column) << text;
    EXPECT_TRUE(line.substr(reachability_column).starts_with("unknown") ||
                line.substr(reachability_column).starts_with("reachable"))
      << text;
  }
  EXPECT_NE((header + 1)->find(self_id + " *"), std::string::npos);
  EXPECT_NE((header + 1)->find("this peer"), std::string::npos);
  EXPECT_NE((header + 2)->find("leader"), std::string::npos);
  EXPECT_NE((header + 3)->find("suspected"), std::string::npos);
  EXPECT_NE((header + 3)->find("4.0 s ago"), std::string::npos);
  // The rounds table.
  auto rounds = std::find_if(lines.begin(), lines.end(),
                             [](const std::string& l) { return l.starts_with("EPOCH "); });
  ASSERT_NE(rounds, lines.end()) << text;
  const auto& round = *(rounds + 1);
  EXPECT_NE(round.find("averaged"), std::string::npos) << text;
  EXPECT_NE(round.find("22222222"), std::string::npos) << text;
  EXPECT_NE(round.find("2.0 KiB"), std::string::npos) << text;
  EXPECT_NE(round.find("4.0 KiB"), std::string::npos) << text;
  EXPECT_NE(round.find("0.25 s"), std::string::npos) << text;
}

TEST(swarm_status_text_test, a_hostile_status_cannot_write_control_characters) {
  swarm_status status;
  status.peer_id = self_id;
  status.swarm_id = "evil\x1b[2J\rswarm";
  status.activity = "training\nFAKE LINE";
  peer_status peer;
  peer.peer_id = "\x1b]0;title\x07" + std::string(200, 'x');
  peer.address = "host\x1b[31m:1";
  status.peers.push_back(peer);
  round_status round;
  round.detail = "reason\r\n\x1b[1A";
  status.rounds.push_back(round);
  auto text = render_swarm_status_text(status);
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    EXPECT_TRUE(c == '\n' || (byte >= 0x20 && byte < 0x7f)) << "byte " << int(byte);
  }
  EXPECT_EQ(text.find("\nFAKE LINE"), std::string::npos);  // no line of its own
  for (const auto& line : lines_of(text))
    EXPECT_LT(line.size(), 400u);  // cells are cut
}

TEST(swarm_status_text_test, a_swarm_column_appears_only_when_swarms_differ) {
  auto t0 = clock_type::now();
  auto status = three_peer_board(t0)->snapshot(t0);
  EXPECT_EQ(render_swarm_status_text(status).find("SWARM"), std::string::npos);
  status.peers[1].swarm_id = "demo/expert-1";
  EXPECT_NE(render_swarm_status_text(status).find("SWARM"), std::string::npos);
}

} // namespace
} // namespace ddactor
