#pragma once
// The activations a diffusers config may name (`act_fn`, `time_embedding_act_fn`,
// `timestep_post_act`), as diffusers' get_activation maps them: "swish" and "silu" are the same
// function.

#include <torch/torch.h>

#include <optional>
#include <string>
#include <string_view>

namespace ddactor {

enum class activation_function { silu, mish, gelu, relu };

/// nullopt for a name diffusers' get_activation does not know.
std::optional<activation_function> activation_from_name(std::string_view name);
std::string_view activation_name(activation_function function);

torch::Tensor apply_activation(activation_function function, const torch::Tensor& x);

} // namespace ddactor
