// The attach protocol's frames, messages and handshakes; see attach_protocol.hpp.
#include "runtime/secure/attach_protocol.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <string_view>

#include "runtime/secure/peer_key.hpp"

namespace ddactor {

namespace {

constexpr std::string_view hello_magic = "ddactor-attach-1";
constexpr size_t max_device_chars = 32;
constexpr size_t max_prefix_chars = 64;

// Big-endian fields, appended to or read from a payload.
class writer {
 public:
  explicit writer(attach_message type) { bytes.push_back(static_cast<uint8_t>(type)); }
  void put(uint64_t value, int size) {
    for (int i = size - 1; i >= 0; --i)
      bytes.push_back(static_cast<uint8_t>(value >> (8 * i)));
  }
  void put(std::span<const uint8_t> data) { bytes.insert(bytes.end(), data.begin(), data.end()); }
  void put_text(std::string_view text) {
    put(text.size(), 1);
    put({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  }
  std::vector<uint8_t> bytes{};
};

class reader {
 public:
  reader(std::span<const uint8_t> payload, attach_message type) : data_(payload) {
    ok_ = !data_.empty() && data_[0] == static_cast<uint8_t>(type);
    at_ = 1;
  }
  uint64_t get(int size) {
    uint64_t value = 0;
    if (!has(static_cast<size_t>(size)))
      return 0;
    for (int i = 0; i < size; ++i)
      value = (value << 8) | data_[at_++];
    return value;
  }
  void get(std::span<uint8_t> out) {
    if (!has(out.size()))
      return;
    std::copy_n(data_.begin() + static_cast<std::ptrdiff_t>(at_), out.size(), out.begin());
    at_ += out.size();
  }
  std::string get_text(size_t max_chars) {
    const auto size = static_cast<size_t>(get(1));
    if (size > max_chars || !has(size)) {
      ok_ = false;
      return {};
    }
    std::string text(reinterpret_cast<const char*>(data_.data() + at_), size);
    at_ += size;
    return text;
  }
  /// Everything was read, nothing more.
  bool complete() const { return ok_ && at_ == data_.size(); }

 private:
  bool has(size_t size) {
    ok_ = ok_ && data_.size() - at_ >= size;
    return ok_;
  }
  std::span<const uint8_t> data_;
  size_t at_ = 0;
  bool ok_ = false;
};

using attach_mac = std::array<uint8_t, crypto_auth_BYTES>;
static_assert(crypto_auth_KEYBYTES == sizeof(attach_key));

// Each side's proof covers both nonces under its own label: a proof from one side is never a
// valid proof of the other, and a fresh nonce of the verifier's makes every proof new.
attach_mac proof_of(const attach_key& key, std::string_view label, const attach_nonce& trainer,
                    const attach_nonce& peer) {
  std::vector<uint8_t> message(label.begin(), label.end());
  message.insert(message.end(), trainer.begin(), trainer.end());
  message.insert(message.end(), peer.begin(), peer.end());
  attach_mac mac{};
  crypto_auth(mac.data(), message.data(), message.size(), key.data());
  return mac;
}

bool proof_holds(const attach_mac& mac, const attach_key& key, std::string_view label,
                 const attach_nonce& trainer, const attach_nonce& peer) {
  const auto expected = proof_of(key, label, trainer, peer);
  return sodium_memcmp(mac.data(), expected.data(), mac.size()) == 0;
}

} // namespace

const char* to_string(attach_refusal reason) {
  switch (reason) {
    case attach_refusal::malformed: return "malformed";
    case attach_refusal::oversized: return "oversized";
    case attach_refusal::wrong_key: return "wrong_key";
    case attach_refusal::timeout: return "timeout";
    case attach_refusal::busy: return "busy";
    case attach_refusal::closed: return "closed";
  }
  return "?";
}

void attach_frame_reader::append(std::span<const uint8_t> bytes) {
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
}

attach_frame_reader::status attach_frame_reader::next(std::vector<uint8_t>& out) {
  if (buffer_.size() < 4)
    return status::incomplete;
  const uint32_t length = (uint32_t{buffer_[0]} << 24) | (uint32_t{buffer_[1]} << 16) |
                          (uint32_t{buffer_[2]} << 8) | uint32_t{buffer_[3]};
  if (length > attach_max_frame)
    return status::oversized;
  if (buffer_.size() - 4 < length)
    return status::incomplete;
  out.assign(buffer_.begin() + 4, buffer_.begin() + 4 + length);
  buffer_.erase(buffer_.begin(), buffer_.begin() + 4 + length);
  return status::frame;
}

std::vector<uint8_t> attach_frame(std::span<const uint8_t> payload) {
  const auto length = static_cast<uint32_t>(payload.size());
  std::vector<uint8_t> frame(4 + payload.size());
  for (int i = 0; i < 4; ++i)
    frame[static_cast<size_t>(i)] = static_cast<uint8_t>(length >> (24 - 8 * i));
  std::copy(payload.begin(), payload.end(), frame.begin() + 4);
  return frame;
}

std::vector<uint8_t> encode_assignment(const attach_assignment& a) {
  writer w(attach_message::assignment);
  w.put(a.generation, 8);
  w.put(static_cast<uint32_t>(a.rank), 4);
  w.put(static_cast<uint32_t>(a.ranks), 4);
  w.put(a.store_port, 2);
  w.put_text(a.store_prefix.substr(0, max_prefix_chars));
  w.put(a.data_seed, 8);
  w.put(static_cast<uint32_t>(a.micro_batch_size), 4);
  w.put(a.swarm ? 1 : 0, 1);
  return w.bytes;
}

std::optional<attach_assignment> decode_assignment(std::span<const uint8_t> payload) {
  reader r(payload, attach_message::assignment);
  attach_assignment a;
  a.generation = r.get(8);
  a.rank = static_cast<int32_t>(r.get(4));
  a.ranks = static_cast<int32_t>(r.get(4));
  a.store_port = static_cast<uint16_t>(r.get(2));
  a.store_prefix = r.get_text(max_prefix_chars);
  a.data_seed = r.get(8);
  a.micro_batch_size = static_cast<int32_t>(r.get(4));
  const auto swarm = r.get(1);
  a.swarm = swarm == 1;
  if (!r.complete() || swarm > 1 || a.ranks < 2 || a.rank < 1 || a.rank >= a.ranks ||
      a.store_port == 0 || a.store_prefix.empty() || a.micro_batch_size < 0)
    return std::nullopt;
  return a;
}

std::vector<uint8_t> encode_end() {
  return writer(attach_message::end).bytes;
}

bool is_end(std::span<const uint8_t> payload) {
  return reader(payload, attach_message::end).complete();
}

attach_nonce random_attach_nonce() {
  require_sodium();
  attach_nonce nonce{};
  randombytes_buf(nonce.data(), nonce.size());
  return nonce;
}

// --- the peer's side ------------------------------------------------------------------------

attach_server_handshake::attach_server_handshake(const attach_key& key,
                                                 const attach_nonce& nonce)
  : key_(key), nonce_(nonce) {
  require_sodium();
}

attach_server_handshake::~attach_server_handshake() {
  sodium_memzero(key_.data(), key_.size());
}

std::vector<uint8_t> attach_server_handshake::refuse(attach_refusal reason) {
  state_ = state::refused;
  refusal_ = reason;
  return {};
}

std::vector<uint8_t> attach_server_handshake::on_payload(std::span<const uint8_t> payload) {
  if (state_ == state::expect_hello) {
    reader r(payload, attach_message::hello);
    std::array<uint8_t, hello_magic.size()> magic{};
    r.get(magic);
    r.get(client_nonce_);
    if (!r.complete() ||
        !std::equal(magic.begin(), magic.end(), hello_magic.begin(), hello_magic.end()))
      return refuse(attach_refusal::malformed);
    state_ = state::expect_proof;
    writer w(attach_message::challenge);
    w.put(nonce_);
    return w.bytes;
  }
  if (state_ == state::expect_proof) {
    reader r(payload, attach_message::proof);
    attach_mac mac{};
    r.get(mac);
    client_.pid = static_cast<uint32_t>(r.get(4));
    client_.device = r.get_text(max_device_chars);
    if (!r.complete())
      return refuse(attach_refusal::malformed);
    if (!proof_holds(mac, key_, "trainer", client_nonce_, nonce_))
      return refuse(attach_refusal::wrong_key);
    state_ = state::accepted;
    writer w(attach_message::welcome);
    w.put(proof_of(key_, "peer", client_nonce_, nonce_));
    return w.bytes;
  }
  // Accepted trainers send nothing more; a refused connection is closed.
  return refuse(attach_refusal::malformed);
}

// --- the trainer's side ---------------------------------------------------------------------

attach_client_handshake::attach_client_handshake(const attach_key& key, const attach_nonce& nonce,
                                                 attach_client_info info)
  : key_(key), nonce_(nonce), info_(std::move(info)) {
  require_sodium();
  info_.device = info_.device.substr(0, max_device_chars);
}

attach_client_handshake::~attach_client_handshake() {
  sodium_memzero(key_.data(), key_.size());
}

std::vector<uint8_t> attach_client_handshake::hello() const {
  writer w(attach_message::hello);
  w.put({reinterpret_cast<const uint8_t*>(hello_magic.data()), hello_magic.size()});
  w.put(nonce_);
  return w.bytes;
}

std::vector<uint8_t> attach_client_handshake::on_payload(std::span<const uint8_t> payload) {
  if (state_ == state::expect_challenge) {
    reader r(payload, attach_message::challenge);
    r.get(peer_nonce_);
    if (!r.complete()) {
      state_ = state::refused;
      return {};
    }
    state_ = state::expect_welcome;
    writer w(attach_message::proof);
    w.put(proof_of(key_, "trainer", nonce_, peer_nonce_));
    w.put(info_.pid, 4);
    w.put_text(info_.device);
    return w.bytes;
  }
  if (state_ == state::expect_welcome) {
    reader r(payload, attach_message::welcome);
    attach_mac mac{};
    r.get(mac);
    state_ = r.complete() && proof_holds(mac, key_, "peer", nonce_, peer_nonce_)
               ? state::accepted
               : state::refused;
    return {};
  }
  state_ = state::refused;
  return {};
}

} // namespace ddactor
