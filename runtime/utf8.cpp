// UTF-8 decoding and encoding; see utf8.hpp. Well-formedness follows Table 3-7 of the Unicode
// Standard: the lead byte fixes the sequence length and the range its second byte may take (which
// is what rules out overlong forms, surrogates and values above U+10FFFF).
#include "runtime/utf8.hpp"

#include <cstdint>
#include <optional>

namespace ddactor {

namespace {

constexpr char32_t replacement_character = 0xFFFD;

struct sequence_rule {
  int length = 0;           // 0: not a lead byte
  uint8_t second_low = 0x80;
  uint8_t second_high = 0xBF;
};

sequence_rule rule_for(uint8_t lead) {
  if (lead < 0x80) return {1};
  if (lead >= 0xC2 && lead <= 0xDF) return {2};
  if (lead == 0xE0) return {3, 0xA0, 0xBF};
  if (lead == 0xED) return {3, 0x80, 0x9F};  // no surrogates
  if (lead >= 0xE1 && lead <= 0xEF) return {3};
  if (lead == 0xF0) return {4, 0x90, 0xBF};
  if (lead == 0xF4) return {4, 0x80, 0x8F};  // nothing above U+10FFFF
  if (lead >= 0xF1 && lead <= 0xF3) return {4};
  return {};
}

// One step of decoding at `pos`: the code point and the bytes it took, or nullopt and the length
// of the maximal ill-formed subpart there (at least 1).
struct decode_step {
  std::optional<char32_t> code_point;
  size_t consumed = 0;
};

decode_step decode_at(std::string_view bytes, size_t pos) {
  const auto lead = static_cast<uint8_t>(bytes[pos]);
  const sequence_rule rule = rule_for(lead);
  if (rule.length == 0) return {std::nullopt, 1};
  if (rule.length == 1) return {lead, 1};
  char32_t value = lead & (0xFF >> (rule.length + 1));
  for (int k = 1; k < rule.length; ++k) {
    if (pos + k >= bytes.size()) return {std::nullopt, static_cast<size_t>(k)};
    const auto b = static_cast<uint8_t>(bytes[pos + k]);
    const uint8_t low = k == 1 ? rule.second_low : 0x80;
    const uint8_t high = k == 1 ? rule.second_high : 0xBF;
    if (b < low || b > high) return {std::nullopt, static_cast<size_t>(k)};
    value = (value << 6) | (b & 0x3F);
  }
  return {value, static_cast<size_t>(rule.length)};
}

} // namespace

std::u32string decode_utf8(std::string_view bytes) {
  std::u32string out;
  out.reserve(bytes.size());
  for (size_t pos = 0; pos < bytes.size();) {
    const decode_step step = decode_at(bytes, pos);
    if (!step.code_point)
      throw utf8_error("not UTF-8: ill-formed sequence at byte " + std::to_string(pos));
    out.push_back(*step.code_point);
    pos += step.consumed;
  }
  return out;
}

std::optional<std::size_t> first_invalid_utf8(std::string_view bytes) {
  for (size_t pos = 0; pos < bytes.size();) {
    const decode_step step = decode_at(bytes, pos);
    if (!step.code_point)
      return pos;
    pos += step.consumed;
  }
  return std::nullopt;
}

std::u32string decode_utf8_lossy(std::string_view bytes) {
  std::u32string out;
  out.reserve(bytes.size());
  for (size_t pos = 0; pos < bytes.size();) {
    const decode_step step = decode_at(bytes, pos);
    out.push_back(step.code_point.value_or(replacement_character));
    pos += step.consumed;
  }
  return out;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    if (c >= 0xD800 && c <= 0xDFFF)
      throw utf8_error("cannot encode a surrogate code point as UTF-8");
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c <= 0x10FFFF) {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    throw utf8_error("cannot encode a value above U+10FFFF as UTF-8");
  }
}

std::string encode_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) append_utf8(out, c);
  return out;
}

} // namespace ddactor
