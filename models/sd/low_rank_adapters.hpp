#pragma once
// The LoRA adapters of a model: which of its Linear layers get one (the sites), the adapters
// themselves gathered in one module, and attaching them to the model.
//
// Sites are chosen as PEFT chooses `target_modules` from a list of names: a layer is a site when
// its full name equals a target or ends with "." + target. "to_q" thus selects every attention's
// query projection, "attn2.to_k" only the cross-attentions' key projections. Only adaptable_linear
// layers can be sites (the Linear layers of the UNet's transformer blocks); a target that names
// none of them is an error, so a typo never trains an empty adapter set.
//
// The adapters module mirrors the model's names: the adapter of `down_blocks.0.attentions.0.
// transformer_blocks.0.attn1.to_q` holds `<that path>.lora.down.weight` and `.lora.up.weight`,
// the names the adapted model itself shows while they are attached. Its parameters are exactly
// the adapters' A and B, so a trainer's flat parameters (and a swarm's rounds) hold nothing else.

#include <torch/torch.h>

#include <string>
#include <vector>

#include "models/sd/adaptable_linear.hpp"

namespace ddactor {

/// diffusers' and PEFT's usual choice for SD: the four attention projections.
const std::vector<std::string>& default_lora_targets();

struct low_rank_adapter_options {
  int64_t rank = 8;
  double alpha = 8.0;
  std::vector<std::string> targets = default_lora_targets();
};

/// A Linear layer that gets an adapter.
struct adapter_site {
  std::string path;  // its name in the model, e.g. "mid_block.attentions.0.transformer_blocks.0.attn1.to_q"
  int64_t in_features = 0;
  int64_t out_features = 0;
};

/// The sites of `model` for `targets`, in the model's module order. Throws std::invalid_argument
/// naming a target that selects no adaptable Linear layer.
std::vector<adapter_site> find_adapter_sites(torch::nn::Module& model,
                                             const std::vector<std::string>& targets);

struct low_rank_adapters_impl : torch::nn::Module {
  /// One freshly initialised adapter per site (A from the global torch generator: seed it the
  /// same on every peer of a swarm).
  low_rank_adapters_impl(std::vector<adapter_site> sites, int64_t rank, double alpha);

  const std::vector<adapter_site>& sites() const { return sites_; }
  const std::vector<low_rank_adapter>& adapters() const { return adapters_; }
  int64_t rank() const { return rank_; }
  double alpha() const { return alpha_; }

  /// Attaches adapter i to site i of `model` (which must have those sites' layers).
  void attach_to(torch::nn::Module& model);
  void detach_from(torch::nn::Module& model);
  /// Adds each adapter's delta, scale * B A, to its site's weight in `model` (adapters not
  /// attached there): the model then computes what it computes with them attached.
  void merge_into(torch::nn::Module& model) const;

private:
  std::vector<adapter_site> sites_;
  std::vector<low_rank_adapter> adapters_;
  int64_t rank_;
  double alpha_;
};
TORCH_MODULE_IMPL(low_rank_adapters, low_rank_adapters_impl);

} // namespace ddactor
