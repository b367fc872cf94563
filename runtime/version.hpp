#pragma once
// The project's version, reported by `ddactor --version` and in checkpoint metadata.
namespace ddactor {
inline constexpr const char* version_string = "0.1.0";
} // namespace ddactor
