#pragma once
// Puts every trainable parameter of a module, and its gradient, into one contiguous float buffer.
//
// The module's parameters become views into `values()`, their gradients views into `gradients()`,
// so the optimizer, the EMA and the swarm's all-reduce each work on a single flat vector (one
// kernel instead of one per tensor; one buffer to send), while the module trains as usual.
// LibTorch's autograd accumulates into an existing dense gradient in place, which keeps the views
// valid as long as gradients are zeroed with zero_gradients() and never set to undefined.
//
// Not thread-safe: owned by the one thread that trains the module.

#include <torch/torch.h>

#include <string>
#include <vector>

namespace ddactor {

class flat_parameters {
 public:
  struct entry {
    std::string name;
    int64_t offset = 0;
    int64_t numel = 0;
    std::vector<int64_t> shape;
  };

  explicit flat_parameters(torch::nn::Module& module);

  /// All parameter values, (size) float32; writing into it changes the module.
  const torch::Tensor& values() const { return values_; }
  /// All gradients, same layout as values().
  const torch::Tensor& gradients() const { return gradients_; }
  void zero_gradients() { gradients_.zero_(); }

  const std::vector<entry>& entries() const { return entries_; }
  int64_t size() const { return values_.numel(); }

  /// The view of one parameter inside a flat vector of this layout (values, gradients, EMA, ...).
  torch::Tensor view_of(const torch::Tensor& flat, const entry& e) const;

 private:
  torch::Tensor values_;
  torch::Tensor gradients_;
  std::vector<entry> entries_;
};

} // namespace ddactor
