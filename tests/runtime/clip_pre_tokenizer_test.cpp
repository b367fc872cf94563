// Tests of CLIP's text cleaning and word splitting beyond the reference cases (which
// clip_tokenizer_test.cpp checks): the corners of the `regex` pattern under IGNORECASE (U+0345,
// long s), line and paragraph separators, and the byte-level alphabet. Expected values are those
// of transformers' BasicTokenizer and the `regex` module, worked out in Python.
#include "runtime/clip_pre_tokenizer.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace ddactor {
namespace {

using words = std::vector<std::string>;

TEST(clip_pre_tokenizer, cleaning_drops_controls_spaces_cjk_and_lowercases) {
  EXPECT_EQ(clean_clip_text("  A\tB\u00a0C\u200bD\x07 "), "a b cd");
  EXPECT_EQ(clean_clip_text("\u4e00\u53ea\u732b"), "\u4e00 \u53ea \u732b");
  EXPECT_EQ(clean_clip_text("Cafe\u0301"), "caf\u00e9");
  EXPECT_EQ(clean_clip_text("line\u2028break"), "line break");  // str.split() splits on U+2028
  EXPECT_EQ(clean_clip_text("\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3!"),
            "\u03bf\u03b4\u03c5\u03c3\u03c3\u03b5\u03c5\u03c2!");
}

TEST(clip_pre_tokenizer, words_follow_the_pattern_order) {
  EXPECT_EQ(split_clip_words("it's a (cat:1.2)!!"),
            (words{"it", "'s", "a", "(", "cat", ":", "1", ".", "2", ")!!"}));
  EXPECT_EQ(split_clip_words("we'll 42"), (words{"we", "'ll", "4", "2"}));
  EXPECT_EQ(split_clip_words("<|startoftext|>a<|endoftext|>"),
            (words{"<|startoftext|>", "a", "<|endoftext|>"}));
  EXPECT_EQ(split_clip_words("don\u2019t"), (words{"don", "\u2019", "t"}));
}

TEST(clip_pre_tokenizer, ignorecase_corners_of_the_regex_module) {
  // Long s folds to 's', so "'ſ" is the contraction and "<|ſtartoftext|>" the literal.
  EXPECT_EQ(split_clip_words("it'\u017f"), (words{"it", "'\u017f"}));
  EXPECT_EQ(split_clip_words("<|\u017ftartoftext|>"), (words{"<|\u017ftartoftext|>"}));
  // U+0345 is matched by no alternative: it ends a letter run and is dropped.
  EXPECT_EQ(split_clip_words("a\u0345b x\u0345\u0345!"), (words{"a", "b", "x", "!"}));
}

TEST(clip_pre_tokenizer, byte_level_alphabet_round_trips_every_byte) {
  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes.push_back(static_cast<char>(b));
  const std::string symbols = to_byte_level(all_bytes);
  EXPECT_EQ(from_byte_level(symbols), all_bytes);
  EXPECT_EQ(to_byte_level("!"), "!");
  EXPECT_EQ(to_byte_level(" "), "\u0120");   // the space is U+0120, 'Ġ'
  EXPECT_EQ(to_byte_level("\xad"), "\u0143");  // the last substitute
  EXPECT_EQ(to_byte_level("\xc3\xa9"), "\u00c3\u00a9");
  EXPECT_THROW(from_byte_level("\u0144"), std::invalid_argument);
}

} // namespace
} // namespace ddactor
