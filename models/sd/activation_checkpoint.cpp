// Activation checkpointing as a custom autograd function; see activation_checkpoint.hpp.
#include "models/sd/activation_checkpoint.hpp"

#include <ATen/Context.h>

#include <algorithm>
#include <mutex>

namespace ddactor {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What the backward pass needs besides the saved tensors. It travels in the autograd context as
// an IValue capsule: the context stores nothing else that can hold a std::function.
struct segment_record : torch::CustomClassHolder {
  checkpoint_segment segment;
  std::vector<bool> input_defined;  // the function sees the defined inputs only
  size_t defined_inputs = 0;        // its tensors: these inputs, then the weights
  torch::Device device = torch::kCPU;
  torch::Tensor rng_state;          // the device generator's state before the forward pass
};

at::Generator device_generator(torch::Device device) {
  return at::globalContext().defaultGenerator(device);
}

torch::Tensor rng_state_of(torch::Device device) {
  auto generator = device_generator(device);
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}

// Puts the device's generator back to a recorded state for its lifetime, and the generator's
// current state back after it, so that the recomputation draws what the forward pass drew and
// nothing after it notices.
class replayed_rng_state {
public:
  replayed_rng_state(torch::Device device, const torch::Tensor& recorded)
    : device_(device), current_(rng_state_of(device)) {
    set(recorded);
  }
  ~replayed_rng_state() { set(current_); }
  replayed_rng_state(const replayed_rng_state&) = delete;
  replayed_rng_state& operator=(const replayed_rng_state&) = delete;

private:
  void set(const torch::Tensor& state) {
    auto generator = device_generator(device_);
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state);
  }

  torch::Device device_;
  torch::Tensor current_;
};

// The segment's inputs in their original positions, undefined ones included.
std::vector<torch::Tensor> segment_inputs(const segment_record& record,
                                          const std::vector<torch::Tensor>& defined) {
  std::vector<torch::Tensor> out;
  size_t next = 0;
  for (bool is_defined : record.input_defined)
    out.push_back(is_defined ? defined[next++] : torch::Tensor{});
  return out;
}

struct recompute_in_backward : torch::autograd::Function<recompute_in_backward> {
  // Function::apply runs this with grad mode off: no graph is built inside the segment.
  static torch::Tensor forward(AutogradContext* ctx, c10::intrusive_ptr<segment_record> record,
                               at::TensorList tensors) {
    const auto inputs = tensors.slice(0, record->defined_inputs).vec();
    auto output = record->segment(segment_inputs(*record, inputs));
    ctx->save_for_backward(tensors.vec());
    ctx->saved_data["record"] = c10::IValue::make_capsule(record);
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list output_grads) {
    const auto capsule = ctx->saved_data["record"].toCapsule();  // keeps the record alive
    const auto* record = static_cast<const segment_record*>(capsule.get());
    const auto saved = ctx->get_saved_variables();

    // Fresh leaves for the inputs, so that the recomputed graph ends at them. The weights are
    // the module's own tensors, which the segment reads.
    std::vector<torch::Tensor> inputs;
    for (size_t i = 0; i < record->defined_inputs; ++i)
      inputs.push_back(saved[i].detach().requires_grad_(saved[i].requires_grad()));
    std::vector<torch::Tensor> differentiate_by;
    std::vector<size_t> position_of;  // in `saved`, for each entry of differentiate_by
    for (size_t i = 0; i < saved.size(); ++i) {
      const auto& tensor = i < record->defined_inputs ? inputs[i] : saved[i];
      if (tensor.requires_grad()) {
        differentiate_by.push_back(tensor);
        position_of.push_back(i);
      }
    }

    torch::Tensor output;
    {
      replayed_rng_state replay(record->device, record->rng_state);
      torch::AutoGradMode grad_on(true);
      output = record->segment(segment_inputs(*record, inputs));
    }
    const auto grads = torch::autograd::grad({output}, differentiate_by, {output_grads[0]},
                                             /*retain_graph=*/false, /*create_graph=*/false,
                                             /*allow_unused=*/true);
    // One gradient per forward argument: none for the record, then one per tensor.
    variable_list out(1 + saved.size());
    for (size_t k = 0; k < grads.size(); ++k)
      out[1 + position_of[k]] = grads[k];
    return out;
  }
};

} // namespace

torch::Tensor run_checkpointed(const checkpoint_segment& segment,
                               const std::vector<torch::Tensor>& inputs,
                               const std::vector<torch::Tensor>& weights) {
  auto needs_grad = [](const torch::Tensor& t) { return t.defined() && t.requires_grad(); };
  const bool any_grad = std::any_of(inputs.begin(), inputs.end(), needs_grad) ||
                        std::any_of(weights.begin(), weights.end(), needs_grad);
  if (!torch::GradMode::is_enabled() || !any_grad)
    return segment(inputs);

  auto record = c10::make_intrusive<segment_record>();
  record->segment = segment;
  std::vector<torch::Tensor> tensors;
  for (const auto& input : inputs) {
    record->input_defined.push_back(input.defined());
    if (input.defined()) {
      if (tensors.empty())
        record->device = input.device();
      tensors.push_back(input);
    }
  }
  record->defined_inputs = tensors.size();
  tensors.insert(tensors.end(), weights.begin(), weights.end());
  record->rng_state = rng_state_of(record->device);
  return recompute_in_backward::apply(record, at::TensorList(tensors));
}

} // namespace ddactor
