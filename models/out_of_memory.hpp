#pragma once
// A training step that runs out of memory (the GPU's, or the host's) is not a bug to restart
// from as it was: the trainer ends with errc::out_of_memory and the peer restarts it with half
// the micro-batch (data.micro_batch_size), down to one example at a time, where the same batch
// trains with the same steps in less memory (models/model_trainer.hpp).

#include <cstdint>
#include <exception>

namespace ddactor {

/// Whether `e` says an allocation failed: LibTorch's OutOfMemoryError (CUDA's caching
/// allocator), its CPU allocator's "can't allocate memory", or std::bad_alloc.
bool is_out_of_memory(const std::exception& e);

/// The micro-batch to try after a step of `micro_batch_size` examples at a time (0: the whole
/// batch of `batch_size`) ran out of memory: half as many, or 0 when one example at a time did.
int64_t smaller_micro_batch(int64_t micro_batch_size, int64_t batch_size);

/// Throws what LibTorch's allocator throws when memory runs out (c10::OutOfMemoryError), for
/// the fault injection of tests (debug.out_of_memory_above).
[[noreturn]] void throw_out_of_memory(const char* what);

} // namespace ddactor
