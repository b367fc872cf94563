// The gateway's poll loop; see link_gateway.hpp.
#include "runtime/secure/link_gateway.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "monitoring/ddactor_metrics.hpp"
#include "runtime/secure/basp_guard.hpp"
#include "runtime/secure/sealed_frames.hpp"

namespace ddactor {

namespace {

using clock = std::chrono::steady_clock;
constexpr size_t read_size = 256 * 1024;
// A link whose one side ended gets this long to hand the other side what is buffered.
constexpr auto flush_grace = std::chrono::seconds(2);

void close_fd(int& fd) {
  if (fd >= 0)
    ::close(fd);
  fd = -1;
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

// A listening socket on host:port (port 0: ephemeral); -1 and `error` set on failure.
int listen_on(const std::string& host, uint16_t port, std::string& error) {
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

enum class link_stage { connecting_out, handshaking, connecting_local, open, closing };

struct link {
  bool inbound = false;
  std::string address;  // the remote's, for logs and per-address limits
  int net = -1;         // the sealed side
  int local = -1;       // CAF's side (plaintext, loopback)
  link_stage stage = link_stage::handshaking;
  std::unique_ptr<handshake> shake;
  std::vector<uint8_t> shake_in;
  std::unique_ptr<frame_sealer> sealer;
  std::unique_ptr<frame_opener> opener;
  outbox to_net;
  outbox to_local;
  std::optional<basp_guard> basp;  // on what goes to CAF, where max_message_bytes is set
  clock::time_point deadline;  // of the handshake, or of the flush while closing
  // An outbound link's target, dialed once CAF connects to the tunnel port.
  sockaddr_storage target{};
  socklen_t target_len = 0;
};

struct tunnel_port {
  int fd = -1;
  sockaddr_storage target{};
  socklen_t target_len = 0;
  std::string address;
  clock::time_point expires;
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
  int listener = -1;
  uint16_t public_port = 0;
  int wake_read = -1, wake_write = -1;
  std::atomic<uint16_t> local_port{0};
  std::atomic<bool> stopping{false};
  std::mutex mutex;  // guards new_tunnels and counts
  std::vector<tunnel_port> new_tunnels;
  counts totals;
  std::list<link> links;
  std::vector<tunnel_port> tunnels;
  std::vector<uint8_t> scratch = std::vector<uint8_t>(read_size);  // one read at a time
  std::thread thread;

  loop(peer_key k, admission_policy p, link_gateway_options o)
    : key(std::move(k)), policy(std::move(p)), options(std::move(o)) {}

  void wake() {
    char c = 1;
    [[maybe_unused]] auto n = ::write(wake_write, &c, 1);
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
      if (l.stage == link_stage::handshaking || l.stage == link_stage::connecting_out)
        ++n;
    return n;
  }

  void accept_public() {
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
      auto& l = links.emplace_back();
      l.inbound = true;
      l.address = address;
      l.net = fd;
      l.stage = link_stage::handshaking;
      l.shake = std::make_unique<handshake>(handshake::role::responder, key, policy);
      l.deadline = clock::now() + options.handshake_timeout;
    }
  }

  void accept_tunnel(tunnel_port& t) {
    int fd = ::accept4(t.fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0)
      return;
    close_fd(t.fd);
    make_nonblocking(fd);
    auto& l = links.emplace_back();
    l.inbound = false;
    l.address = t.address;
    l.local = fd;
    l.target = t.target;
    l.target_len = t.target_len;
    l.deadline = clock::now() + options.handshake_timeout;
    l.net = ::socket(l.target.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l.net < 0) {
      close_link(l, "cannot create a socket");
      return;
    }
    make_nonblocking(l.net);
    l.stage = link_stage::connecting_out;
    if (::connect(l.net, reinterpret_cast<sockaddr*>(&l.target), l.target_len) != 0 &&
        errno != EINPROGRESS)
      close_link(l, std::strerror(errno));
  }

  void close_link(link& l, const std::string& why) {
    if (!l.inbound && l.stage == link_stage::connecting_out) {
      std::lock_guard lock(mutex);
      totals.last_connect_failure = l.address + ": " + why;
    }
    if (l.stage == link_stage::open || l.stage == link_stage::closing)
      spdlog::debug("link {} {} closed: {}", l.inbound ? "from" : "to", l.address, why);
    else
      spdlog::debug("link {} {} ended before it opened: {}", l.inbound ? "from" : "to",
                    l.address, why);
    close_fd(l.net);
    close_fd(l.local);
    l.stage = link_stage::closing;
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
  }

  void fail_handshake(link& l, std::string_view reason, const std::string& what) {
    count_failure(reason, l.address, what);
    {
      std::lock_guard lock(mutex);
      ++totals.handshakes_failed;
    }
    close_link(l, what);
  }

  void handshake_finished(link& l) {
    l.sealer = std::make_unique<frame_sealer>(l.shake->keys().send);
    l.opener = std::make_unique<frame_opener>(l.shake->keys().receive);
    if (options.max_message_bytes > 0)
      l.basp.emplace(options.max_message_bytes);
    auto remote = peer_id_of(l.shake->remote_key());
    l.shake.reset();
    metrics.handshakes.inc();
    {
      std::lock_guard lock(mutex);
      ++totals.handshakes_ok;
    }
    spdlog::debug("link {} {}: peer {} admitted", l.inbound ? "from" : "to", l.address,
                  remote.substr(0, 8));
    if (!l.inbound) {
      l.stage = link_stage::open;
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
    auto step = l.shake->receive(l.shake_in);
    l.shake_in.clear();
    if (step.failure) {
      fail_handshake(l, to_string(*step.failure), "handshake failed");
      return;
    }
    l.to_net.bytes.insert(l.to_net.bytes.end(), step.reply.begin(), step.reply.end());
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

  void read_net(link& l) {
    auto received = receive(l, l.net, "the remote closed");
    if (received.empty())
      return;
    metrics.bytes_received.inc(static_cast<double>(received.size()));
    const size_t before = l.to_local.bytes.size();
    if (auto error = l.opener->open(received, l.to_local.bytes)) {
      count_failure(to_string(*error), l.address, "a frame failed authentication or its size");
      close_link(l, std::string(to_string(*error)));
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

  // Handles what poll reported for one link.
  void serve(link& l, short net_events, short local_events) {
    std::string error;
    if (l.stage == link_stage::connecting_out && (net_events & (POLLOUT | POLLERR | POLLHUP))) {
      if (!connect_finished(l.net, error)) {
        close_link(l, error);
        return;
      }
      l.shake = std::make_unique<handshake>(handshake::role::initiator, key, policy);
      auto hello = l.shake->hello();
      l.to_net.bytes.insert(l.to_net.bytes.end(), hello.begin(), hello.end());
      l.stage = link_stage::handshaking;
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
    if (l.stage == link_stage::handshaking && (net_events & (POLLIN | POLLHUP | POLLERR)))
      read_handshake(l);
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
    if (l.local >= 0 && l.to_local.pending() > 0 && !l.to_local.flush(l.local))
      begin_closing(l, "the local socket broke");
    if (l.stage == link_stage::closing && l.to_net.pending() == 0 && l.to_local.pending() == 0)
      close_link(l, "done");
  }

  void take_new_tunnels() {
    std::lock_guard lock(mutex);
    for (auto& t : new_tunnels)
      tunnels.push_back(t);
    new_tunnels.clear();
    totals.links_open = 0;
    for (auto& l : links)
      if (l.stage == link_stage::open)
        ++totals.links_open;
  }

  void expire(clock::time_point now) {
    for (auto& l : links) {
      if ((l.net < 0 && l.local < 0) || l.stage == link_stage::open || now <= l.deadline)
        continue;
      if (l.stage == link_stage::handshaking)
        fail_handshake(l, "timeout", "no handshake within the time allowed");
      else
        close_link(l, "timed out");
    }
    links.remove_if([](const link& l) { return l.net < 0 && l.local < 0; });
    std::erase_if(tunnels, [&](tunnel_port& t) {
      if (t.fd >= 0 && now > t.expires) {
        spdlog::debug("tunnel to {} was never used", t.address);
        close_fd(t.fd);
      }
      return t.fd < 0;
    });
  }

  void run() {
    std::vector<pollfd> fds;
    while (!stopping.load()) {
      take_new_tunnels();
      fds.clear();
      fds.push_back({wake_read, POLLIN, 0});
      fds.push_back({listener, POLLIN, 0});
      for (auto& t : tunnels)
        fds.push_back({t.fd, POLLIN, 0});
      for (auto& l : links) {
        short net = 0, local = 0;
        switch (l.stage) {
          case link_stage::connecting_out: net = POLLOUT; break;
          case link_stage::handshaking: net = POLLIN; break;
          case link_stage::connecting_local: local = POLLOUT; break;
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
        if (l.to_local.pending() > 0)
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
      if (fds[1].revents & POLLIN)
        accept_public();
      size_t at = 2;
      for (auto& t : tunnels)
        if (fds[at++].revents & POLLIN)
          accept_tunnel(t);
      for (auto& l : links) {
        // Links accepted in this pass have no poll entries yet.
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
  lp.listener = listen_on(lp.options.listen_host, lp.options.listen_port, error);
  if (lp.listener < 0)
    throw link_gateway_error("cannot listen on " + lp.options.listen_host + ":" +
                             std::to_string(lp.options.listen_port) + ": " + error);
  lp.public_port = port_of(lp.listener);
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    close_fd(lp.listener);
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
  close_fd(loop_->listener);
  close_fd(loop_->wake_read);
  close_fd(loop_->wake_write);
}

uint16_t link_gateway::public_port() const { return loop_->public_port; }

void link_gateway::set_local_port(uint16_t port) { loop_->local_port = port; }

std::optional<uint16_t> link_gateway::open_tunnel(const std::string& host, uint16_t port,
                                                  std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  auto service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0 || !found) {
    error = std::string("cannot resolve ") + host + ": " + ::gai_strerror(rc);
    return std::nullopt;
  }
  tunnel_port t;
  std::memcpy(&t.target, found->ai_addr, found->ai_addrlen);
  t.target_len = found->ai_addrlen;
  ::freeaddrinfo(found);
  t.address = host + ":" + service;
  t.fd = listen_on("127.0.0.1", 0, error);
  if (t.fd < 0)
    return std::nullopt;
  t.expires = clock::now() + loop_->options.tunnel_timeout;
  const uint16_t local = port_of(t.fd);
  {
    std::lock_guard lock(loop_->mutex);
    loop_->new_tunnels.push_back(t);
  }
  loop_->wake();
  return local;
}

link_gateway::counts link_gateway::snapshot() const {
  std::lock_guard lock(loop_->mutex);
  return loop_->totals;
}

} // namespace ddactor
