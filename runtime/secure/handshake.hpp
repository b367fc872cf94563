#pragma once
// The mutual handshake every link between peers starts with, before any other byte is accepted
// (a SIGMA-style exchange over X25519 ephemeral keys, with the swarm's admission key as a
// pre-shared key). Three fixed-size messages, so a reader never trusts a length it was sent:
//
//   initiator                                     responder
//   hello    magic | e_i | mac1            ->     checks the magic and mac1 (a non-member is
//                                                 refused before any public-key work)
//            e_r | S_r | sig_r | mac2      <-     hello_reply
//   finish   S_i | sig_i | mac3            ->
//
//   e_*:  fresh X25519 keys of this handshake; S_*: the peers' Ed25519 keys (peer_key.hpp)
//   h2 = H(hello | e_r | S_r), h3 = H(hello | hello_reply | S_i)
//   sig_r = Sign_r("r" | h2), sig_i = Sign_i("i" | h3): each proves its key and binds it to both
//           ephemerals (a recorded handshake replayed later fails: the other side's e is new)
//   mac1 = MAC_A("1" | hello without mac1); mac2, mac3 = MAC_{A,dh}("2" | h2), ("3" | h3):
//           proof of the admission key A, bound to this exchange's Diffie-Hellman secret dh
//   keys = KDF_{A}(dh | H(all three messages)): one key per direction
//
// A is derived from the swarm key, so a peer without it fails at the first message (an open
// swarm's A is public; its peers still prove their keys and get sealed links, and membership
// still checks the swarm id in every hello). The allowlist, when set, is checked against the
// other side's S. Pure: no sockets, no clocks; the link drives it.

#include <array>
#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/secure/peer_key.hpp"

namespace ddactor {

using symmetric_key = std::array<uint8_t, 32>;

/// Who may join: the admission key (from the swarm key) and, optionally, the public keys allowed
/// (empty: any holder of the admission key).
struct admission_policy {
  symmetric_key admission_key{};
  std::set<public_key> allowlist;

  /// The policy of a swarm: `swarm_key` empty means an open swarm (anyone may handshake).
  static admission_policy of_swarm(std::optional<symmetric_key> swarm_key,
                                   std::set<public_key> allowlist = {});
};

enum class handshake_failure {
  bad_version,    // not a ddactor link, or another protocol version
  wrong_swarm,    // a MAC failed: no admission key, another swarm, or a tampered message
  bad_signature,  // the other side does not hold the key it showed
  not_allowed,    // its key is not on the allowlist
  unexpected,     // a message of the wrong size or out of turn
};
std::string_view to_string(handshake_failure failure);

struct session_keys {
  symmetric_key send{};
  symmetric_key receive{};
};

class handshake {
 public:
  enum class role { initiator, responder };
  static constexpr size_t hello_size = 8 + 32 + 32;
  static constexpr size_t reply_size = 32 + 32 + 64 + 32;
  static constexpr size_t finish_size = 32 + 64 + 32;

  handshake(role r, const peer_key& mine, admission_policy policy);
  ~handshake();
  handshake(const handshake&) = delete;
  handshake& operator=(const handshake&) = delete;

  /// The initiator's first message (call once, before anything else).
  std::vector<uint8_t> hello();
  /// Bytes the next message has (0 when done or failed).
  size_t expected_bytes() const;
  /// Takes exactly expected_bytes() bytes; returns what to send back (possibly nothing), or the
  /// failure (after which the handshake is dead).
  struct step {
    std::vector<uint8_t> reply;
    std::optional<handshake_failure> failure;
  };
  step receive(std::span<const uint8_t> message);

  /// Whether `hello` (hello_size bytes) is an initiator's first message made with the admission
  /// key of `policy`: what a relay checks before it carries a stranger's link to a peer (the
  /// rest of the handshake runs end to end, unseen by the relay).
  static bool hello_admitted(std::span<const uint8_t> hello, const admission_policy& policy);
  /// The magic every link's first message starts with.
  static std::span<const uint8_t, 8> link_magic();

  bool done() const { return stage_ == stage::done; }
  /// After done(): the other side's key and the session's keys.
  const public_key& remote_key() const { return remote_; }
  const session_keys& keys() const { return keys_; }

 private:
  enum class stage { start, wait_hello, wait_reply, wait_finish, done, failed };
  step fail(handshake_failure failure);
  step on_hello(std::span<const uint8_t> message);
  step on_reply(std::span<const uint8_t> message);
  step on_finish(std::span<const uint8_t> message);
  void append_proof(std::vector<uint8_t>& out, const std::array<uint8_t, 32>& h,
                    std::string_view mac_label, std::string_view sig_label) const;
  std::optional<handshake_failure> check_proof(const public_key& their_key, const signature& sig,
                                               const std::array<uint8_t, 32>& mac,
                                               const std::array<uint8_t, 32>& h,
                                               std::string_view mac_label,
                                               std::string_view sig_label) const;
  void derive_keys();

  role role_;
  const peer_key& mine_;
  admission_policy policy_;
  stage stage_;
  std::array<uint8_t, 32> ephemeral_secret_{};
  std::array<uint8_t, 32> ephemeral_public_{};
  std::array<uint8_t, 32> dh_{};
  std::vector<uint8_t> transcript_;
  public_key remote_{};
  session_keys keys_;
};

} // namespace ddactor
