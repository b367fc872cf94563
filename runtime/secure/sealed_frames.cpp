// Sealing and opening a link's frames; see sealed_frames.hpp.
#include "runtime/secure/sealed_frames.hpp"

#include <sodium.h>

#include <algorithm>

namespace ddactor {

namespace {

using nonce = std::array<uint8_t, crypto_aead_chacha20poly1305_IETF_NPUBBYTES>;

nonce nonce_of(uint64_t counter) {
  nonce n{};
  for (int i = 0; i < 8; ++i)
    n[4 + i] = static_cast<uint8_t>(counter >> (8 * i));
  return n;
}

} // namespace

std::string_view to_string(frame_error error) {
  return error == frame_error::too_large ? "frame_too_large" : "forged_frame";
}

frame_sealer::~frame_sealer() { sodium_memzero(key_.data(), key_.size()); }
frame_opener::~frame_opener() { sodium_memzero(key_.data(), key_.size()); }

void frame_sealer::seal(std::span<const uint8_t> plaintext, std::vector<uint8_t>& out) {
  do {
    auto piece = plaintext.first(std::min(plaintext.size(), max_frame_payload));
    plaintext = plaintext.subspan(piece.size());
    const auto sealed = static_cast<uint32_t>(piece.size() + frame_tag_bytes);
    const size_t at = out.size();
    out.resize(at + frame_header_bytes + sealed);
    uint8_t* header = out.data() + at;
    header[0] = static_cast<uint8_t>(sealed >> 24);
    header[1] = static_cast<uint8_t>(sealed >> 16);
    header[2] = static_cast<uint8_t>(sealed >> 8);
    header[3] = static_cast<uint8_t>(sealed);
    auto n = nonce_of(counter_++);
    unsigned long long written = 0;
    crypto_aead_chacha20poly1305_ietf_encrypt(header + frame_header_bytes, &written,
                                              piece.data(), piece.size(), header,
                                              frame_header_bytes, nullptr, n.data(), key_.data());
  } while (!plaintext.empty());
}

std::optional<frame_error> frame_opener::open(std::span<const uint8_t> received,
                                              std::vector<uint8_t>& out) {
  if (error_)
    return error_;
  // Complete frames are opened where they lie; only an incomplete tail is kept in pending_
  // (at most one frame), and completed from the next bytes first.
  while (!pending_.empty() && !received.empty()) {
    const size_t missing = bytes_missing(pending_);
    if (missing == 0)
      break;
    const size_t take = std::min(missing, received.size());
    pending_.insert(pending_.end(), received.begin(),
                    received.begin() + static_cast<std::ptrdiff_t>(take));
    received = received.subspan(take);
  }
  if (!pending_.empty()) {
    if (bytes_missing(pending_) > 0)
      return std::nullopt;  // every received byte went into the frame, which needs more
    open_frames(pending_, out);
    if (error_)
      return error_;
    pending_.clear();
  }
  const size_t used = open_frames(received, out);
  if (error_)
    return error_;
  pending_.assign(received.begin() + static_cast<std::ptrdiff_t>(used), received.end());
  return std::nullopt;
}

size_t frame_opener::bytes_missing(std::span<const uint8_t> partial) {
  if (partial.size() < frame_header_bytes)
    return frame_header_bytes - partial.size();
  const size_t sealed = sealed_length(partial.data());
  if (sealed < frame_tag_bytes || sealed > max_frame_payload + frame_tag_bytes)
    return 0;  // open_frames reports it
  return frame_header_bytes + sealed > partial.size() ? frame_header_bytes + sealed - partial.size()
                                                      : 0;
}

size_t frame_opener::sealed_length(const uint8_t* header) {
  return (size_t{header[0]} << 24) | (size_t{header[1]} << 16) | (size_t{header[2]} << 8) |
         size_t{header[3]};
}

size_t frame_opener::open_frames(std::span<const uint8_t> bytes, std::vector<uint8_t>& out) {
  size_t at = 0;
  while (bytes.size() - at >= frame_header_bytes) {
    const uint8_t* header = bytes.data() + at;
    const size_t sealed = sealed_length(header);
    if (sealed < frame_tag_bytes || sealed > max_frame_payload + frame_tag_bytes) {
      error_ = frame_error::too_large;
      pending_.clear();
      return at;
    }
    if (bytes.size() - at < frame_header_bytes + sealed)
      break;
    const size_t plain = sealed - frame_tag_bytes;
    const size_t start = out.size();
    out.resize(start + plain);
    auto n = nonce_of(counter_);
    unsigned long long opened = 0;
    if (crypto_aead_chacha20poly1305_ietf_decrypt(out.data() + start, &opened, nullptr,
                                                  header + frame_header_bytes, sealed, header,
                                                  frame_header_bytes, n.data(),
                                                  key_.data()) != 0) {
      out.resize(start);
      error_ = frame_error::forged;
      pending_.clear();
      return at;
    }
    ++counter_;
    at += frame_header_bytes + sealed;
  }
  return at;
}

} // namespace ddactor
