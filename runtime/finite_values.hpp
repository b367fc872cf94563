#pragma once
// Whether a run of floats holds no NaN and no infinity: checked on every value that arrives from
// the network, so it runs at memory speed (branch-free over blocks, which compilers vectorize)
// instead of one std::isfinite branch per value.

#include <span>

namespace ddactor {

bool all_finite(std::span<const float> values) noexcept;

} // namespace ddactor
