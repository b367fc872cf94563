// The peer's attach door over real loopback sockets: a trainer with the key attaches, receives
// assignments and the end, and its departure is reported; a wrong key, a huge frame, a frame
// of another protocol, a silent or vanishing client and too many handshakes are refused and
// reported by reason, and the door still admits the next trainer.
#include "runtime/attach_listener.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/attach_client.hpp"
#include "tests/runtime/secure/socket_helpers.hpp"

namespace ddactor {
namespace {

attach_key key_of(uint8_t fill) {
  attach_key key{};
  key.fill(fill);
  return key;
}

// What the door reported, for the test thread to wait on.
struct door_events {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<uint64_t> attached;
  std::vector<uint64_t> gone;
  std::map<attach_refusal, int> refused;

  attach_listener_options options(const attach_key& key) {
    attach_listener_options door;
    door.key = key;
    door.handshake_timeout = std::chrono::milliseconds(300);
    door.max_handshakes = 2;
    door.on_attached = [this](uint64_t id, const attach_client_info&) {
      record([&] { attached.push_back(id); });
    };
    door.on_gone = [this](uint64_t id) { record([&] { gone.push_back(id); }); };
    door.on_refused = [this](attach_refusal reason, const std::string&) {
      record([&] { refused[reason] += 1; });
    };
    return door;
  }
  template <class Change>
  void record(Change&& change) {
    std::lock_guard<std::mutex> lock(mutex);
    change();
    changed.notify_all();
  }
  template <class Condition>
  bool wait_until(Condition&& condition) {
    std::unique_lock<std::mutex> lock(mutex);
    return changed.wait_for(lock, std::chrono::seconds(10), condition);
  }
};

TEST(attach_listener, a_trainer_with_the_key_attaches_and_hears_the_peer) {
  door_events events;
  attach_listener door(events.options(key_of(1)));
  attach_connection trainer("127.0.0.1", door.port(), key_of(1), {77, "cpu"},
                            std::chrono::seconds(5));
  ASSERT_TRUE(events.wait_until([&] { return events.attached.size() == 1; }));
  attach_assignment a;
  a.generation = 3;
  a.rank = 1;
  a.ranks = 2;
  a.store_port = 1234;
  a.store_prefix = "set-x/";
  ASSERT_TRUE(door.send(events.attached[0], encode_assignment(a)));
  ASSERT_TRUE(door.send(events.attached[0], encode_end()));
  auto first = trainer.next();
  ASSERT_TRUE(first);
  ASSERT_TRUE(decode_assignment(*first));
  EXPECT_EQ(decode_assignment(*first)->generation, 3u);
  auto second = trainer.next();
  ASSERT_TRUE(second);
  EXPECT_TRUE(is_end(*second));
  door.close(events.attached[0]);
  EXPECT_FALSE(trainer.next());
  ASSERT_TRUE(events.wait_until([&] { return events.gone.size() == 1; }));
  EXPECT_TRUE(events.refused.empty());
}

TEST(attach_listener, strangers_and_garbage_are_refused_and_the_door_stays_open) {
  door_events events;
  attach_listener door(events.options(key_of(1)));
  EXPECT_THROW(attach_connection("127.0.0.1", door.port(), key_of(2), {1, "cpu"},
                                 std::chrono::seconds(5)),
               attach_error);
  ASSERT_TRUE(events.wait_until([&] { return events.refused[attach_refusal::wrong_key] == 1; }));
  const std::vector<std::vector<uint8_t>> garbage{
    {'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1', '.', '1', '\r', '\n'},
    {0xff, 0xff, 0xff, 0xff, 1, 2, 3},
    {0, 0, 0, 3, 9, 9, 9},
  };
  for (const auto& bytes : garbage) {
    const int fd = connect_to(door.port());
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
    EXPECT_TRUE(read_bytes(fd, 1).empty());  // closed without a word
    ::close(fd);
  }
  ASSERT_TRUE(events.wait_until([&] {
    return events.refused[attach_refusal::oversized] == 2 &&
           events.refused[attach_refusal::malformed] == 1;
  }));
  // A client that says nothing is refused at the deadline; one that leaves, as closed.
  const int silent = connect_to(door.port());
  ASSERT_TRUE(events.wait_until([&] { return events.refused[attach_refusal::timeout] == 1; }));
  ::close(silent);
  ::close(connect_to(door.port()));
  ASSERT_TRUE(events.wait_until([&] { return events.refused[attach_refusal::closed] == 1; }));
  // The right key still attaches.
  attach_connection trainer("127.0.0.1", door.port(), key_of(1), {1, "cpu"},
                            std::chrono::seconds(5));
  ASSERT_TRUE(events.wait_until([&] { return events.attached.size() == 1; }));
}

TEST(attach_listener, handshakes_beyond_the_limit_are_refused_as_busy) {
  door_events events;
  attach_listener door(events.options(key_of(1)));
  std::vector<int> waiting;
  for (int i = 0; i < 3; ++i)
    waiting.push_back(connect_to(door.port()));
  ASSERT_TRUE(events.wait_until([&] { return events.refused[attach_refusal::busy] == 1; }));
  for (int fd : waiting)
    ::close(fd);
}

} // namespace
} // namespace ddactor
