#pragma once
// The text half of CLIP's tokenizer: everything before byte-pair merging. It reproduces the slow
// transformers CLIPTokenizer (4.36) as it runs without ftfy, which is how the reference ids
// were made:
//
//   text --clean_clip_text--> cleaned --split_clip_words--> words --to_byte_level--> BPE input
//
// 1. clean_clip_text is transformers' BasicTokenizer(strip_accents=False,
//    do_split_on_punc=False).tokenize, joined with single spaces: drop NUL, U+FFFD and every
//    "C" category character but \t \n \r; turn those and the Zs spaces into ' '; put spaces
//    around CJK ideographs; NFC; split on Python whitespace; lower-case each word with
//    str.lower(). No accent stripping, no punctuation splitting.
// 2. split_clip_words is re.findall of CLIP's pattern (IGNORECASE, `regex` module)
//      <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//    written out as a scanner over code points: the alternatives are tried in that order at
//    each position, and a character no alternative matches (a space) is skipped.
// 3. to_byte_level spells each UTF-8 byte of a word as one printable character (GPT-2's
//    bytes_to_unicode table), the alphabet vocab.json and merges.txt are written in.
//
// Text in and out is UTF-8. Pure functions: safe from any number of threads.

#include <string>
#include <string_view>
#include <vector>

namespace ddactor {

// Throws utf8_error (runtime/utf8.hpp) if `text` is not UTF-8.
std::string clean_clip_text(std::string_view text);

// The words of cleaned text, in order (UTF-8, not yet byte-level).
std::vector<std::string> split_clip_words(std::string_view cleaned_text);

// Each byte of `bytes` as its bytes_to_unicode character, UTF-8 encoded.
std::string to_byte_level(std::string_view bytes);

// The inverse: the bytes that byte-level text spells. Throws std::invalid_argument for a
// character outside the 256 of the table.
std::string from_byte_level(std::string_view byte_level_text);

} // namespace ddactor
