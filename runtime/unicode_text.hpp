#pragma once
// Unicode text operations that answer exactly as Python 3.11 does (Unicode 14.0.0): a code
// point's general category, str.isspace(), the regex module's \s, str.lower() and NFC
// normalisation. Tokenizers that were written in Python (CLIP's cleans text with
// unicodedata.category, str.lower and unicodedata.normalize("NFC")) give the same token ids here
// only if these agree with Python character for character, so they are Python's answers, not
// the newest Unicode's or the C++ locale's.
//
// Text is UTF-32 (std::u32string) here; runtime/utf8.hpp converts. Pure functions over
// read-only tables: safe from any number of threads.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ddactor {

enum class general_category : uint8_t {
  Lu, Ll, Lt, Lm, Lo,         // letters
  Mn, Mc, Me,                 // marks
  Nd, Nl, No,                 // numbers
  Pc, Pd, Ps, Pe, Pi, Pf, Po, // punctuation
  Sm, Sc, Sk, So,             // symbols
  Zs, Zl, Zp,                 // separators
  Cc, Cf, Cs, Co, Cn,         // other: control, format, surrogate, private use, unassigned
};

// unicodedata.category(chr(c)); Cn beyond U+10FFFF.
general_category unicode_category(char32_t c);

inline bool is_letter(general_category g) { return g <= general_category::Lo; }
inline bool is_number(general_category g) {
  return g >= general_category::Nd && g <= general_category::No;
}
// The "C" categories (control, format, surrogate, private use, unassigned).
inline bool is_other(general_category g) { return g >= general_category::Cc; }

// chr(c).isspace(): what str.split() and str.strip() without arguments split on and strip.
bool is_python_space(char32_t c);
// str.split() without arguments: the non-empty runs between Python whitespace.
std::vector<std::u32string_view> python_split(std::u32string_view text);
// str.strip() without arguments.
std::u32string_view python_strip(std::u32string_view text);
// The White_Space property: what \s matches in the `regex` module (str.isspace() without the
// bidi separators U+001C..U+001F).
bool is_white_space(char32_t c);

// unicodedata.combining(chr(c)): the canonical combining class, 0 for starters.
uint8_t canonical_combining_class(char32_t c);

// str.lower(): full lowercase mapping (U+0130 becomes "i\u0307"), and capital sigma becomes
// final sigma at the end of a word (Unicode's Final_Sigma context, as Python applies it).
std::u32string python_lower(std::u32string_view text);

// unicodedata.normalize("NFC", text): canonical decomposition, canonical ordering, canonical
// composition (Hangul included).
std::u32string nfc(std::u32string_view text);

} // namespace ddactor
