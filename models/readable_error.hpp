#pragma once
// One readable line for any failure a user may meet at run time: LibTorch's errors come with a
// C++ backtrace of dozens of lines (c10::Error::what()), and an exhausted memory says only
// "std::bad_alloc". Logs and exit messages use this instead of what().

#include <exception>
#include <string>

namespace ddactor {

/// The exception's message without backtraces, on one line; a memory shortage says what to
/// lower.
std::string readable_error(const std::exception& error);

} // namespace ddactor
