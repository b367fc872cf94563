#pragma once
// A 5x7 pixel font for the labels on sample grids (class names, prompts), drawn here so that
// a grid says what each row is without any font file on the machine. Letters are drawn as
// capitals; characters without a glyph (non-ASCII, control bytes) show as '?'.

#include <cstdint>
#include <span>
#include <string_view>

namespace ddactor {

inline constexpr int glyph_width = 5;
inline constexpr int glyph_height = 7;
/// Blank columns after every glyph.
inline constexpr int glyph_spacing = 1;

/// The 7 rows of `c`'s glyph, bit 4 the leftmost pixel.
std::span<const uint8_t, glyph_height> glyph_rows(char c);

/// Pixels `text` takes across at `scale` (every glyph pixel a scale x scale block), counting
/// one glyph per byte.
int text_width(std::string_view text, int scale);

/// Draws `text` into an HWC 8-bit image (1 to 4 channels) with its top-left corner at (x, y),
/// every glyph pixel set to `value` in every channel; pixels outside the image are skipped.
void draw_text(std::span<uint8_t> hwc, int width, int height, int channels, int x, int y,
               std::string_view text, int scale, uint8_t value);

} // namespace ddactor
