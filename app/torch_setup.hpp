#pragma once
// Process-wide LibTorch settings that must be made once, before any model runs.
namespace ddactor {

/// Sets LibTorch's intra-op thread count; 0 means one per core.
/// Returns the count in effect.
int configure_torch_threads(int requested);

} // namespace ddactor
