// Fuzz target for what a peer's gateway reads from the network before and after a handshake
// (runtime/secure): whatever bytes arrive, the handshake refuses or proceeds, and the frame
// opener yields only authentic plaintext, never crashes, never holds more than one frame and
// never accepts a changed byte. The first input byte picks the path:
//   0: the bytes are handshake messages to a responder (a hello, then a finish), as a stranger
//      would send them; nothing a stranger sends may complete the handshake.
//   1: the bytes are a sealed stream, opened in splits the next bytes choose; without the key
//      nothing may come out.
//   2: the rest is plaintext: it is sealed under a known key, one byte is flipped where the
//      input says (or none), and opened: the plaintext must come back exactly when nothing was
//      flipped, and nothing but an error when something was.
// Violations abort via __builtin_trap. Built with a plain main() (fuzz_driver_main.cpp) for CI,
// or under libFuzzer with clang.
#include "runtime/secure/handshake.hpp"
#include "runtime/secure/sealed_frames.hpp"

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

namespace {

using namespace ddactor;

symmetric_key fuzz_key() {
  symmetric_key key{};
  key.fill(0x3c);
  return key;
}

void check(bool condition) {
  if (!condition)
    __builtin_trap();
}

void stranger_handshake(std::span<const uint8_t> bytes) {
  static const peer_key responder_key = peer_key::generate();
  handshake responder(handshake::role::responder, responder_key,
                      admission_policy::of_swarm(fuzz_key()));
  while (responder.expected_bytes() > 0 && bytes.size() >= responder.expected_bytes()) {
    auto message = bytes.first(responder.expected_bytes());
    bytes = bytes.subspan(message.size());
    auto step = responder.receive(message);
    if (step.failure)
      return;
  }
  // A stranger knows no admission key: it cannot have finished.
  check(!responder.done());
}

void open_stream(std::span<const uint8_t> bytes) {
  frame_opener opener(fuzz_key());
  std::vector<uint8_t> out;
  size_t split = bytes.empty() ? 1 : bytes[0] % 61 + 1;
  while (!bytes.empty()) {
    auto piece = bytes.first(std::min(split, bytes.size()));
    bytes = bytes.subspan(piece.size());
    if (opener.open(piece, out))
      break;
    check(opener.buffered() <= frame_header_bytes + max_frame_payload + frame_tag_bytes);
  }
  // Forging a Poly1305 tag by chance: 2^-106.
  check(out.empty());
}

void seal_flip_open(std::span<const uint8_t> bytes) {
  if (bytes.size() < 2)
    return;
  const size_t flip = (size_t{bytes[0]} << 8) | bytes[1];
  auto plaintext = bytes.subspan(2);
  std::vector<uint8_t> wire;
  frame_sealer sealer(fuzz_key());
  sealer.seal(plaintext, wire);
  const bool flipped = flip < wire.size();
  if (flipped)
    wire[flip] ^= 0x01;
  frame_opener opener(fuzz_key());
  std::vector<uint8_t> out;
  auto error = opener.open(wire, out);
  if (!flipped) {
    check(!error);
    check(std::equal(out.begin(), out.end(), plaintext.begin(), plaintext.end()));
  } else {
    // A changed length may also leave the opener waiting for bytes that never come.
    check(error.has_value() || opener.buffered() > 0);
    check(out.size() < plaintext.size() || plaintext.empty());
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  std::span<const uint8_t> rest(data + 1, size - 1);
  switch (data[0] % 3) {
    case 0: stranger_handshake(rest); break;
    case 1: open_stream(rest); break;
    default: seal_flip_open(rest); break;
  }
  return 0;
}
