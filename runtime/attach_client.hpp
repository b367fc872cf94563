#pragma once
// The trainer's end of an attach connection (`ddactor trainer`): connects to the peer's
// listener on this machine, proves it holds the run's attach key and checks the peer's proof
// (runtime/secure/attach_protocol.hpp), then reads the peer's messages one at a time.
//
// Thread-safety: one thread uses a connection.

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/secure/attach_protocol.hpp"

namespace ddactor {

/// Connecting or the handshake failed (the message says which, for the user).
class attach_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class attach_connection {
 public:
  /// Connects to host:port and runs the handshake, all within `timeout`; throws attach_error.
  attach_connection(const std::string& host, uint16_t port, const attach_key& key,
                    attach_client_info info, std::chrono::milliseconds timeout);
  ~attach_connection();
  attach_connection(const attach_connection&) = delete;
  attach_connection& operator=(const attach_connection&) = delete;

  /// The peer's next message (an assignment or the end), waiting for it; nothing when the
  /// connection closed or sent a frame too long.
  std::optional<std::vector<uint8_t>> next();

  /// Ends the connection; a next() waiting on another thread returns nothing.
  void close();

 private:
  int fd_ = -1;
  attach_frame_reader frames_;
};

} // namespace ddactor
