#pragma once
// The front door of a peer: every connection between peers goes through a gateway at each end,
// which runs the mutual handshake (handshake.hpp) and then carries CAF's byte stream sealed in
// frames (sealed_frames.hpp). CAF itself only listens on 127.0.0.1, so no byte from the
// network reaches CAF's parser (which allocates whatever a frame header announces) before the
// other side has proven its key and its membership in the swarm.
//
//   this peer                                                  other peer
//   CAF --(plain, loopback)--> tunnel port --> gateway ==(handshake, sealed)==> public port
//                                                       gateway --(plain, loopback)--> CAF
//
// Outbound: open_tunnel(host, port) returns a one-shot loopback port; CAF connects there and the
// gateway dials host:port as the handshake's initiator. Inbound: the public listener accepts,
// answers as responder, and after a successful handshake connects to CAF's local port.
//
// Limits before memory is committed: handshake messages have fixed sizes; a handshake that does
// not finish within handshake_timeout is dropped; at most max_handshakes_per_address handshakes
// per remote address and max_handshakes in all; frames above 64 KiB end the link; each
// direction buffers at most buffer_limit bytes before it stops reading (TCP's flow control
// then slows the sender). Failures are logged (the first and every 100th per reason) and counted
// in ddactor_auth_failures_total{reason}.
//
// Owns one thread (a poll loop over every socket); the public functions are thread-safe.
// Loopback ports are open to local users: the gateway protects the network, not the machine.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/secure/handshake.hpp"

namespace ddactor {

/// The bound on one CAF message between peers: the largest ddactor sends is a state chunk or an
/// all-reduce chunk (64 MiB each at most: state_transfer.hpp, averaging.chunk_elements), plus
/// headroom for their headers.
inline constexpr uint64_t peer_message_limit = uint64_t{96} << 20;

struct link_gateway_options {
  std::string listen_host = "127.0.0.1";
  /// 0: an ephemeral port (public_port() says which).
  uint16_t listen_port = 0;
  std::chrono::milliseconds handshake_timeout{5000};
  /// How long a tunnel port waits for CAF's connection.
  std::chrono::milliseconds tunnel_timeout{10000};
  size_t max_links = 1024;
  size_t max_handshakes = 128;
  size_t max_handshakes_per_address = 8;
  size_t buffer_limit = 4 << 20;
  /// Read what arrives from peers as CAF's BASP framing and end a link that announces a message
  /// larger than this (basp_guard.hpp); 0: the stream is not read as BASP (tests of the links).
  uint64_t max_message_bytes = 0;
};

/// The gateway cannot bind its public address (the message names it).
class link_gateway_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class link_gateway {
 public:
  /// Binds the public address and starts the loop; throws link_gateway_error.
  link_gateway(peer_key key, admission_policy policy, link_gateway_options options);
  ~link_gateway();
  link_gateway(const link_gateway&) = delete;
  link_gateway& operator=(const link_gateway&) = delete;

  uint16_t public_port() const;
  /// Where inbound links go after their handshake (CAF's loopback port); until set, inbound
  /// handshakes are refused.
  void set_local_port(uint16_t port);
  /// A loopback port whose first connection is carried to host:port; an empty optional and a
  /// reason in `error` when the host does not resolve or no port can be opened.
  std::optional<uint16_t> open_tunnel(const std::string& host, uint16_t port, std::string& error);

  struct counts {
    uint64_t links_open = 0;
    uint64_t handshakes_ok = 0;
    uint64_t handshakes_failed = 0;
    /// Why the last outbound link could not reach its peer ("" when none failed so).
    std::string last_connect_failure;
  };
  counts snapshot() const;

 private:
  struct loop;
  std::unique_ptr<loop> loop_;
};

} // namespace ddactor
