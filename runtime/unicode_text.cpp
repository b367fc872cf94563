// Python-compatible Unicode queries over the generated tables (unicode_data.cpp): binary searches
// over sorted ranges, str.lower() with its two context rules, and NFC as Unicode Standard Annex
// #15 specifies it (decompose, order marks by combining class, recompose).
#include "runtime/unicode_text.hpp"

#include <algorithm>
#include <optional>
#include <span>
#include <utility>

#include "runtime/unicode_data.hpp"

namespace ddactor {

namespace {

// The entry of `ranges` whose [first, last] holds `c`, or nullptr.
template <typename Range>
const Range* find_range(std::span<const Range> ranges, char32_t c) {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), c,
                             [](char32_t value, const Range& r) { return value < r.first; });
  if (it == ranges.begin()) return nullptr;
  --it;
  return c <= it->last ? &*it : nullptr;
}

bool is_cased(char32_t c) {
  return find_range(unicode_data::cased_ranges(), c) != nullptr;
}

bool is_case_ignorable(char32_t c) {
  return find_range(unicode_data::case_ignorable_ranges(), c) != nullptr;
}

constexpr char32_t capital_sigma = 0x03A3;
constexpr char32_t small_sigma = 0x03C3;
constexpr char32_t final_small_sigma = 0x03C2;
constexpr char32_t capital_i_with_dot = 0x0130;
constexpr char32_t combining_dot_above = 0x0307;

// Unicode's Final_Sigma context, as CPython's handle_capital_sigma tests it: the sigma at `i`
// follows a cased letter (case-ignorable characters between are skipped) and is not followed by
// one (skipping the same way).
bool is_final_sigma(std::u32string_view text, size_t i) {
  size_t j = i;
  while (j > 0 && is_case_ignorable(text[j - 1])) --j;
  if (j == 0 || !is_cased(text[j - 1])) return false;
  size_t k = i + 1;
  while (k < text.size() && is_case_ignorable(text[k])) ++k;
  return k == text.size() || !is_cased(text[k]);
}

char32_t simple_lowercase(char32_t c) {
  const auto mappings = unicode_data::lowercase_mappings();
  auto it = std::lower_bound(
      mappings.begin(), mappings.end(), c,
      [](const unicode_data::code_point_mapping& m, char32_t value) { return m.from < value; });
  return it != mappings.end() && it->from == c ? it->to : c;
}

// Hangul syllables decompose and compose by arithmetic (Unicode Standard, section 3.12).
constexpr char32_t hangul_s_base = 0xAC00;
constexpr char32_t hangul_l_base = 0x1100;
constexpr char32_t hangul_v_base = 0x1161;
constexpr char32_t hangul_t_base = 0x11A7;
constexpr char32_t hangul_l_count = 19;
constexpr char32_t hangul_v_count = 21;
constexpr char32_t hangul_t_count = 28;
constexpr char32_t hangul_n_count = hangul_v_count * hangul_t_count;
constexpr char32_t hangul_s_count = hangul_l_count * hangul_n_count;

bool is_hangul_syllable(char32_t c) {
  return c >= hangul_s_base && c < hangul_s_base + hangul_s_count;
}

void append_canonical_decomposition(std::u32string& out, char32_t c) {
  if (is_hangul_syllable(c)) {
    const char32_t index = c - hangul_s_base;
    out.push_back(hangul_l_base + index / hangul_n_count);
    out.push_back(hangul_v_base + (index % hangul_n_count) / hangul_t_count);
    if (index % hangul_t_count != 0) out.push_back(hangul_t_base + index % hangul_t_count);
    return;
  }
  const auto table = unicode_data::decompositions();
  auto it = std::lower_bound(
      table.begin(), table.end(), c,
      [](const unicode_data::canonical_decomposition& d, char32_t value) {
        return d.code_point < value;
      });
  if (it == table.end() || it->code_point != c) {
    out.push_back(c);
    return;
  }
  const auto pool = unicode_data::decomposition_pool();
  out.append(pool.begin() + it->offset, pool.begin() + it->offset + it->length);
}

// The primary composite of a starter and the character after it, or 0 if they do not compose.
char32_t compose_pair(char32_t first, char32_t second) {
  if (first >= hangul_l_base && first < hangul_l_base + hangul_l_count &&
      second >= hangul_v_base && second < hangul_v_base + hangul_v_count)
    return hangul_s_base +
           ((first - hangul_l_base) * hangul_v_count + (second - hangul_v_base)) * hangul_t_count;
  if (is_hangul_syllable(first) && (first - hangul_s_base) % hangul_t_count == 0 &&
      second > hangul_t_base && second < hangul_t_base + hangul_t_count)
    return first + (second - hangul_t_base);
  const auto table = unicode_data::compositions();
  auto it = std::lower_bound(table.begin(), table.end(), std::pair{first, second},
                             [](const unicode_data::canonical_composition& c,
                                const std::pair<char32_t, char32_t>& key) {
                               return std::pair{c.first, c.second} < key;
                             });
  return it != table.end() && it->first == first && it->second == second ? it->composite : 0;
}

} // namespace

general_category unicode_category(char32_t c) {
  const auto* range = find_range(unicode_data::category_ranges(), c);
  return range ? range->category : general_category::Cn;
}

bool is_python_space(char32_t c) {
  return find_range(unicode_data::python_space_ranges(), c) != nullptr;
}

std::vector<std::u32string_view> python_split(std::u32string_view text) {
  std::vector<std::u32string_view> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_python_space(text[i])) ++i;
    size_t end = i;
    while (end < text.size() && !is_python_space(text[end])) ++end;
    if (end > i) words.push_back(text.substr(i, end - i));
    i = end;
  }
  return words;
}

std::u32string_view python_strip(std::u32string_view text) {
  while (!text.empty() && is_python_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_python_space(text.back())) text.remove_suffix(1);
  return text;
}

bool is_white_space(char32_t c) {
  return is_python_space(c) && !(c >= 0x1C && c <= 0x1F);
}

uint8_t canonical_combining_class(char32_t c) {
  const auto* range = find_range(unicode_data::combining_class_ranges(), c);
  return range ? range->combining_class : 0;
}

std::u32string python_lower(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char32_t c = text[i];
    if (c == capital_sigma) {
      out.push_back(is_final_sigma(text, i) ? final_small_sigma : small_sigma);
    } else if (c == capital_i_with_dot) {
      out.push_back(U'i');
      out.push_back(combining_dot_above);
    } else {
      out.push_back(simple_lowercase(c));
    }
  }
  return out;
}

std::u32string nfc(std::u32string_view text) {
  std::u32string decomposed;
  decomposed.reserve(text.size());
  for (char32_t c : text) append_canonical_decomposition(decomposed, c);

  // Canonical ordering: each run of non-starters sorted by combining class, stably.
  for (size_t start = 0; start < decomposed.size();) {
    if (canonical_combining_class(decomposed[start]) == 0) {
      ++start;
      continue;
    }
    size_t end = start;
    while (end < decomposed.size() && canonical_combining_class(decomposed[end]) != 0) ++end;
    std::stable_sort(decomposed.begin() + start, decomposed.begin() + end,
                     [](char32_t a, char32_t b) {
                       return canonical_combining_class(a) < canonical_combining_class(b);
                     });
    start = end;
  }

  // Canonical composition: a character joins the last starter unless something between them
  // blocks it (a starter, or a mark of the same or a higher combining class).
  std::u32string out;
  out.reserve(decomposed.size());
  std::optional<size_t> last_starter;
  for (char32_t c : decomposed) {
    const uint8_t combining_class = canonical_combining_class(c);
    if (last_starter) {
      const bool adjacent = *last_starter + 1 == out.size();
      const uint8_t previous_class = canonical_combining_class(out.back());
      const bool blocked = !adjacent && (previous_class == 0 || previous_class >= combining_class);
      if (!blocked) {
        if (const char32_t composite = compose_pair(out[*last_starter], c)) {
          out[*last_starter] = composite;
          continue;
        }
      }
    }
    if (combining_class == 0) last_starter = out.size();
    out.push_back(c);
  }
  return out;
}

} // namespace ddactor
