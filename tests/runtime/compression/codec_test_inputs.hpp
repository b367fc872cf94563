#pragma once
// Inputs shared by the codec tests: seeded random vectors of the shapes gradients take (normal,
// heavy-tailed over twelve decades, all zero), the sizes every codec is swept over, and small
// helpers to read and patch frames.
#include "runtime/compression/codec_frame.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace ddactor::codec_test {

enum class distribution { normal, heavy_tailed, zeros };

inline std::string distribution_name(distribution d) {
  switch (d) {
    case distribution::normal: return "normal";
    case distribution::heavy_tailed: return "heavy_tailed";
    case distribution::zeros: return "zeros";
  }
  return "unknown";
}

// Heavy-tailed: Cauchy samples times 10^u with u uniform in [-6, 6], clipped to +-1e30 so the
// sum of squares in the error norms stays finite.
inline std::vector<float> make_input(distribution d, std::size_t n, std::uint32_t seed = 7) {
  std::mt19937 rng(seed + static_cast<std::uint32_t>(n));
  std::vector<float> values(n, 0.0f);
  if (d == distribution::normal) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& v : values)
      v = normal(rng);
  } else if (d == distribution::heavy_tailed) {
    std::cauchy_distribution<double> cauchy(0.0, 1.0);
    std::uniform_real_distribution<double> decade(-6.0, 6.0);
    for (float& v : values)
      v = static_cast<float>(std::clamp(cauchy(rng) * std::pow(10.0, decade(rng)), -1e30, 1e30));
  }
  return values;
}

// 0, 1, odd, the default int8 block size and its neighbours, and a large odd size.
inline const std::vector<std::size_t> sweep_sizes = {0, 1, 7, 255, 256, 257, 1000003};

inline double relative_error(std::span<const float> x, std::span<const float> y) {
  double difference = 0.0;
  double norm = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(x[i]) - static_cast<double>(y[i]);
    difference += d * d;
    norm += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  }
  return norm == 0.0 ? std::sqrt(difference) : std::sqrt(difference / norm);
}

inline bool bit_identical(std::span<const float> x, std::span<const float> y) {
  return x.size() == y.size() &&
         (x.empty() || std::memcmp(x.data(), y.data(), x.size_bytes()) == 0);
}

// Overwrites bytes of a frame at `offset` with the bytes of `value`.
template <class T> void patch(std::vector<std::byte>& frame, std::size_t offset, T value) {
  std::memcpy(frame.data() + offset, &value, sizeof(T));
}

} // namespace ddactor::codec_test
