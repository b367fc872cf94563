// recycled_floats: see recycled_floats.hpp.
#include "runtime/allreduce/recycled_floats.hpp"

#include <utility>

namespace ddactor {

recycled_floats::recycled_floats() : slot_(std::make_shared<slot>()) {}

std::vector<float> recycled_floats::take(std::size_t n) {
  std::vector<float> values;
  {
    std::lock_guard<std::mutex> lock(slot_->mutex);
    if (slot_->spare.capacity() >= n)
      values = std::move(slot_->spare);
  }
  // Only what the spare lacks is zero-filled: the caller writes every element anyway.
  values.resize(n);
  return values;
}

std::shared_ptr<const std::vector<float>> recycled_floats::share(std::vector<float> values) {
  auto* owned = new std::vector<float>(std::move(values));
  std::weak_ptr<slot> home = slot_;
  return std::shared_ptr<const std::vector<float>>(owned, [home](const std::vector<float>* v) {
    std::unique_ptr<std::vector<float>> result(const_cast<std::vector<float>*>(v));
    if (auto back = home.lock()) {
      std::lock_guard<std::mutex> lock(back->mutex);
      if (result->capacity() > back->spare.capacity())
        back->spare = std::move(*result);
    }
  });
}

} // namespace ddactor
