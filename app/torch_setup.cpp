#include "app/torch_setup.hpp"

#include <torch/torch.h>

#include <thread>

namespace ddactor {

int configure_torch_threads(int requested) {
  int n = requested > 0 ? requested : static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0)
    n = 1;
  torch::set_num_threads(n);
  return torch::get_num_threads();
}

} // namespace ddactor
