#pragma once
// A TCP relay that delays every byte by a fixed time in each direction: the latency half of the
// network lab on kernels without sch_netem (rates are still shaped by the kernel, with tbf).
// It owns a listening socket, one epoll loop on one thread, and two sockets per relayed
// connection (the accepted client and the connection it opens to the target).
//
// Delay model. A byte read from either socket at time t is written to the other socket no
// earlier than t + delay; so is the end of the stream (FIN). A connection from an address listed
// in `source_delays` gets that address's extra delay on top (the lab's per-host access links:
// the path from host i into host j takes d_i + d_j). Jitter adds a uniform random time from
// -jitter to +jitter to each read, never moving bytes before earlier ones (a TCP stream keeps
// its order, so jitter shows as bursts and stalls, as on a real path). In the lab, one relay runs inside
// each host's namespace in front of the peer's real port, and peers announce the relay's port:
// every connection *into* a peer crosses exactly one relay, so each link direction between two
// hosts gets one-way delay D and a request/response round trip between them takes 2D (plus the
// shaped link's serialization and queueing). What this model does not delay: the TCP handshake
// (connect() returns once the relay's kernel accepts) and a reset (RST is passed on at once).
//
// Backpressure. Each direction of each connection holds at most `max_buffered_bytes` (bytes
// read but not yet written); at that bound the relay stops reading its source, whose kernel
// buffers then fill and slow the sender, as a real link would. The bound must cover
// rate x delay (the bytes "in flight" on the simulated wire) or it caps throughput at
// max_buffered_bytes / delay. Reading also stops at max(64, max_buffered_bytes / 512) queued
// reads, so that a stream of tiny writes cannot cost unbounded memory in per-chunk overhead.
//
// One direction of one relayed connection (client->target or target->client):
//
//   relaying --(source EOF)--> draining --(queue empty, FIN due)--> shut (FIN sent)
//      |                          |
//      +----(read/write error)----+------> aborted: both sockets reset, connection gone
//
// A connection is closed when both directions are shut.
//
// Thread-safety: run() runs on one thread; stop() and stats() may be called from any thread,
// stop() also from a signal handler.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <queue>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <netinet/in.h>
#include <sys/socket.h>

namespace ddactor {

class latency_relay_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct host_port {
  std::string host;
  uint16_t port = 0;
};

/// Parses "HOST:PORT" or "[IPV6]:PORT" (port 0..65535); throws latency_relay_error.
host_port parse_host_port(std::string_view text);

/// Connections from `address` (numeric, as the relay sees the client) get `extra` more delay.
struct source_delay {
  std::string address;
  std::chrono::microseconds extra{0};
};

/// Parses "ADDRESS=MS" (milliseconds, 0 to 3600000); throws latency_relay_error.
source_delay parse_source_delay(std::string_view text);

struct latency_relay_options {
  host_port listen;  // port 0: the kernel picks one (see listen_port())
  host_port target;
  std::chrono::microseconds delay{0};
  // Per connection and direction; the default covers 320 Mbit/s at 100 ms.
  std::size_t max_buffered_bytes = 4 << 20;
  std::vector<source_delay> source_delays{};
  std::chrono::microseconds jitter{0};
  uint64_t seed = 1;  // of the jitter
};

struct latency_relay_stats {
  uint64_t connections_accepted = 0;
  uint64_t connections_closed = 0;   // both directions shut cleanly
  uint64_t connections_aborted = 0;  // reset after an error on either side
  uint64_t target_connect_failures = 0;
  uint64_t bytes_to_target = 0;
  uint64_t bytes_to_client = 0;
  std::size_t peak_buffered_bytes = 0;  // largest queue of one direction seen
};

class latency_relay {
 public:
  /// Resolves both addresses and starts listening; throws latency_relay_error.
  explicit latency_relay(latency_relay_options options);
  ~latency_relay();
  latency_relay(const latency_relay&) = delete;
  latency_relay& operator=(const latency_relay&) = delete;

  uint16_t listen_port() const { return listen_port_; }

  /// Relays until stop(); then closes every connection. Throws latency_relay_error only on a
  /// failure of the loop itself (epoll, timerfd), never for one connection's error.
  void run();
  /// Makes run() return soon. Async-signal-safe.
  void stop();
  latency_relay_stats stats() const;

 private:
  using relay_clock = std::chrono::steady_clock;

  struct chunk {
    relay_clock::time_point due;
    std::vector<char> bytes;
    std::size_t written = 0;
  };

  // Direction d reads from side d and writes to side 1 - d (side 0: client, side 1: target).
  struct direction {
    std::deque<chunk> queue;  // due times never decrease
    relay_clock::time_point last_due{};
    std::size_t buffered = 0;
    bool source_eof = false;
    relay_clock::time_point fin_due;
    bool sink_shut = false;
    bool sink_blocked = false;  // waiting for EPOLLOUT on the sink
  };

  struct connection {
    uint64_t id = 0;
    int fds[2] = {-1, -1};
    uint32_t registered_events[2] = {0, 0};
    bool registered[2] = {false, false};
    bool target_connected = false;
    std::chrono::microseconds delay{0};  // the relay's and the client address's
    direction directions[2];
  };

  struct timer_entry {
    relay_clock::time_point due;
    uint64_t connection_id;
    int direction;
    bool operator>(const timer_entry& other) const { return due > other.due; }
  };

  void accept_connections();
  void on_socket_event(uint64_t connection_id, int side, uint32_t events);
  bool has_room(const direction& dir) const;
  void read_source(connection& c, int d);
  void flush_sink(connection& c, int d);
  void update_interest(connection& c);
  void finish_if_done(connection& c);
  void abort_connection(connection& c);
  void close_connection(connection& c, bool reset);
  void run_due_timers();
  void arm_timer();
  void set_accepting(bool on);
  std::chrono::microseconds delay_for(int client_fd) const;
  relay_clock::time_point next_due(const connection& c, direction& dir);

  latency_relay_options options_;
  sockaddr_storage target_address_{};
  socklen_t target_address_length_ = 0;
  std::size_t max_chunks_;  // per direction, bounds the overhead of many tiny reads
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int stop_fd_ = -1;   // eventfd
  int timer_fd_ = -1;  // timerfd, armed for the earliest due chunk or FIN
  uint16_t listen_port_ = 0;
  bool accepting_ = true;
  uint64_t next_connection_id_ = 16;  // ids below are the loop's own fds
  std::unordered_map<uint64_t, std::unique_ptr<connection>> connections_;
  // Connections differ in delay, so due times arrive out of order: a min-heap.
  std::priority_queue<timer_entry, std::vector<timer_entry>, std::greater<>> timers_;
  std::mt19937_64 jitter_random_;
  relay_clock::time_point armed_for_{};
  std::vector<char> read_buffer_;

  std::atomic<uint64_t> connections_accepted_{0};
  std::atomic<uint64_t> connections_closed_{0};
  std::atomic<uint64_t> connections_aborted_{0};
  std::atomic<uint64_t> target_connect_failures_{0};
  std::atomic<uint64_t> bytes_to_target_{0};
  std::atomic<uint64_t> bytes_to_client_{0};
  std::atomic<std::size_t> peak_buffered_bytes_{0};
};

}  // namespace ddactor
