// Out-of-memory failures of a training step; see out_of_memory.hpp.
#include "models/out_of_memory.hpp"

#include <c10/util/Exception.h>

#include <new>
#include <string_view>

namespace ddactor {

bool is_out_of_memory(const std::exception& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr ||
      dynamic_cast<const std::bad_alloc*>(&e) != nullptr)
    return true;
  if (dynamic_cast<const c10::Error*>(&e) == nullptr)
    return false;
  const std::string_view what = e.what();
  return what.find("can't allocate memory") != std::string_view::npos ||
         what.find("out of memory") != std::string_view::npos;
}

int64_t smaller_micro_batch(int64_t micro_batch_size, int64_t batch_size) {
  const int64_t at_once =
    micro_batch_size <= 0 || micro_batch_size > batch_size ? batch_size : micro_batch_size;
  return at_once <= 1 ? 0 : at_once / 2;
}

void throw_out_of_memory(const char* what) {
  TORCH_CHECK_WITH(OutOfMemoryError, false, what);
  throw std::bad_alloc();  // not reached: the check above always throws
}

} // namespace ddactor
