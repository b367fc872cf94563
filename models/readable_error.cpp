// One readable line per failure; see readable_error.hpp.
#include "models/readable_error.hpp"

#include <c10/util/Exception.h>

#include <new>

namespace ddactor {

std::string readable_error(const std::exception& error) {
  if (dynamic_cast<const std::bad_alloc*>(&error) != nullptr)
    return "out of memory: the model, batch or image size needs more memory than this machine "
           "can give (lower model.hidden_size, model.depth, data.batch_size or data.resolution)";
  std::string text = error.what();
  if (const auto* torch_error = dynamic_cast<const c10::Error*>(&error)) {
    text = torch_error->what_without_backtrace();
    // LibTorch's first line says what happened; the rest is where (its call sites). Our own
    // errors keep every line: a list of mismatched keys is the point of the message.
    if (const auto end = text.find('\n'); end != std::string::npos)
      text.resize(end);
  }
  if (text.find("DefaultCPUAllocator: can't allocate memory") != std::string::npos ||
      text.find("not enough memory") != std::string::npos)
    return "out of memory (" + text + "): lower model.hidden_size, model.depth, "
           "data.batch_size or data.resolution";
  return text;
}

} // namespace ddactor
