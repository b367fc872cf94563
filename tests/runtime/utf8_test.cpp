// Tests of UTF-8 decoding and encoding: round trips at every sequence length, strict refusal of
// overlong forms, surrogates, values above U+10FFFF and truncation, and lossy decoding that
// replaces each maximal ill-formed subpart with one U+FFFD, as Python's errors="replace" does
// (the expected strings are Python's).
#include "runtime/utf8.hpp"

#include <gtest/gtest.h>

namespace ddactor {
namespace {

TEST(utf8, round_trips_every_sequence_length) {
  const std::u32string text = U"a\u00e9\u20ac\U0001F431\U0010FFFF";
  const std::string bytes = encode_utf8(text);
  EXPECT_EQ(bytes, "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x90\xb1\xf4\x8f\xbf\xbf");
  EXPECT_EQ(decode_utf8(bytes), text);
  EXPECT_EQ(decode_utf8_lossy(bytes), text);
}

TEST(utf8, strict_decoding_refuses_ill_formed_bytes_and_names_the_offset) {
  for (std::string bad : {"\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                          "\xf8\x88\x80\x80\x80", "\x80", "\xe2\x82", "\xff"}) {
    EXPECT_THROW(decode_utf8(bad), utf8_error) << bad;
  }
  try {
    decode_utf8("abc\xff");
    FAIL();
  } catch (const utf8_error& e) {
    EXPECT_STREQ(e.what(), "not UTF-8: ill-formed sequence at byte 3");
  }
}

TEST(utf8, first_invalid_names_where_strict_decoding_would_fail) {
  EXPECT_EQ(first_invalid_utf8(""), std::nullopt);
  EXPECT_EQ(first_invalid_utf8("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x90\xb1\xf4\x8f\xbf\xbf"),
            std::nullopt);
  // Overlong, surrogate, above U+10FFFF, no lead byte, truncated: each after two good bytes.
  for (std::string bad : {"\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                          "\xf8\x88\x80\x80\x80", "\x80", "\xe2\x82", "\xff"}) {
    EXPECT_EQ(first_invalid_utf8("\xc3\xa9" + bad), 2u) << bad;
  }
}

TEST(utf8, lossy_decoding_replaces_maximal_subparts_as_python_does) {
  const std::u32string r = U"\uFFFD";
  EXPECT_EQ(decode_utf8_lossy("\xe2\x82" "a"), r + U"a");      // truncated 3-byte form: one
  EXPECT_EQ(decode_utf8_lossy("\xf0\x80\x80"), r + r + r);     // F0 80 is never a prefix
  EXPECT_EQ(decode_utf8_lossy("\xed\xa0\x80"), r + r + r);     // surrogate
  EXPECT_EQ(decode_utf8_lossy("\xc0\xaf"), r + r);             // overlong
  EXPECT_EQ(decode_utf8_lossy("\xf4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_EQ(decode_utf8_lossy("a\xff" "b"), U"a" + r + U"b");
  EXPECT_EQ(decode_utf8_lossy("\xf0\x9f\x90"), r);             // truncated emoji
}

TEST(utf8, encoding_refuses_what_is_no_scalar_value) {
  EXPECT_THROW(encode_utf8(std::u32string(1, char32_t{0xD800})), utf8_error);
  EXPECT_THROW(encode_utf8(std::u32string(1, char32_t{0x110000})), utf8_error);
}

} // namespace
} // namespace ddactor
