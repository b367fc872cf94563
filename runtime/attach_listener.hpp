#pragma once
// The peer's door for `ddactor trainer` (run.attach): a TCP listener on 127.0.0.1 only, run by
// one thread of its own with poll(), that takes a connection through the attach handshake
// (runtime/secure/attach_protocol.hpp) and then keeps it open, to send it assignments, until
// either side closes it.
//
// Attacker bytes never harm the peer: frames are bounded (attach_max_frame), a handshake has a
// deadline, and at most max_handshakes run at once; a refused connection is closed and
// reported (on_refused) with its address.
//
// Lifecycle of a connection:
//
//   accepted --(hello, proof with the key)--> ATTACHED --(closed by either side)--> gone
//       |                                        (on_attached)                       (on_gone)
//       +--(bad frame, wrong key, deadline, too many)--> refused, closed (on_refused)
//
// Thread-safety: the callbacks run on the listener's thread; send() and close() may be called
// from any thread.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "runtime/secure/attach_protocol.hpp"

namespace ddactor {

struct attach_listener_options {
  attach_key key{};
  std::chrono::milliseconds handshake_timeout{5000};
  /// Handshakes in progress at once; more connections are refused as busy.
  size_t max_handshakes = 8;
  std::function<void(uint64_t id, const attach_client_info&)> on_attached;
  std::function<void(uint64_t id)> on_gone;
  std::function<void(attach_refusal, const std::string& address)> on_refused;
};

class attach_listener {
 public:
  /// Listens on 127.0.0.1:port (0: any free port); throws std::runtime_error if it cannot.
  attach_listener(attach_listener_options options, uint16_t port = 0);
  ~attach_listener();
  attach_listener(const attach_listener&) = delete;
  attach_listener& operator=(const attach_listener&) = delete;

  uint16_t port() const;
  /// Sends a payload (framed) to an attached connection; false when it is gone or its buffer
  /// is full (it is then closed).
  bool send(uint64_t id, std::span<const uint8_t> payload);
  /// Closes an attached connection (its on_gone follows).
  void close(uint64_t id);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace ddactor
