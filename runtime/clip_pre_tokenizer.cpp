// CLIP's text cleaning, word splitting and byte-level alphabet; see clip_pre_tokenizer.hpp for
// the transformers code each step reproduces.
#include "runtime/clip_pre_tokenizer.hpp"

#include <array>
#include <cstdio>
#include <stdexcept>

#include "runtime/unicode_text.hpp"
#include "runtime/utf8.hpp"

namespace ddactor {

namespace {

// --- cleaning (BasicTokenizer) -----------------------------------------------------------
// BasicTokenizer is BERT's; these are its own notions of whitespace and control characters.

bool is_bert_whitespace(char32_t c) {
  return c == U' ' || c == U'\t' || c == U'\n' || c == U'\r' ||
         unicode_category(c) == general_category::Zs;
}

bool is_bert_control(char32_t c) {
  if (c == U'\t' || c == U'\n' || c == U'\r') return false;
  return is_other(unicode_category(c));
}

// BasicTokenizer's "CJK character": the CJK Unified Ideographs blocks and their extensions and
// compatibility forms. Hiragana, Katakana and Hangul are written with spaces between words and
// are left alone.
bool is_cjk_ideograph(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// --- word splitting (CLIP's pattern) -------------------------------------------------------

// The pattern's literal alternatives, in the order it tries them.
constexpr std::array<std::u32string_view, 9> literal_alternatives = {
    U"<|startoftext|>", U"<|endoftext|>", U"'s", U"'t", U"'re", U"'ve", U"'m", U"'ll", U"'d"};

constexpr char32_t long_s = 0x017F;                   // ſ, whose simple case fold is 's'
constexpr char32_t combining_ypogegrammeni = 0x0345;  // see is_other_symbol

// IGNORECASE equality of a text character and a (lower-case ASCII) pattern character. The
// `regex` module folds case simply; of the letters in CLIP's literals only 's' has a partner
// outside ASCII.
bool matches_ignoring_case(char32_t text_char, char32_t pattern_char) {
  if (text_char == pattern_char) return true;
  if (pattern_char >= U'a' && pattern_char <= U'z' && text_char == pattern_char - U'a' + U'A')
    return true;
  return pattern_char == U's' && text_char == long_s;
}

bool starts_with_ignoring_case(std::u32string_view text, std::u32string_view literal) {
  if (text.size() < literal.size()) return false;
  for (size_t i = 0; i < literal.size(); ++i)
    if (!matches_ignoring_case(text[i], literal[i])) return false;
  return true;
}

bool is_pattern_letter(char32_t c) {
  return is_letter(unicode_category(c));
}

bool is_pattern_number(char32_t c) {
  return is_number(unicode_category(c));
}

// [^\s\p{L}\p{N}] under IGNORECASE. The `regex` module tests a negated property class against
// every case variant of the character, and U+0345 (a mark) has the Greek iota, a letter, among
// its variants: so U+0345 is excluded here although it is no letter, and no alternative matches
// it at all.
bool is_other_symbol(char32_t c) {
  return !is_white_space(c) && !is_pattern_letter(c) && !is_pattern_number(c) &&
         c != combining_ypogegrammeni;
}

// The length of the pattern's match at the start of `text`, 0 if none of its alternatives
// matches there.
size_t match_length(std::u32string_view text) {
  for (auto literal : literal_alternatives)
    if (starts_with_ignoring_case(text, literal)) return literal.size();
  size_t n = 0;
  while (n < text.size() && is_pattern_letter(text[n])) ++n;
  if (n > 0) return n;
  if (is_pattern_number(text[0])) return 1;
  while (n < text.size() && is_other_symbol(text[n])) ++n;
  return n;
}

// --- byte-level alphabet (bytes_to_unicode) ------------------------------------------------

// Printable Latin-1 bytes stand for themselves; the other 68 (controls, space, DEL, NBSP, soft
// hyphen) take U+0100 onwards, in byte order, so that no symbol is whitespace or a control.
constexpr bool byte_stands_for_itself(unsigned b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

constexpr std::array<char32_t, 256> make_byte_to_symbol() {
  std::array<char32_t, 256> table{};
  char32_t next_substitute = 0x100;
  for (unsigned b = 0; b < 256; ++b)
    table[b] = byte_stands_for_itself(b) ? static_cast<char32_t>(b) : next_substitute++;
  return table;
}

constexpr std::array<char32_t, 256> byte_to_symbol = make_byte_to_symbol();
// The 68 substitutes run from U+0100 to U+0143: every symbol is below this.
constexpr char32_t symbol_limit = 0x144;
static_assert(byte_to_symbol[0xAD] == symbol_limit - 1);

constexpr std::array<int16_t, symbol_limit> make_symbol_to_byte() {
  std::array<int16_t, symbol_limit> table{};
  for (auto& entry : table) entry = -1;
  for (unsigned b = 0; b < 256; ++b) table[byte_to_symbol[b]] = static_cast<int16_t>(b);
  return table;
}

constexpr std::array<int16_t, symbol_limit> symbol_to_byte = make_symbol_to_byte();

std::string code_point_name(char32_t c) {
  char name[16];
  std::snprintf(name, sizeof name, "U+%04X", static_cast<unsigned>(c));
  return name;
}

} // namespace

std::string clean_clip_text(std::string_view text) {
  std::u32string cleaned;
  for (char32_t c : decode_utf8(text)) {
    if (c == 0 || c == 0xFFFD || is_bert_control(c)) continue;
    if (is_bert_whitespace(c)) {
      cleaned.push_back(U' ');
    } else if (is_cjk_ideograph(c)) {
      cleaned.push_back(U' ');
      cleaned.push_back(c);
      cleaned.push_back(U' ');
    } else {
      cleaned.push_back(c);
    }
  }
  const std::u32string normalized = nfc(cleaned);
  // Lower-casing never yields whitespace, so the words stay the words BasicTokenizer re-splits.
  std::string out;
  for (auto word : python_split(normalized)) {
    if (!out.empty()) out.push_back(' ');
    out += encode_utf8(python_lower(word));
  }
  return out;
}

std::vector<std::string> split_clip_words(std::string_view cleaned_text) {
  const std::u32string text = decode_utf8(cleaned_text);
  std::u32string_view rest = text;
  std::vector<std::string> words;
  while (!rest.empty()) {
    const size_t n = match_length(rest);
    if (n == 0) {
      rest.remove_prefix(1);
      continue;
    }
    words.push_back(encode_utf8(rest.substr(0, n)));
    rest.remove_prefix(n);
  }
  return words;
}

std::string to_byte_level(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char b : bytes) append_utf8(out, byte_to_symbol[static_cast<unsigned char>(b)]);
  return out;
}

std::string from_byte_level(std::string_view byte_level_text) {
  std::string out;
  for (char32_t c : decode_utf8(byte_level_text)) {
    if (c >= symbol_limit || symbol_to_byte[c] < 0)
      throw std::invalid_argument("character " + code_point_name(c) +
                                  " is not in the byte-level alphabet");
    out.push_back(static_cast<char>(symbol_to_byte[c]));
  }
  return out;
}

} // namespace ddactor
