// The gateway's poll loop; see link_gateway.hpp.
#include "runtime/secure/link_gateway.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <sodium.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "monitoring/ddactor_metrics.hpp"
#include "runtime/peer_address.hpp"
#include "runtime/secure/basp_guard.hpp"
#include "runtime/secure/sealed_frames.hpp"

namespace ddactor {

namespace {

using clock = std::chrono::steady_clock;
constexpr size_t read_size = 256 * 1024;
// A link whose one side ended gets this long to hand the other side what is buffered.
constexpr auto flush_grace = std::chrono::seconds(2);
constexpr auto heard_resolution = std::chrono::milliseconds(100);
// Every this many bytes of ours the remote's kernel acknowledges count as hearing from the remote
// (heartbeats alone take minutes to add up to it; a receive buffer holds a few megabytes).
constexpr uint64_t acknowledged_alive = 64 * 1024;
// heard_from() forgets peers silent this long (their links are long gone).
constexpr auto heard_memory = std::chrono::minutes(10);

void close_fd(int& fd) {
  if (fd >= 0)
    ::close(fd);
  fd = -1;
}

// A reservation may sit idle for hours: the kernel's probes notice a relay that vanished
// without closing (its machine died, a router forgot the mapping).
void keep_alive(int fd) {
  int on = 1, idle = 10, interval = 5, probes = 3;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
}

void make_nonblocking(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

std::string address_of(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (addr.ss_family == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(addr).sin_addr, host, sizeof host);
  else if (addr.ss_family == AF_INET6)
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(addr).sin6_addr, host,
                sizeof host);
  return host;
}

uint16_t port_of(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return 0;
  if (addr.ss_family == AF_INET)
    return ntohs(reinterpret_cast<sockaddr_in&>(addr).sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6&>(addr).sin6_port);
}

// A listening socket on host:port (port 0: ephemeral); -1 and `error` set on failure. With
// `only_v6`, an IPv6 socket leaves IPv4 to another listener on the same port.
int listen_on(const std::string& host, uint16_t port, bool only_v6, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  auto service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints,
                             &found);
      rc != 0) {
    error = ::gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (auto* ai = found; ai && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
      continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (only_v6 && ai->ai_family == AF_INET6)
      ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
      error = std::strerror(errno);
      close_fd(fd);
    }
  }
  ::freeaddrinfo(found);
  if (fd >= 0)
    make_nonblocking(fd);
  return fd;
}

// Bytes queued for one socket: appended at the back, written from `sent` on.
struct outbox {
  std::vector<uint8_t> bytes;
  size_t sent = 0;
  uint64_t written = 0;  // in all, over the socket's life
  size_t pending() const { return bytes.size() - sent; }
  // Writes what the socket takes; false on a broken socket.
  bool flush(int fd) {
    while (pending() > 0) {
      auto n = ::send(fd, bytes.data() + sent, pending(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        break;
      if (n <= 0)
        return false;
      sent += static_cast<size_t>(n);
      written += static_cast<uint64_t>(n);
    }
    if (sent == bytes.size()) {
      bytes.clear();
      sent = 0;
    } else if (sent > (1u << 20) && sent * 2 > bytes.size()) {
      bytes.erase(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(sent));
      sent = 0;
    }
    return true;
  }
};

enum class link_stage {
  connecting_out,    // our outbound socket connects
  reading_preamble,  // inbound: which service the first bytes ask for
  handshaking,
  connecting_local,  // admitted: connecting to CAF's port
  waiting_circuit,   // a relay holds a dialer's link until the reserved peer accepts
  open,
  closing,
};

enum class link_kind {
  caf,          // CAF's bytes, sealed: the usual link (also the reserved peer's end of a circuit)
  reservation,  // an unreachable peer's standing link to its relay; carries circuit requests
  probe,        // a reachability probe: the observed address and the dial-back's outcome
  dial_back,    // a relay's connection back to a prober: a nonce, then closed
  circuit,      // a relay's splice between a dialer and a reserved peer: raw bytes both ways
};

// Preambles: 8 bytes of plaintext before a service's handshake (see link_gateway.hpp).
using preamble_magic = std::array<uint8_t, 8>;
constexpr preamble_magic reserve_magic{'D', 'D', 'R', 'S', 'R', 'V', '0', '1'};
constexpr preamble_magic probe_magic{'D', 'D', 'P', 'R', 'O', 'B', 'E', '1'};
constexpr preamble_magic relay_magic{'D', 'D', 'R', 'E', 'L', 'A', 'Y', '1'};
constexpr preamble_magic accept_magic{'D', 'D', 'A', 'C', 'C', 'P', 'T', '1'};
constexpr preamble_magic dial_back_magic{'D', 'D', 'B', 'A', 'C', 'K', '0', '1'};
constexpr size_t nonce_bytes = 16;
constexpr size_t peer_id_chars = 32;
using probe_nonce = std::array<uint8_t, nonce_bytes>;

// What a service link carries after its handshake: fixed-size sealed records.
constexpr size_t record_size = 64;
enum class record_type : uint8_t { observed = 1, dial_back_result = 2, circuit_request = 3 };

bool starts_with(std::span<const uint8_t> bytes, const preamble_magic& magic) {
  return bytes.size() >= magic.size() && std::equal(magic.begin(), magic.end(), bytes.begin());
}

void append_magic(std::vector<uint8_t>& out, const preamble_magic& magic) {
  out.insert(out.end(), magic.begin(), magic.end());
}

void append_u64(std::vector<uint8_t>& out, uint64_t value) {
  for (int i = 7; i >= 0; --i)
    out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

uint64_t read_u64(std::span<const uint8_t> bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < 8; ++i)
    value = (value << 8) | bytes[i];
  return value;
}

bool is_peer_id(std::span<const uint8_t> text) {
  return text.size() == peer_id_chars && std::all_of(text.begin(), text.end(), [](uint8_t c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// A prober waits here for its answer (probe() blocks on it; the loop fills it).
struct probe_waiter {
  std::mutex mutex;
  std::condition_variable done_cv;
  bool done = false;
  reachability_probe result;

  void finish(reachability_probe r) {
    std::lock_guard lock(mutex);
    if (done)
      return;
    result = std::move(r);
    done = true;
    done_cv.notify_all();
  }
};

struct link {
  uint64_t id = 0;
  link_kind kind = link_kind::caf;
  bool inbound = false;
  // Which side of the handshake this end plays: the one that accepted, except for a reserved
  // peer's end of a circuit (it connects out to the relay, and answers the dialer's hello).
  bool responder = false;
  std::string address;  // the remote's, for logs and per-address limits
  int net = -1;         // the sealed side (a circuit: the dialer's socket)
  int local = -1;       // CAF's side (plaintext, loopback; a circuit: the reserved peer's socket)
  link_stage stage = link_stage::handshaking;
  std::unique_ptr<handshake> shake;
  std::vector<uint8_t> shake_in;
  std::unique_ptr<frame_sealer> sealer;
  std::unique_ptr<frame_opener> opener;
  outbox to_net;
  outbox to_local;
  std::optional<basp_guard> basp;  // on what goes to CAF, where max_message_bytes is set
  clock::time_point deadline;  // of the handshake, or of the flush while closing
  // The remote's socket address: an outbound link's target (dialed once CAF connects to the
  // tunnel port), an inbound link's source (a probe's dial-back goes there).
  sockaddr_storage peer_addr{};
  socklen_t peer_addr_len = 0;
  // Inbound: the preamble read so far. A relay keeps the dialer's hello here until the circuit
  // opens.
  std::vector<uint8_t> preamble;
  // Outbound through a relay: the peer the link must reach (its key is checked). A relay's
  // reservation or circuit: the reserved peer.
  std::string target_peer;
  uint64_t circuit_id = 0;
  // Probes: the nonce, the port to dial back, and (prober side) what was learned so far.
  probe_nonce nonce{};
  uint16_t dial_back_port = 0;
  std::shared_ptr<probe_waiter> waiter;
  reachability_probe learned;
  bool relay_answered = false;  // the prober got the relay's dial-back outcome
  bool nonce_arrived = false;   // the prober's listener received its nonce
  uint64_t probe_link = 0;      // a dial-back: the probe it answers
  bool reported = false;        // a dial-back: its outcome was sent
  std::vector<uint8_t> records;  // service links: opened record bytes not yet handled
  std::string reservation_relay;  // a reservation (peer side): the relay as given to reserve()
  std::string failure;  // why an outbound connection failed at once (reported by expire())
  uint16_t tunnel_port = 0;  // an outbound CAF link: the tunnel port CAF connects to
  std::string remote_peer;   // a CAF link, once admitted: the other peer's id
  // When this end's last handshake message that awaits an answer was queued: the answer
  // measures the link's round trip (the handshake's crypto costs well under a millisecond).
  std::optional<clock::time_point> shake_sent;
  std::optional<clock::duration> round_trip;
  clock::time_point heard_noted{};  // when sealed bytes from it were last noted for heard_from()
  clock::time_point last_net_bytes{};  // an open CAF link: when bytes last arrived (idle_timeout)
  uint64_t acked_seen = 0;  // of to_net.written, what the remote's kernel had acknowledged
  uint64_t acked_heard = 0;  // acked_seen when that last counted for heard_from()
  clock::time_point ack_checked{};
};

struct tunnel_port {
  int fd = -1;
  uint16_t port = 0;
  sockaddr_storage target{};
  socklen_t target_len = 0;
  std::string address;
  std::string via_relay_to;  // through a relay: the reserved peer's id
  clock::time_point expires;
  uint64_t link = 0;  // the link dialed for it (before CAF connects)
};

// Logs the first and every 100th failure of each reason.
void count_failure(std::string_view reason, const std::string& address, const std::string& what) {
  static std::mutex mutex;
  static std::map<std::string, uint64_t, std::less<>> seen;
  link_metrics(global_metrics()).auth_failures.with({std::string(reason)}).inc();
  uint64_t n = 0;
  {
    std::lock_guard lock(mutex);
    n = ++seen[std::string(reason)];
  }
  if (n == 1 || n % 100 == 0)
    spdlog::warn("link from/to {} refused ({}): {} [{} so far]", address, reason, what, n);
}

} // namespace

struct link_gateway::loop {
  peer_key key;
  admission_policy policy;
  link_gateway_options options;
  link_metrics metrics{global_metrics()};
  std::vector<int> listeners;
  uint16_t public_port = 0;
  int wake_read = -1, wake_write = -1;
  std::atomic<uint16_t> local_port{0};
  std::atomic<bool> stopping{false};
  mutable std::mutex mutex;  // guards new_tunnels, actions, counts, reservations and heard
  std::vector<tunnel_port> new_tunnels;
  // Work for the loop's thread from the public functions (probes, reservations).
  std::vector<std::function<void()>> actions;
  counts totals;
  // Per peer id: when sealed bytes from its links last arrived (at most every heard_resolution),
  // and the round trip its latest link's handshake measured.
  std::map<std::string, link_gateway::activity, std::less<>> heard;
  std::map<std::string, relay_reservation> reservation_states;
  // Each tunnel port's link, as tunnel_state() reports it (the failure when it failed).
  std::map<uint16_t, std::pair<link_gateway::tunnel, std::string>> tunnel_states;
  std::list<link> links;
  std::vector<tunnel_port> tunnels;
  std::vector<uint8_t> scratch = std::vector<uint8_t>(read_size);  // one read at a time
  uint64_t next_link_id = 1;
  // Peers banned by this peer (ban()): their handshakes are refused until the time given. Only
  // the loop's thread touches it.
  std::map<std::string, clock::time_point, std::less<>> banned;
  std::thread thread;

  loop(peer_key k, admission_policy p, link_gateway_options o)
    : key(std::move(k)), policy(std::move(p)), options(std::move(o)) {}

  void wake() {
    char c = 1;
    [[maybe_unused]] auto n = ::write(wake_write, &c, 1);
  }

  void post(std::function<void()> action) {
    {
      std::lock_guard lock(mutex);
      actions.push_back(std::move(action));
    }
    wake();
  }

  link& new_link() {
    auto& l = links.emplace_back();
    l.id = next_link_id++;
    return l;
  }

  link* find_link(uint64_t id) {
    for (auto& l : links)
      if (l.id == id && (l.net >= 0 || l.local >= 0))
        return &l;
    return nullptr;
  }

  size_t handshakes_from(const std::string& address) const {
    size_t n = 0;
    for (auto& l : links)
      if (l.address == address && l.stage != link_stage::open && l.stage != link_stage::closing)
        ++n;
    return n;
  }
  size_t handshakes() const {
    size_t n = 0;
    for (auto& l : links)
      if (l.stage == link_stage::handshaking || l.stage == link_stage::connecting_out ||
          l.stage == link_stage::reading_preamble || l.stage == link_stage::waiting_circuit)
        ++n;
    return n;
  }

  void accept_public(int listener) {
    for (;;) {
      sockaddr_storage from{};
      socklen_t len = sizeof from;
      int fd = ::accept4(listener, reinterpret_cast<sockaddr*>(&from), &len, SOCK_CLOEXEC);
      if (fd < 0)
        return;
      make_nonblocking(fd);
      auto address = address_of(from);
      if (links.size() >= options.max_links || handshakes() >= options.max_handshakes ||
          handshakes_from(address) >= options.max_handshakes_per_address) {
        ::close(fd);
        count_failure("too_many_connections", address, "connection limit reached");
        continue;
      }
      auto& l = new_link();
      l.inbound = true;
      l.responder = true;
      l.address = address;
      l.net = fd;
      l.peer_addr = from;
      l.peer_addr_len = len;
      l.stage = link_stage::reading_preamble;
      l.deadline = clock::now() + options.handshake_timeout;
    }
  }

  // Starts an outbound connection of `kind` to `target`; it continues in serve().
  link& connect_out(link_kind kind, const sockaddr_storage& target, socklen_t target_len,
                    std::string address, std::chrono::milliseconds timeout) {
    auto& l = new_link();
    l.kind = kind;
    l.address = std::move(address);
    l.peer_addr = target;
    l.peer_addr_len = target_len;
    l.deadline = clock::now() + timeout;
    l.stage = link_stage::connecting_out;
    // A failure here is reported by the next expire(), once the caller has set the link up.
    l.net = ::socket(target.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l.net < 0) {
      l.failure = "cannot create a socket";
      l.deadline = {};
      return l;
    }
    make_nonblocking(l.net);
    if (::connect(l.net, reinterpret_cast<const sockaddr*>(&l.peer_addr), l.peer_addr_len) != 0 &&
        errno != EINPROGRESS) {
      l.failure = std::strerror(errno);
      l.deadline = {};
    }
    return l;
  }

  // A new tunnel: its link is dialed now, before CAF connects (CAF 0.17 drops a connection whose
  // first bytes do not arrive before its next heartbeat tick, which a handshake over a long
  // path, or through a relay, can miss).
  void dial_tunnel(tunnel_port& t) {
    auto& l = connect_out(link_kind::caf, t.target, t.target_len, t.address,
                          options.handshake_timeout);
    l.target_peer = t.via_relay_to;
    l.tunnel_port = t.port;
    t.link = l.id;
  }

  void set_tunnel_state(uint16_t port, link_gateway::tunnel state, const std::string& why = "") {
    std::lock_guard lock(mutex);
    auto it = tunnel_states.find(port);
    if (it != tunnel_states.end() && it->second.first == link_gateway::tunnel::dialing)
      it->second = {state, why};
  }

  void accept_tunnel(tunnel_port& t) {
    int fd = ::accept4(t.fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0)
      return;
    close_fd(t.fd);
    make_nonblocking(fd);
    auto* l = find_link(t.link);
    if (!l || l->local >= 0) {
      ::close(fd);  // its link failed already (tunnel_state said why)
      return;
    }
    l->local = fd;
  }

  void set_reservation_state(const std::string& relay, relay_reservation::state state,
                             const std::string& failure = "") {
    std::lock_guard lock(mutex);
    auto it = reservation_states.find(relay);
    if (it == reservation_states.end() || it->second.current == relay_reservation::state::lost)
      return;  // the first reason a reservation ended is the one to tell
    it->second.current = state;
    it->second.failure = failure;
  }

  void close_link(link& l, const std::string& why) {
    if (l.kind == link_kind::caf && !l.inbound && l.stage == link_stage::connecting_out) {
      std::lock_guard lock(mutex);
      totals.last_connect_failure = l.address + ": " + why;
    }
    if (l.stage == link_stage::open || l.stage == link_stage::closing)
      spdlog::debug("link {} {} closed: {}", l.inbound ? "from" : "to", l.address, why);
    else
      spdlog::debug("link {} {} ended before it opened: {}", l.inbound ? "from" : "to",
                    l.address, why);
    const bool was_live = l.net >= 0 || l.local >= 0;
    close_fd(l.net);
    close_fd(l.local);
    l.stage = link_stage::closing;
    if (l.tunnel_port != 0)
      set_tunnel_state(l.tunnel_port, link_gateway::tunnel::failed, why);
    if (!was_live)
      return;
    switch (l.kind) {
      case link_kind::reservation:
        if (l.inbound)
          metrics.reservations.dec();
        else
          set_reservation_state(l.reservation_relay, relay_reservation::state::lost, why);
        break;
      case link_kind::probe:
        if (l.waiter)
          finish_probe(l, "the probe ended before its answer: " + why);
        break;
      case link_kind::dial_back:
        report_dial_back(l, false);
        break;
      default: break;
    }
  }

  // One side ended: give the other what is buffered for it, then close.
  void begin_closing(link& l, const std::string& why) {
    if (l.stage != link_stage::open) {
      close_link(l, why);
      return;
    }
    spdlog::debug("link {} {}: {}", l.inbound ? "from" : "to", l.address, why);
    l.stage = link_stage::closing;
    l.deadline = clock::now() + flush_grace;
    if (l.kind == link_kind::reservation && !l.inbound)
      set_reservation_state(l.reservation_relay, relay_reservation::state::lost, why);
  }

  void fail_handshake(link& l, std::string_view reason, const std::string& what) {
    count_failure(reason, l.address, what);
    {
      std::lock_guard lock(mutex);
      ++totals.handshakes_failed;
    }
    close_link(l, what);
  }

  // --- service records (after a service link's handshake) ---

  void send_record(link& l, record_type type, std::span<const uint8_t> body) {
    std::array<uint8_t, record_size> record{};
    record[0] = static_cast<uint8_t>(type);
    std::copy_n(body.begin(), std::min(body.size(), record_size - 1), record.begin() + 1);
    const size_t before = l.to_net.bytes.size();
    l.sealer->seal(record, l.to_net.bytes);
    metrics.bytes_sent.inc(static_cast<double>(l.to_net.bytes.size() - before));
  }

  void handle_records(link& l) {
    size_t at = 0;
    for (; at + record_size <= l.records.size() && l.net >= 0; at += record_size) {
      std::span<const uint8_t> record(l.records.data() + at, record_size);
      handle_record(l, static_cast<record_type>(record[0]), record.subspan(1));
    }
    l.records.erase(l.records.begin(), l.records.begin() + static_cast<std::ptrdiff_t>(at));
  }

  void handle_record(link& l, record_type type, std::span<const uint8_t> body) {
    if (l.kind == link_kind::probe && type == record_type::observed) {
      l.learned.observed_port = static_cast<uint16_t>((body[0] << 8) | body[1]);
      const size_t length = std::min<size_t>(body[2], INET6_ADDRSTRLEN);
      l.learned.observed_host.assign(reinterpret_cast<const char*>(body.data() + 3), length);
      l.learned.answered = true;
    } else if (l.kind == link_kind::probe && type == record_type::dial_back_result) {
      l.relay_answered = true;
      if (body[0] == 0 || l.nonce_arrived)
        finish_probe(l, "");
      else  // it connected: the nonce is on its way to our listener
        l.deadline = clock::now() + std::chrono::seconds(1);
    } else if (l.kind == link_kind::reservation && !l.inbound &&
               type == record_type::circuit_request) {
      open_circuit_end(l, read_u64(body));
    } else {
      count_failure("unexpected_record", l.address, "a record of an unknown kind");
      close_link(l, "unexpected record");
    }
  }

  // --- probes ---

  void start_probe(const sockaddr_storage& target, socklen_t len, std::string address,
                   uint16_t dial_back_port, std::shared_ptr<probe_waiter> waiter) {
    auto& l = connect_out(link_kind::probe, target, len, std::move(address),
                          options.handshake_timeout + options.dial_back_timeout);
    l.waiter = std::move(waiter);
    l.dial_back_port = dial_back_port;
    randombytes_buf(l.nonce.data(), l.nonce.size());
  }

  void finish_probe(link& l, const std::string& error) {
    auto waiter = std::move(l.waiter);
    if (!waiter)
      return;
    auto result = l.learned;
    result.reachable = l.nonce_arrived;
    result.error = error;
    if (!error.empty())
      result.answered = false;
    waiter->finish(std::move(result));
    if (l.net >= 0)
      begin_closing(l, "probe done");
  }

  // A relay answers a prober: where the probe came from, then a dial-back there.
  void answer_probe(link& l) {
    const uint16_t port = ntohs(l.peer_addr.ss_family == AF_INET
                                  ? reinterpret_cast<sockaddr_in&>(l.peer_addr).sin_port
                                  : reinterpret_cast<sockaddr_in6&>(l.peer_addr).sin6_port);
    // port (2 bytes), the host's length, the host (an address text fits: INET6_ADDRSTRLEN 46)
    std::array<uint8_t, record_size - 1> body{};
    const size_t length = std::min(l.address.size(), body.size() - 3);
    body[0] = static_cast<uint8_t>(port >> 8);
    body[1] = static_cast<uint8_t>(port & 0xff);
    body[2] = static_cast<uint8_t>(length);
    std::copy_n(l.address.begin(), length, body.begin() + 3);
    send_record(l, record_type::observed, body);
    sockaddr_storage back = l.peer_addr;
    if (back.ss_family == AF_INET)
      reinterpret_cast<sockaddr_in&>(back).sin_port = htons(l.dial_back_port);
    else
      reinterpret_cast<sockaddr_in6&>(back).sin6_port = htons(l.dial_back_port);
    auto& d = connect_out(link_kind::dial_back, back, l.peer_addr_len,
                          l.address + ":" + std::to_string(l.dial_back_port),
                          options.dial_back_timeout);
    d.nonce = l.nonce;
    d.probe_link = l.id;
  }

  void report_dial_back(link& d, bool connected) {
    if (d.reported)
      return;
    d.reported = true;
    if (auto* probe = find_link(d.probe_link); probe && probe->stage == link_stage::open) {
      const uint8_t ok = connected ? 1 : 0;
      send_record(*probe, record_type::dial_back_result, std::span<const uint8_t>(&ok, 1));
    }
  }

  // A dial-back arrived at our listener: the probe it answers learns that we are reachable.
  void dial_back_arrived(link& l, std::span<const uint8_t> nonce) {
    for (auto& p : links) {
      if (p.kind != link_kind::probe || !p.waiter ||
          !std::equal(nonce.begin(), nonce.end(), p.nonce.begin()))
        continue;
      p.nonce_arrived = true;
      if (p.relay_answered)
        finish_probe(p, "");
    }
    close_link(l, "dial-back received");
  }

  // --- relays ---

  link* reservation_of(const std::string& peer) {
    for (auto& r : links)
      if (r.kind == link_kind::reservation && r.inbound && r.stage == link_stage::open &&
          r.target_peer == peer)
        return &r;
    return nullptr;
  }

  size_t reservations_held() const {
    size_t n = 0;
    for (auto& r : links)
      if (r.kind == link_kind::reservation && r.inbound && r.stage == link_stage::open)
        ++n;
    return n;
  }

  // A dialer asks this relay for a circuit to a reserved peer; its hello has been read.
  void request_circuit(link& l) {
    std::span<const uint8_t> bytes(l.preamble);
    std::string target(bytes.begin() + 8, bytes.begin() + 8 + peer_id_chars);
    auto hello = bytes.subspan(8 + peer_id_chars);
    if (!is_peer_id(bytes.subspan(8, peer_id_chars))) {
      fail_handshake(l, "malformed", "a relay request without a peer id");
      return;
    }
    if (!handshake::hello_admitted(hello, policy)) {
      fail_handshake(l, to_string(handshake_failure::wrong_swarm),
                     "a relay request from outside the swarm");
      return;
    }
    auto* reservation = reservation_of(target);
    if (!reservation) {
      count_failure("no_reservation", l.address, "a relay request for a peer with no reservation");
      close_link(l, "no reservation");
      return;
    }
    randombytes_buf(&l.circuit_id, sizeof l.circuit_id);
    std::vector<uint8_t> body;
    append_u64(body, l.circuit_id);
    send_record(*reservation, record_type::circuit_request, body);
    l.kind = link_kind::circuit;
    l.target_peer = target;
    l.to_local.bytes.assign(hello.begin(), hello.end());  // for the reserved peer, once joined
    l.stage = link_stage::waiting_circuit;
  }

  // The reserved peer connected for a circuit: splice it with the waiting dialer.
  void join_circuit(link& l, uint64_t circuit_id) {
    for (auto& w : links) {
      if (w.kind != link_kind::circuit || w.stage != link_stage::waiting_circuit ||
          w.circuit_id != circuit_id)
        continue;
      w.local = l.net;
      l.net = -1;
      l.stage = link_stage::closing;
      w.stage = link_stage::open;
      metrics.circuits.inc();
      {
        std::lock_guard lock(mutex);
        ++totals.circuits_relayed;
      }
      spdlog::debug("relaying {} to peer {}", w.address, w.target_peer.substr(0, 8));
      return;
    }
    count_failure("unknown_circuit", l.address, "an accept for no waiting circuit");
    close_link(l, "unknown circuit");
  }

  // A reserved peer: its relay asks for a circuit; connect to the relay and answer the dialer.
  void open_circuit_end(link& reservation, uint64_t circuit_id) {
    // A relay asks; a hostile one could ask without end: at most as many circuits in the making
    // as handshakes one address may hold, and no link past the gateway's limit.
    size_t opening = 0;
    for (auto& l : links)
      opening += l.responder && !l.inbound && l.address == "relay " + reservation.address &&
                 l.stage != link_stage::open && l.stage != link_stage::closing;
    if (links.size() >= options.max_links || opening >= options.max_handshakes_per_address) {
      count_failure("too_many_connections", reservation.address,
                    "circuit requests beyond the limit");
      return;
    }
    auto& c = connect_out(link_kind::caf, reservation.peer_addr, reservation.peer_addr_len,
                          "relay " + reservation.address, options.handshake_timeout);
    c.responder = true;
    c.circuit_id = circuit_id;
  }

  // --- the inbound preamble ---

  void read_preamble(link& l) {
    const auto& magic = handshake::link_magic();
    size_t want = 8;
    if (l.preamble.size() >= 8) {
      std::span<const uint8_t> head(l.preamble);
      if (starts_with(head, probe_magic))
        want = 8 + 2 + nonce_bytes;
      else if (starts_with(head, relay_magic))
        want = 8 + peer_id_chars + handshake::hello_size;
      else if (starts_with(head, accept_magic))
        want = 8 + 8;
      else if (starts_with(head, dial_back_magic))
        want = 8 + nonce_bytes;
    }
    uint8_t buffer[256];
    auto n = ::recv(l.net, buffer, std::min(want - l.preamble.size(), sizeof buffer), 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      fail_handshake(l, "malformed", "closed during the handshake");
      return;
    }
    if (n < 0)
      return;
    l.preamble.insert(l.preamble.end(), buffer, buffer + n);
    if (l.preamble.size() < want)
      return;
    std::span<const uint8_t> head(l.preamble);
    if (want == 8) {
      if (std::equal(magic.begin(), magic.end(), head.begin())) {
        // A plain link: these 8 bytes begin its handshake.
        begin_responding(l, link_kind::caf);
        l.shake_in = l.preamble;
        l.preamble.clear();
      } else if (starts_with(head, reserve_magic)) {
        begin_responding(l, link_kind::reservation);
        l.preamble.clear();
      } else if (!starts_with(head, probe_magic) && !starts_with(head, relay_magic) &&
                 !starts_with(head, accept_magic) && !starts_with(head, dial_back_magic)) {
        fail_handshake(l, "bad_version", "not a ddactor link, or another protocol version");
      }
      return;  // (a longer preamble: its rest comes next)
    }
    if (starts_with(head, probe_magic)) {
      l.dial_back_port = static_cast<uint16_t>((head[8] << 8) | head[9]);
      std::copy_n(head.begin() + 10, nonce_bytes, l.nonce.begin());
      if (l.dial_back_port == 0) {
        fail_handshake(l, "malformed", "a probe without a port");
        return;
      }
      begin_responding(l, link_kind::probe);
    } else if (starts_with(head, relay_magic)) {
      request_circuit(l);
    } else if (starts_with(head, accept_magic)) {
      join_circuit(l, read_u64(head.subspan(8)));
    } else if (starts_with(head, dial_back_magic)) {
      dial_back_arrived(l, head.subspan(8, nonce_bytes));
    }
  }

  void begin_responding(link& l, link_kind kind) {
    l.kind = kind;
    l.stage = link_stage::handshaking;
    l.shake = std::make_unique<handshake>(handshake::role::responder, key, policy);
  }

  void handshake_finished(link& l) {
    l.sealer = std::make_unique<frame_sealer>(l.shake->keys().send);
    l.opener = std::make_unique<frame_opener>(l.shake->keys().receive);
    if (options.max_message_bytes > 0 && l.kind == link_kind::caf)
      l.basp.emplace(options.max_message_bytes);
    auto remote = peer_id_of(l.shake->remote_key());
    if (auto ban = banned.find(remote); ban != banned.end()) {
      if (clock::now() < ban->second) {
        count_failure("banned", l.address,
                      "peer " + remote.substr(0, 8) + " is banned for misbehaviour");
        l.shake.reset();
        close_link(l, "banned");
        return;
      }
      banned.erase(ban);
    }
    if (l.kind == link_kind::caf) {
      l.remote_peer = remote;
      l.last_net_bytes = clock::now();
      std::lock_guard lock(mutex);
      auto& seen = heard[remote];
      seen.last_bytes = clock::now();
      if (l.round_trip)
        seen.round_trip = std::chrono::duration_cast<std::chrono::microseconds>(*l.round_trip);
    }
    l.shake.reset();
    metrics.handshakes.inc();
    {
      std::lock_guard lock(mutex);
      ++totals.handshakes_ok;
    }
    spdlog::debug("link {} {}: peer {} admitted", l.inbound ? "from" : "to", l.address,
                  remote.substr(0, 8));
    if (!l.target_peer.empty() && l.kind == link_kind::caf && remote != l.target_peer) {
      count_failure("wrong_peer", l.address, "the relay's circuit was answered by another key");
      close_link(l, "wrong peer");
      return;
    }
    switch (l.kind) {
      case link_kind::reservation:
        l.stage = link_stage::open;
        keep_alive(l.net);
        if (l.inbound) {
          if (auto* old = reservation_of(remote))
            close_link(*old, "replaced by a new reservation");
          if (reservations_held() >= options.max_reservations) {
            count_failure("too_many_reservations", l.address, "reservation limit reached");
            close_link(l, "too many reservations");
            return;
          }
          l.target_peer = remote;
          metrics.reservations.inc();
          spdlog::info("peer {} (at {}) reaches the swarm through this peer's relay",
                       remote.substr(0, 8), l.address);
        } else {
          set_reservation_state(l.reservation_relay, relay_reservation::state::active);
        }
        return;
      case link_kind::probe:
        l.stage = link_stage::open;
        l.deadline = clock::now() + options.dial_back_timeout + std::chrono::seconds(2);
        if (l.inbound)
          answer_probe(l);
        return;
      default: break;
    }
    if (!l.responder) {
      l.stage = link_stage::open;  // ready for CAF once the other side's CAF spoke (read_net)
      return;
    }
    auto port = local_port.load();
    if (port == 0) {
      close_link(l, "not listening yet");
      return;
    }
    sockaddr_in local{};
    local.sin_family = AF_INET;
    local.sin_port = htons(port);
    local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    l.local = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l.local < 0) {
      close_link(l, "cannot create a socket");
      return;
    }
    make_nonblocking(l.local);
    l.stage = link_stage::connecting_local;
    if (::connect(l.local, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0 &&
        errno != EINPROGRESS)
      close_link(l, std::string("cannot reach the local port: ") + std::strerror(errno));
  }

  // Reads at most the rest of the current handshake message (never more: what follows is
  // sealed frames).
  void read_handshake(link& l) {
    const size_t want = l.shake->expected_bytes() - l.shake_in.size();
    uint8_t buffer[256];
    auto n = ::recv(l.net, buffer, std::min(want, sizeof buffer), 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      fail_handshake(l, "malformed", "closed during the handshake");
      return;
    }
    if (n < 0)
      return;
    l.shake_in.insert(l.shake_in.end(), buffer, buffer + n);
    if (l.shake_in.size() < l.shake->expected_bytes())
      return;
    if (l.shake_sent)
      l.round_trip = clock::now() - *std::exchange(l.shake_sent, std::nullopt);
    auto step = l.shake->receive(l.shake_in);
    l.shake_in.clear();
    if (step.failure) {
      fail_handshake(l, to_string(*step.failure), "handshake failed");
      return;
    }
    l.to_net.bytes.insert(l.to_net.bytes.end(), step.reply.begin(), step.reply.end());
    if (!step.reply.empty() && !l.shake->done())
      l.shake_sent = clock::now();
    if (l.shake->done())
      handshake_finished(l);
  }

  // Reads what `fd` has into scratch: empty when nothing is there yet, or when the other side
  // ended (the link then closes, saying `why`).
  std::span<const uint8_t> receive(link& l, int fd, const char* why) {
    auto n = ::recv(fd, scratch.data(), scratch.size(), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
      return {};
    if (n <= 0) {
      begin_closing(l, why);
      return {};
    }
    return {scratch.data(), static_cast<size_t>(n)};
  }

  // A relay carries a circuit's bytes as they are (sealed end to end by its two peers).
  void relay(link& l, int from, outbox& to, const char* why) {
    auto received = receive(l, from, why);
    if (received.empty())
      return;
    to.bytes.insert(to.bytes.end(), received.begin(), received.end());
    metrics.relayed_bytes.inc(static_cast<double>(received.size()));
    std::lock_guard lock(mutex);
    totals.relayed_bytes += received.size();
  }

  // Authenticated bytes prove the remote alive, however long its own heartbeats queue behind
  // them; noted at most every heard_resolution per link, so bulk data costs few locks.
  void note_heard(link& l) {
    const auto now = clock::now();
    if (l.remote_peer.empty() || now - l.heard_noted < heard_resolution)
      return;
    l.heard_noted = now;
    std::lock_guard lock(mutex);
    heard[l.remote_peer].last_bytes = now;
  }

  void read_net(link& l) {
    if (l.kind == link_kind::circuit) {
      relay(l, l.net, l.to_local, "the dialer closed");
      return;
    }
    auto received = receive(l, l.net, "the remote closed");
    if (received.empty())
      return;
    metrics.bytes_received.inc(static_cast<double>(received.size()));
    auto& opened_into = l.kind == link_kind::caf ? l.to_local.bytes : l.records;
    const size_t before = opened_into.size();
    if (auto error = l.opener->open(received, opened_into)) {
      count_failure(to_string(*error), l.address, "a frame failed authentication or its size");
      close_link(l, std::string(to_string(*error)));
      return;
    }
    // The other CAF's first bytes (BASP's server handshake) wait here: CAF may connect to the
    // tunnel now and gets them at once.
    if (l.kind == link_kind::caf && l.tunnel_port != 0 && l.local < 0 && !l.to_local.bytes.empty())
      set_tunnel_state(l.tunnel_port, link_gateway::tunnel::ready);
    if (l.kind == link_kind::caf) {
      l.last_net_bytes = clock::now();
      note_heard(l);
    }
    if (l.kind != link_kind::caf) {
      if (l.records.size() > 16 * record_size) {
        count_failure("record_flood", l.address, "more records than a service link sends");
        close_link(l, "record flood");
        return;
      }
      handle_records(l);
      return;
    }
    if (!l.basp)
      return;
    std::span<const uint8_t> opened(l.to_local.bytes);
    if (auto length = l.basp->feed(opened.subspan(before))) {
      // Nothing of that message may reach CAF, which would allocate for it.
      l.to_local.bytes.clear();
      l.to_local.sent = 0;
      count_failure("message_too_large", l.address,
                    "a message of " + std::to_string(*length) + " bytes announced");
      close_link(l, "message_too_large");
    }
  }

  void read_local(link& l) {
    if (l.kind == link_kind::circuit) {
      relay(l, l.local, l.to_net, "the reserved peer closed");
      return;
    }
    auto received = receive(l, l.local, "the local side closed");
    if (received.empty())
      return;
    const size_t before = l.to_net.bytes.size();
    l.sealer->seal(received, l.to_net.bytes);
    metrics.bytes_sent.inc(static_cast<double>(l.to_net.bytes.size() - before));
  }

  static bool connect_finished(int fd, std::string& error) {
    int code = 0;
    socklen_t len = sizeof code;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &len);
    if (code != 0)
      error = std::strerror(code);
    return code == 0;
  }

  // Our outbound socket connected: send what this kind of link starts with.
  void connected_out(link& l) {
    std::vector<uint8_t> first;
    switch (l.kind) {
      case link_kind::dial_back:
        append_magic(first, dial_back_magic);
        first.insert(first.end(), l.nonce.begin(), l.nonce.end());
        l.to_net.bytes.insert(l.to_net.bytes.end(), first.begin(), first.end());
        report_dial_back(l, true);
        l.stage = link_stage::open;
        begin_closing(l, "dial-back sent");
        return;
      case link_kind::reservation: append_magic(first, reserve_magic); break;
      case link_kind::probe:
        append_magic(first, probe_magic);
        first.push_back(static_cast<uint8_t>(l.dial_back_port >> 8));
        first.push_back(static_cast<uint8_t>(l.dial_back_port & 0xff));
        first.insert(first.end(), l.nonce.begin(), l.nonce.end());
        break;
      case link_kind::caf:
        if (l.responder) {  // a reserved peer's end of a circuit
          append_magic(first, accept_magic);
          append_u64(first, l.circuit_id);
          l.to_net.bytes.insert(l.to_net.bytes.end(), first.begin(), first.end());
          begin_responding(l, link_kind::caf);
          return;
        }
        if (!l.target_peer.empty()) {
          append_magic(first, relay_magic);
          first.insert(first.end(), l.target_peer.begin(), l.target_peer.end());
        }
        break;
      case link_kind::circuit: break;
    }
    l.shake = std::make_unique<handshake>(handshake::role::initiator, key, policy);
    auto hello = l.shake->hello();
    first.insert(first.end(), hello.begin(), hello.end());
    l.to_net.bytes.insert(l.to_net.bytes.end(), first.begin(), first.end());
    l.shake_sent = clock::now();
    l.stage = link_stage::handshaking;
  }

  // Handles what poll reported for one link.
  void serve(link& l, short net_events, short local_events) {
    std::string error;
    if (l.stage == link_stage::connecting_out && (net_events & (POLLOUT | POLLERR | POLLHUP))) {
      if (!connect_finished(l.net, error)) {
        close_link(l, error);
        return;
      }
      connected_out(l);
      net_events &= ~POLLIN;
    }
    if (l.stage == link_stage::connecting_local &&
        (local_events & (POLLOUT | POLLERR | POLLHUP))) {
      if (!connect_finished(l.local, error)) {
        close_link(l, "cannot reach the local port: " + error);
        return;
      }
      l.stage = link_stage::open;
      local_events = 0;
    }
    if (l.stage == link_stage::reading_preamble && (net_events & (POLLIN | POLLHUP | POLLERR)))
      read_preamble(l);
    else if (l.stage == link_stage::handshaking && (net_events & (POLLIN | POLLHUP | POLLERR)))
      read_handshake(l);
    else if (l.stage == link_stage::waiting_circuit && (net_events & (POLLHUP | POLLERR)))
      close_link(l, "the dialer left before the circuit opened");
    if (l.stage == link_stage::open) {
      if ((net_events & (POLLIN | POLLHUP | POLLERR)) &&
          l.to_local.pending() < options.buffer_limit)
        read_net(l);
      if (l.stage == link_stage::open && (local_events & (POLLIN | POLLHUP | POLLERR)) &&
          l.to_net.pending() < options.buffer_limit)
        read_local(l);
    }
    if (l.net >= 0 && l.to_net.pending() > 0 && !l.to_net.flush(l.net))
      begin_closing(l, "the remote's socket broke");
    if (l.local >= 0 && l.stage != link_stage::connecting_local && l.to_local.pending() > 0 &&
        !l.to_local.flush(l.local))
      begin_closing(l, "the local socket broke");
    if (l.stage == link_stage::closing && l.to_net.pending() == 0 && l.to_local.pending() == 0)
      close_link(l, "done");
  }

  void take_new_work() {
    std::vector<std::function<void()>> work;
    {
      std::lock_guard lock(mutex);
      for (auto& t : new_tunnels)
        tunnels.push_back(t);
      new_tunnels.clear();
      std::erase_if(tunnel_states, [&](const auto& entry) {
        return std::none_of(tunnels.begin(), tunnels.end(),
                            [&](const tunnel_port& t) { return t.port == entry.first; }) &&
               entry.second.first != link_gateway::tunnel::dialing;
      });
      work.swap(actions);
      totals.links_open = 0;
      for (auto& l : links)
        if (l.stage == link_stage::open)
          ++totals.links_open;
      totals.reservations_held = reservations_held();
    }
    for (auto& action : work)
      action();
    for (auto& t : tunnels)
      if (t.link == 0)
        dial_tunnel(t);
  }

  // Signs of life of an open link's remote: bytes from it, and its kernel acknowledging new
  // bytes of ours (a TCP flow starved by seven others on a home upload can sit in
  // retransmission backoff for seconds, delivering nothing, while its peer is well and takes
  // what this side sends). Any acknowledgement keeps the link (its path works); for
  // heard_from() it takes acknowledged_alive bytes: a stopped process's kernel acknowledges
  // heartbeats for ever, but bulk data only until its receive buffer is full. Checked at most
  // every heard_resolution.
  void note_acknowledged(link& l, clock::time_point now) {
    if (now - l.ack_checked < heard_resolution)
      return;
    l.ack_checked = now;
    note_loss_stall(l);
    int unacknowledged = 0;
    if (::ioctl(l.net, SIOCOUTQ, &unacknowledged) != 0 || unacknowledged < 0)
      return;
    const uint64_t acked = l.to_net.written - std::min<uint64_t>(l.to_net.written,
                                                                 static_cast<uint64_t>(unacknowledged));
    if (acked <= l.acked_seen)
      return;
    l.acked_seen = acked;
    l.last_net_bytes = now;
    if (acked - l.acked_heard >= acknowledged_alive) {
      l.acked_heard = acked;
      note_heard(l);
    }
  }

  // What the kernel says of the link's losses (TCP_INFO): see activity::loss_stall.
  void note_loss_stall(const link& l) {
    if (l.remote_peer.empty())
      return;
    tcp_info info{};
    socklen_t length = sizeof info;
    if (::getsockopt(l.net, IPPROTO_TCP, TCP_INFO, &info, &length) != 0)
      return;
    const auto stall = info.tcpi_total_retrans > 0
                         ? std::chrono::microseconds(uint64_t{7} * info.tcpi_rto)
                         : std::chrono::microseconds(0);
    std::lock_guard lock(mutex);
    heard[l.remote_peer].loss_stall = stall;
  }

  // Whether an open link's remote has shown no sign of life for longer than idle_timeout plus
  // two of its round trips.
  bool silent_too_long(link& l, clock::time_point now) {
    // Not reading (CAF is slow to take what came) is no silence of the remote.
    if (l.to_local.pending() >= options.buffer_limit)
      l.last_net_bytes = now;
    const auto allowed = options.idle_timeout + 2 * l.round_trip.value_or(clock::duration{});
    if (now - l.last_net_bytes <= allowed)
      return false;
    spdlog::info("link {} {}: nothing arrived and nothing was acknowledged for {} ms; closing it",
                 l.inbound ? "from" : "to", l.address,
                 std::chrono::duration_cast<std::chrono::milliseconds>(now - l.last_net_bytes)
                   .count());
    return true;
  }

  void expire(clock::time_point now) {
    for (auto& l : links) {
      if (l.net < 0 && l.local < 0)
        continue;
      if (l.kind == link_kind::probe && l.waiter && l.relay_answered && now > l.deadline) {
        finish_probe(l, "");  // the relay dialed back, but nothing arrived here
        continue;
      }
      if (l.stage == link_stage::open && l.kind == link_kind::caf) {
        note_acknowledged(l, now);
        if (options.idle_timeout.count() > 0 && silent_too_long(l, now)) {
          metrics.silent_closed.inc();
          close_link(l, "silent");
          continue;
        }
      }
      // Links live on once open, except probes (they answer one question).
      if ((l.stage == link_stage::open && l.kind != link_kind::probe) || now <= l.deadline)
        continue;
      if (l.stage == link_stage::handshaking || l.stage == link_stage::reading_preamble)
        fail_handshake(l, "timeout", "no handshake within the time allowed");
      else
        close_link(l, !l.failure.empty()                        ? l.failure
                      : l.stage == link_stage::waiting_circuit ? "the reserved peer never answered"
                                                               : "timed out");
    }
    links.remove_if([](const link& l) { return l.net < 0 && l.local < 0; });
    std::erase_if(tunnels, [&](tunnel_port& t) {
      if (t.fd >= 0 && now > t.expires) {
        spdlog::debug("tunnel to {} was never used", t.address);
        close_fd(t.fd);
        if (auto* l = find_link(t.link); l && l->local < 0)
          close_link(*l, "CAF never used its tunnel");
      }
      return t.fd < 0;
    });
  }

  void run() {
    std::vector<pollfd> fds;
    while (!stopping.load()) {
      take_new_work();
      fds.clear();
      fds.push_back({wake_read, POLLIN, 0});
      for (int listener : listeners)
        fds.push_back({listener, POLLIN, 0});
      for (auto& t : tunnels)
        fds.push_back({t.fd, POLLIN, 0});
      for (auto& l : links) {
        short net = 0, local = 0;
        switch (l.stage) {
          case link_stage::connecting_out: net = POLLOUT; break;
          case link_stage::reading_preamble:
          case link_stage::handshaking: net = POLLIN; break;
          case link_stage::connecting_local: local = POLLOUT; break;
          case link_stage::waiting_circuit: net = 0; break;  // HUP and ERR are always reported
          case link_stage::open:
            if (l.to_local.pending() < options.buffer_limit)
              net = POLLIN;
            if (l.to_net.pending() < options.buffer_limit)
              local = POLLIN;
            break;
          case link_stage::closing: break;
        }
        if (l.to_net.pending() > 0)
          net |= POLLOUT;
        if (l.to_local.pending() > 0 && l.stage != link_stage::waiting_circuit)
          local |= POLLOUT;
        fds.push_back({l.net, net, 0});
        fds.push_back({l.local, local, 0});
      }
      metrics.links.set(static_cast<double>(links.size()));
      ::poll(fds.data(), fds.size(), 200);
      if (fds[0].revents & POLLIN) {
        char drain[64];
        while (::read(wake_read, drain, sizeof drain) > 0) {
        }
      }
      size_t at = 1;
      for (int listener : listeners)
        if (fds[at++].revents & POLLIN)
          accept_public(listener);
      for (auto& t : tunnels)
        if (fds[at++].revents & POLLIN)
          accept_tunnel(t);
      for (auto& l : links) {
        // Links accepted or started in this pass have no poll entries yet.
        if (at >= fds.size())
          break;
        const short net = fds[at].revents, local = fds[at + 1].revents;
        at += 2;
        if (l.net >= 0 || l.local >= 0)
          serve(l, net, local);
      }
      expire(clock::now());
    }
    for (auto& l : links)
      close_link(l, "the gateway stops");
    for (auto& t : tunnels)
      close_fd(t.fd);
  }
};

link_gateway::link_gateway(peer_key key, admission_policy policy, link_gateway_options options)
  : loop_(std::make_unique<loop>(std::move(key), std::move(policy), std::move(options))) {
  auto& lp = *loop_;
  std::string error;
  // The first host's port (an ephemeral one where listen_port is 0) is every host's.
  const bool several = lp.options.listen_hosts.size() > 1;
  for (auto& host : lp.options.listen_hosts) {
    const uint16_t port = lp.listeners.empty() ? lp.options.listen_port : lp.public_port;
    const int fd = listen_on(host, port, several, error);
    if (fd < 0) {
      for (int listener : lp.listeners)
        close_fd(listener);
      throw link_gateway_error("cannot listen on " + format_peer_address(host, port) + ": " +
                               error);
    }
    lp.listeners.push_back(fd);
    lp.public_port = port_of(fd);
  }
  if (lp.listeners.empty())
    throw link_gateway_error("no address to listen on");
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    for (int listener : lp.listeners)
      close_fd(listener);
    throw link_gateway_error(std::string("cannot create a pipe: ") + std::strerror(errno));
  }
  lp.wake_read = pipe_fds[0];
  lp.wake_write = pipe_fds[1];
  lp.thread = std::thread([&lp] { lp.run(); });
}

link_gateway::~link_gateway() {
  loop_->stopping = true;
  loop_->wake();
  loop_->thread.join();
  for (int listener : loop_->listeners)
    close_fd(listener);
  close_fd(loop_->wake_read);
  close_fd(loop_->wake_write);
}

uint16_t link_gateway::public_port() const { return loop_->public_port; }

void link_gateway::set_local_port(uint16_t port) { loop_->local_port = port; }

namespace {

// Resolves host:port into `target`; false and `error` set when it does not resolve.
bool resolve(const std::string& host, uint16_t port, sockaddr_storage& target, socklen_t& len,
             std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  auto service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0 || !found) {
    error = std::string("cannot resolve ") + host + ": " + ::gai_strerror(rc);
    return false;
  }
  std::memcpy(&target, found->ai_addr, found->ai_addrlen);
  len = found->ai_addrlen;
  ::freeaddrinfo(found);
  return true;
}

} // namespace

std::string_view to_string(relay_reservation::state state) {
  switch (state) {
    case relay_reservation::state::connecting: return "connecting";
    case relay_reservation::state::active: return "active";
    case relay_reservation::state::lost: return "lost";
  }
  return "?";
}

std::optional<uint16_t> link_gateway::open_tunnel(const std::string& host, uint16_t port,
                                                  std::string& error) {
  return open_relayed_tunnel(host, port, "", error);
}

std::optional<uint16_t> link_gateway::open_relayed_tunnel(const std::string& relay_host,
                                                          uint16_t relay_port,
                                                          const std::string& target_peer_id,
                                                          std::string& error) {
  tunnel_port t;
  if (!resolve(relay_host, relay_port, t.target, t.target_len, error))
    return std::nullopt;
  t.address = relay_host + ":" + std::to_string(relay_port);
  if (!target_peer_id.empty()) {
    std::span<const uint8_t> id(reinterpret_cast<const uint8_t*>(target_peer_id.data()),
                                target_peer_id.size());
    if (!is_peer_id(id)) {
      error = "not a peer id: " + target_peer_id;
      return std::nullopt;
    }
    t.via_relay_to = target_peer_id;
    t.address = "peer " + target_peer_id.substr(0, 8) + " via " + t.address;
  }
  t.fd = listen_on("127.0.0.1", 0, false, error);
  if (t.fd < 0)
    return std::nullopt;
  t.expires = clock::now() + loop_->options.tunnel_timeout;
  t.port = port_of(t.fd);
  {
    std::lock_guard lock(loop_->mutex);
    loop_->tunnel_states[t.port] = {tunnel::dialing, ""};
    loop_->new_tunnels.push_back(t);
  }
  loop_->wake();
  return t.port;
}

link_gateway::tunnel link_gateway::tunnel_state(uint16_t port, std::string& why) const {
  std::lock_guard lock(loop_->mutex);
  auto it = loop_->tunnel_states.find(port);
  if (it == loop_->tunnel_states.end()) {
    why = "no such tunnel";
    return tunnel::failed;
  }
  why = it->second.second;
  return it->second.first;
}

reachability_probe link_gateway::probe(const std::string& host, uint16_t port,
                                       std::chrono::milliseconds timeout,
                                       uint16_t dial_back_port) {
  reachability_probe failed;
  sockaddr_storage target{};
  socklen_t len = 0;
  if (!resolve(host, port, target, len, failed.error))
    return failed;
  auto waiter = std::make_shared<probe_waiter>();
  const uint16_t back = dial_back_port != 0 ? dial_back_port : public_port();
  auto address = host + ":" + std::to_string(port);
  loop_->post([this, target, len, address, back, waiter] {
    loop_->start_probe(target, len, address, back, waiter);
  });
  std::unique_lock lock(waiter->mutex);
  if (!waiter->done_cv.wait_for(lock, timeout, [&] { return waiter->done; })) {
    failed.error = "no answer from " + address + " within " +
                   std::to_string(timeout.count()) + " ms";
    return failed;
  }
  return waiter->result;
}

void link_gateway::reserve(const std::string& host, uint16_t port) {
  auto relay = host + ":" + std::to_string(port);
  relay_reservation state;
  state.relay = relay;
  sockaddr_storage target{};
  socklen_t len = 0;
  if (!resolve(host, port, target, len, state.failure))
    state.current = relay_reservation::state::lost;
  {
    std::lock_guard lock(loop_->mutex);
    loop_->reservation_states[relay] = state;
  }
  if (state.current == relay_reservation::state::lost)
    return;
  loop_->post([this, target, len, relay] {
    for (auto& l : loop_->links)  // one link per relay
      if (l.kind == link_kind::reservation && !l.inbound && l.reservation_relay == relay &&
          l.net >= 0)
        return;
    auto& l = loop_->connect_out(link_kind::reservation, target, len, relay,
                                 loop_->options.handshake_timeout);
    l.reservation_relay = relay;
  });
}

void link_gateway::release(const std::string& relay) {
  {
    std::lock_guard lock(loop_->mutex);
    loop_->reservation_states.erase(relay);
  }
  loop_->post([this, relay] {
    for (auto& l : loop_->links)
      if (l.kind == link_kind::reservation && !l.inbound && l.reservation_relay == relay)
        loop_->close_link(l, "released");
  });
}

std::vector<relay_reservation> link_gateway::reservations() const {
  std::lock_guard lock(loop_->mutex);
  std::vector<relay_reservation> out;
  for (auto& [relay, state] : loop_->reservation_states)
    out.push_back(state);
  return out;
}

std::map<std::string, link_gateway::activity, std::less<>> link_gateway::heard_from() const {
  std::lock_guard lock(loop_->mutex);
  const auto forget_before = clock::now() - heard_memory;
  std::erase_if(loop_->heard,
                [&](const auto& entry) { return entry.second.last_bytes < forget_before; });
  return loop_->heard;
}

void link_gateway::ban(const std::string& peer_id, std::chrono::steady_clock::time_point until) {
  auto* lp = loop_.get();
  lp->post([lp, peer_id, until] {
    lp->banned[peer_id] = until;
    for (auto& l : lp->links)
      if (l.remote_peer == peer_id)
        lp->close_link(l, "banned");
  });
}

link_gateway::counts link_gateway::snapshot() const {
  std::lock_guard lock(loop_->mutex);
  return loop_->totals;
}

} // namespace ddactor
