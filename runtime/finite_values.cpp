// all_finite: see finite_values.hpp.
#include "runtime/finite_values.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>

namespace ddactor {

bool all_finite(std::span<const float> values) noexcept {
  // A float is NaN or infinite exactly when all its exponent bits are set.
  constexpr std::uint32_t exponent = 0x7f800000u;
  constexpr std::size_t block = 4096;
  for (std::size_t begin = 0; begin < values.size(); begin += block) {
    const std::size_t end = std::min(values.size(), begin + block);
    std::uint32_t any = 0;
    for (std::size_t i = begin; i < end; ++i)
      any |= (std::bit_cast<std::uint32_t>(values[i]) & exponent) == exponent ? 1u : 0u;
    if (any != 0)
      return false;
  }
  return true;
}

} // namespace ddactor
