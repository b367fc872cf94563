// Switching checkpointing and chunked attention on a whole model; see memory_saving.hpp.
#include "models/sd/memory_saving.hpp"

#include "models/sd/cross_attention.hpp"
#include "models/sd/resnet_block_2d.hpp"
#include "models/sd/transformer_2d.hpp"

namespace ddactor {

void apply_memory_saving(torch::nn::Module& model, const memory_saving_options& options) {
  TORCH_CHECK(options.attention_query_chunk_size >= 0,
              "attention_query_chunk_size must be 0 (off) or positive, got ",
              options.attention_query_chunk_size);
  auto configure = [&](torch::nn::Module& module) {
    if (auto* resnet = module.as<resnet_block_2d_impl>())
      resnet->checkpoint_activations = options.checkpoint_activations;
    else if (auto* block = module.as<basic_transformer_block_impl>())
      block->checkpoint_activations = options.checkpoint_activations;
    else if (auto* attention = module.as<cross_attention_impl>())
      attention->query_chunk_size = options.attention_query_chunk_size;
  };
  configure(model);
  for (const auto& module : model.modules(/*include_self=*/false))
    configure(*module);
}

} // namespace ddactor
