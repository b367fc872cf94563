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
// Peers that cannot accept connections (behind a home router's NAT) use two more services of
// another peer's gateway; each starts with an 8-byte plaintext preamble instead of the link's
// first handshake message:
//
//   probe    "DDPROBE1" | dial-back port | nonce, then a handshake (members only): the answer is
//            the address the link came from, then a dial-back: a plain connection to that
//            address and the port, carrying "DDBACK01" | nonce. The prober counts itself
//            reachable only when its own listener received its nonce (AutoNAT's rule: a peer's
//            word is not enough). The dial-back goes only to the address the probe came from.
//   relay    an unreachable peer U holds a reservation at a reachable peer R ("DDRSRV01", then a
//            handshake; R keeps the link). A dialer D sends R "DDRELAY1" | U's id | D's first
//            handshake message; R checks that message's admission MAC (a stranger is refused
//            before anything reaches U), asks U over the reservation for a circuit, U connects to
//            R with "DDACCPT1" | circuit id, and R splices the two sockets. D and U then run their
//            handshake through R end to end: R carries sealed frames it cannot read, and D checks
//            that the key that answers is U's. R buffers at most buffer_limit per direction (TCP's
//            flow control slows the faster side) and counts what it carries.
//
//   unreachable U                relay R (reachable)                    dialer D
//   ==DDRSRV01+handshake=====>   reservation kept
//                                <==DDRELAY1+U+hello(mac checked)====   (CAF dials a tunnel)
//   <==circuit request (sealed)==
//   --DDACCPT1+circuit--------> splice --------------------------------
//   <================== D's and U's handshake, then sealed CAF bytes ==================>
//
// Owns one thread (a poll loop over every socket); the public functions are thread-safe.
// Loopback ports are open to local users: the gateway protects the network, not the machine.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/secure/handshake.hpp"

namespace ddactor {

/// The bound on one CAF message between peers: the largest ddactor sends is a state chunk or an
/// all-reduce chunk (64 MiB each at most: state_transfer.hpp, averaging.chunk_elements), plus
/// headroom for their headers.
inline constexpr uint64_t peer_message_limit = uint64_t{96} << 20;

struct link_gateway_options {
  /// Every address to accept links on, all on listen_port ("0.0.0.0" and "::" for IPv4 and IPv6;
  /// "::" alone takes both where the system allows).
  std::vector<std::string> listen_hosts{"127.0.0.1"};
  /// 0: an ephemeral port, the same for every host (public_port() says which).
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
  /// Reservations this gateway keeps for unreachable peers (one per peer id).
  size_t max_reservations = 64;
  /// How long a relay's or a probe's dial-back may take to connect.
  std::chrono::milliseconds dial_back_timeout{3000};
  /// An open link on which no byte arrives and nothing sent is acknowledged for this long plus
  /// two round trips (measured by its handshake) is closed: its peer is gone or cut off (CAF's
  /// heartbeats keep an idle link speaking). 0: never. This, not CAF's own connection timeout,
  /// is the one to use: CAF counts whole messages, and one all-reduce chunk on a slow home
  /// upload takes longer to arrive than any heartbeat interval.
  std::chrono::milliseconds idle_timeout{0};
};

/// What a peer learned about its own address from another peer's gateway (probe()).
struct reachability_probe {
  /// The peer answered (else `error` says why not).
  bool answered = false;
  /// The address the peer saw the probe come from (a NAT router's public address, behind one).
  std::string observed_host;
  /// Its source port there (a NAT's mapping, not this peer's listen port).
  uint16_t observed_port = 0;
  /// The peer's dial-back to observed_host and this gateway's public port arrived here.
  bool reachable = false;
  std::string error;
};

/// One reservation this gateway holds at a relay (reserve()).
struct relay_reservation {
  enum class state { connecting, active, lost };
  /// host:port of the relay, as given to reserve().
  std::string relay;
  state current = state::connecting;
  /// Why it was lost ("" otherwise).
  std::string failure;
};
std::string_view to_string(relay_reservation::state state);

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
  /// reason in `error` when the host does not resolve or no port can be opened. The link is
  /// dialed at once, and is ready (tunnel_state()) when the other side's CAF has sent its first
  /// bytes: connect CAF then, because CAF 0.17 drops a new connection whose first bytes miss its
  /// next heartbeat tick (measured: after 0.5 s at most with heartbeats of 0.5 s), which a
  /// handshake over a long path, or through a relay, easily does.
  std::optional<uint16_t> open_tunnel(const std::string& host, uint16_t port, std::string& error);
  /// open_tunnel through the relay at relay_host:relay_port to the peer `target_peer_id` holds a
  /// reservation there; the link ends unless the key that answers is that peer's.
  std::optional<uint16_t> open_relayed_tunnel(const std::string& relay_host, uint16_t relay_port,
                                              const std::string& target_peer_id,
                                              std::string& error);

  enum class tunnel { dialing, ready, failed };
  /// Where the link of a tunnel port stands; `why` says why it failed.
  tunnel tunnel_state(uint16_t port, std::string& why) const;

  /// Asks the gateway at host:port where it sees this one, and whether it can dial back to
  /// this gateway's public port (or `dial_back_port`, for tests); blocks up to `timeout`.
  reachability_probe probe(const std::string& host, uint16_t port,
                           std::chrono::milliseconds timeout, uint16_t dial_back_port = 0);

  /// Keeps a reservation at the relay host:port, so that peers reach this one through it; a
  /// reservation that ends is reported `lost` (not renewed: the caller picks the relays).
  void reserve(const std::string& host, uint16_t port);
  /// Ends the reservation at `relay` ("host:port" as given to reserve()).
  void release(const std::string& relay);
  std::vector<relay_reservation> reservations() const;

  /// Refuses `peer_id`'s handshakes until `until` and closes its open links (a ban for
  /// misbehaviour: runtime/secure/misbehaviour_scores.hpp). Refusals count as "banned".
  void ban(const std::string& peer_id, std::chrono::steady_clock::time_point until);

  struct counts {
    uint64_t links_open = 0;
    uint64_t handshakes_ok = 0;
    uint64_t handshakes_failed = 0;
    /// Circuits this gateway spliced as a relay, and the bytes it carried through them.
    uint64_t circuits_relayed = 0;
    uint64_t relayed_bytes = 0;
    /// Reservations this gateway holds for other peers.
    uint64_t reservations_held = 0;
    /// Why the last outbound link could not reach its peer ("" when none failed so).
    std::string last_connect_failure;
  };
  counts snapshot() const;

  struct activity {
    /// When authenticated bytes last arrived from the peer over its links, or its kernel last
    /// acknowledged 64 KiB more of ours, to 100 ms: a member whose link carries bytes is alive,
    /// even while its heartbeats queue behind them or its own TCP flow is starved.
    std::chrono::steady_clock::time_point last_bytes;
    /// The round trip its latest link's handshake measured (0 when unknown).
    std::chrono::microseconds round_trip{0};
    /// How long its link may fall silent for lost packets alone: once the link's TCP has had
    /// to retransmit, three retransmission timeouts in a row (7 x the kernel's current RTO:
    /// TCP doubles it after each loss of the same segment, and a flow starved behind a full
    /// router queue loses its retransmissions too); 0 on a link that never lost a packet.
    std::chrono::microseconds loss_stall{0};
  };
  /// Per peer id, of the peers whose links spoke in the last 10 minutes.
  std::map<std::string, activity, std::less<>> heard_from() const;

 private:
  struct loop;
  std::unique_ptr<loop> loop_;
};

} // namespace ddactor
