// Activations by diffusers name; see activation_function.hpp.
#include "models/sd/activation_function.hpp"

namespace ddactor {

std::optional<activation_function> activation_from_name(std::string_view name) {
  if (name == "silu" || name == "swish")
    return activation_function::silu;
  if (name == "mish")
    return activation_function::mish;
  if (name == "gelu")
    return activation_function::gelu;
  if (name == "relu")
    return activation_function::relu;
  return std::nullopt;
}

std::string_view activation_name(activation_function function) {
  switch (function) {
    case activation_function::silu: return "silu";
    case activation_function::mish: return "mish";
    case activation_function::gelu: return "gelu";
    case activation_function::relu: return "relu";
  }
  return "unknown";
}

torch::Tensor apply_activation(activation_function function, const torch::Tensor& x) {
  switch (function) {
    case activation_function::silu: return torch::silu(x);
    case activation_function::mish: return torch::mish(x);
    case activation_function::gelu: return torch::gelu(x);
    case activation_function::relu: return torch::relu(x);
  }
  throw std::logic_error("unknown activation_function value");
}

} // namespace ddactor
