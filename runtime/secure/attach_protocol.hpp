#pragma once
// The protocol of `ddactor trainer`: a trainer process on the same machine attaches to a running
// peer over a loopback TCP connection (run.attach). Pure code, no sockets: the peer's listener
// (runtime/attach_listener) and the trainer command feed it bytes and send what it returns.
//
// Frames: a 4-byte big-endian length, then that many bytes, the first of which names the
// message. A frame longer than attach_max_frame is refused before it is read (attacker bytes
// never make the peer allocate more).
//
// Both sides prove they hold the run's attach key (<run dir>/attach.key, 32 random bytes) by an
// HMAC (libsodium crypto_auth) over both sides' fresh nonces, each side under its own label, so
// that no proof can be replayed or reflected. The trainer proves first: the peer says nothing
// computed with the key to anyone who has not proven it.
//
//   trainer                                       peer
//     hello {magic, nonce_t}             ----->   expect_hello
//                                        <-----   challenge {nonce_p}
//     proof {mac("trainer", t, p), pid, device} --> expect_proof: checks the mac (else refused)
//                                        <-----   welcome {mac("peer", t, p)}; accepted
//     checks the peer's mac (else it leaves: not this run's peer)
//                                        <-----   assignment {...} for every set it joins
//                                        <-----   end (the run is over)
//
// A trainer sends nothing after its proof; the peer learns it died when the connection closes.

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace ddactor {

using attach_key = std::array<uint8_t, 32>;
using attach_nonce = std::array<uint8_t, 32>;

/// No message of the protocol is longer (an assignment is about 70 bytes).
inline constexpr uint32_t attach_max_frame = 256;

enum class attach_message : uint8_t {
  hello = 1,
  challenge = 2,
  proof = 3,
  welcome = 4,
  assignment = 5,
  end = 6,
};

/// Why a connection was refused (ddactor_attach_refused_total{reason}).
enum class attach_refusal : uint8_t {
  malformed,  // not this protocol: a wrong magic, type or length
  oversized,  // a frame longer than attach_max_frame
  wrong_key,  // the other side does not hold the run's attach key
  timeout,    // the handshake did not finish in time
  busy,       // too many handshakes at once
  closed,     // the other side closed the connection during the handshake
};
const char* to_string(attach_refusal reason);

/// Splits a byte stream into frames.
class attach_frame_reader {
 public:
  enum class status : uint8_t { incomplete, frame, oversized };
  void append(std::span<const uint8_t> bytes);
  /// The next whole frame's payload (in `out`), or why there is none.
  status next(std::vector<uint8_t>& out);

 private:
  std::vector<uint8_t> buffer_{};
};

/// `payload` with its length in front.
std::vector<uint8_t> attach_frame(std::span<const uint8_t> payload);

/// Who attaches: told in the proof, for the peer's log.
struct attach_client_info {
  uint32_t pid = 0;
  std::string device;  // at most 32 characters
};

/// What an accepted trainer does next: join set `generation` of the node as rank `rank` of
/// `ranks`, meeting the others in the peer's c10d store on 127.0.0.1:store_port under
/// store_prefix (fresh and secret for each set), with the peer's data and noise seed.
struct attach_assignment {
  uint64_t generation = 0;
  int32_t rank = 0;
  int32_t ranks = 1;
  uint16_t store_port = 0;
  std::string store_prefix;  // at most 64 characters
  uint64_t data_seed = 0;
  int32_t micro_batch_size = 0;
  bool swarm = false;  // the peer is in a swarm: rank 0 sends node commands
};

std::vector<uint8_t> encode_assignment(const attach_assignment& assignment);
std::optional<attach_assignment> decode_assignment(std::span<const uint8_t> payload);
std::vector<uint8_t> encode_end();
bool is_end(std::span<const uint8_t> payload);

/// The peer's side of one connection's handshake.
class attach_server_handshake {
 public:
  enum class state : uint8_t { expect_hello, expect_proof, accepted, refused };
  attach_server_handshake(const attach_key& key, const attach_nonce& nonce);
  ~attach_server_handshake();

  /// Takes the trainer's next payload; returns the payload to send back (empty: none).
  std::vector<uint8_t> on_payload(std::span<const uint8_t> payload);
  state current() const { return state_; }
  /// Why it was refused (valid in state refused).
  attach_refusal refusal() const { return refusal_; }
  const attach_client_info& client() const { return client_; }

 private:
  std::vector<uint8_t> refuse(attach_refusal reason);
  attach_key key_{};
  attach_nonce nonce_{};
  attach_nonce client_nonce_{};
  state state_ = state::expect_hello;
  attach_refusal refusal_ = attach_refusal::malformed;
  attach_client_info client_;
};

/// The trainer's side.
class attach_client_handshake {
 public:
  enum class state : uint8_t { expect_challenge, expect_welcome, accepted, refused };
  attach_client_handshake(const attach_key& key, const attach_nonce& nonce,
                          attach_client_info info);
  ~attach_client_handshake();

  std::vector<uint8_t> hello() const;
  /// Takes the peer's challenge, then its welcome; returns what to send (the proof after the
  /// challenge; nothing after the welcome, or when refused: the peer did not prove the key).
  std::vector<uint8_t> on_payload(std::span<const uint8_t> payload);
  state current() const { return state_; }

 private:
  attach_key key_{};
  attach_nonce nonce_{};
  attach_nonce peer_nonce_{};
  attach_client_info info_;
  state state_ = state::expect_challenge;
};

/// A fresh random nonce (libsodium).
attach_nonce random_attach_nonce();

} // namespace ddactor
