#pragma once
// The Unicode character data behind unicode_text.hpp, as tables generated from Python 3.11's
// `unicodedata` (Unicode 14.0.0) by scripts/generate_unicode_data.py into unicode_data.cpp.
// Python is the reference because the tokenizers ddactor reproduces ran on it: matching its
// answers, not the newest Unicode, is what makes the token ids agree. Internal to
// unicode_text.cpp; everything else asks unicode_text.hpp.
//
// Every table is sorted by code point; ranges are inclusive and never overlap.

#include <cstdint>
#include <span>

#include "runtime/unicode_text.hpp"

namespace ddactor::unicode_data {

struct code_point_range {
  char32_t first;
  char32_t last;
};

struct category_range {
  char32_t first;
  char32_t last;
  general_category category;
};

struct combining_class_range {
  char32_t first;
  char32_t last;
  uint8_t combining_class;
};

struct code_point_mapping {
  char32_t from;
  char32_t to;
};

// A code point's full canonical decomposition (NFD of that code point alone):
// decomposition_pool()[offset, offset + length).
struct canonical_decomposition {
  char32_t code_point;
  uint16_t offset;
  uint8_t length;
};

// first + second compose to composite under NFC (a primary composite: not excluded).
struct canonical_composition {
  char32_t first;
  char32_t second;
  char32_t composite;
};

// Every assigned code point's general category; the gaps are Cn (unassigned).
std::span<const category_range> category_ranges();
// str.isspace(): White_Space plus the bidi separators U+001C..U+001F.
std::span<const code_point_range> python_space_ranges();
// Cased (Lowercase, Uppercase or Lt) and Case_Ignorable, for the final-sigma rule of str.lower().
std::span<const code_point_range> cased_ranges();
std::span<const code_point_range> case_ignorable_ranges();
// Non-zero canonical combining classes; every other code point has class 0.
std::span<const combining_class_range> combining_class_ranges();
// str.lower() for every code point it changes to one other code point (U+0130, which becomes two,
// and the context-dependent capital sigma are handled in code).
std::span<const code_point_mapping> lowercase_mappings();
// Canonical decompositions (Hangul syllables excluded: they are decomposed arithmetically).
std::span<const char32_t> decomposition_pool();
std::span<const canonical_decomposition> decompositions();
// Sorted by (first, second).
std::span<const canonical_composition> compositions();

} // namespace ddactor::unicode_data
