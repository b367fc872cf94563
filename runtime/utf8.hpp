#pragma once
// UTF-8 to UTF-32 and back. Strict decoding refuses what Python's bytes.decode("utf-8") refuses
// (overlong forms, surrogates, code points above U+10FFFF, truncated sequences); lossy decoding
// replaces each maximal ill-formed subpart with one U+FFFD, as bytes.decode("utf-8",
// errors="replace") does, so text decoded from token bytes reads as it does in Python.
// Pure functions: safe from any number of threads.

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ddactor {

// Thrown by decode_utf8 for bytes that are not UTF-8; the message names the byte offset.
class utf8_error : public std::invalid_argument {
public:
  using std::invalid_argument::invalid_argument;
};

// Throws utf8_error at the first ill-formed sequence.
std::u32string decode_utf8(std::string_view bytes);

// The offset of the first ill-formed sequence, or nullopt when all of `bytes` is UTF-8: the
// check decode_utf8 makes, without decoding (safetensors headers, Prometheus label values).
std::optional<std::size_t> first_invalid_utf8(std::string_view bytes);

// Never throws: ill-formed subparts become U+FFFD.
std::u32string decode_utf8_lossy(std::string_view bytes);

// `text` must hold Unicode scalar values (no surrogates, nothing above U+10FFFF); anything else
// throws utf8_error.
std::string encode_utf8(std::u32string_view text);

// Appends one scalar value's UTF-8 bytes (same precondition and error as encode_utf8).
void append_utf8(std::string& out, char32_t c);

} // namespace ddactor
