#pragma once
// Which codec each piece of an all-reduce travels with, decided with the tensor it belongs to (as
// hivemind's CompressionInfo gives a compressor the tensor's context). The one place that knows:
//   * adaptive: a piece of a tensor smaller than codec_options::adaptive_exact_below elements
//     (norms, biases, embeddings of a few values) goes exactly ("none"), a larger one as int8;
//     pieces are cut where tensors begin and end so that each piece belongs to one tensor;
//   * topk: the scatter phase keeps topk_fraction of a piece and carries error feedback (what it
//     drops rides along in a later round); the gather phase keeps up to `senders` times as many
//     entries, enough for every entry the senders kept, so a reducer's result travels intact;
//   * every other codec: as named, for every piece.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/allreduce/butterfly_partition.hpp"
#include "runtime/allreduce/chunk_coding.hpp"
#include "runtime/allreduce/round_messages.hpp"

namespace ddactor {

class chunk_policy {
public:
  chunk_policy() = default;
  /// `tensor_bounds`: the offsets where tensors start in the flat vector, ascending, the first 0
  /// and the last the vector's length (null: one tensor, the adaptive codec then uses int8).
  chunk_policy(std::string codec, codec_options settings,
               std::shared_ptr<const std::vector<uint64_t>> tensor_bounds = nullptr);

  /// Whether pieces carry error feedback (top-k): the round's residual is then its input and
  /// part of its outcome.
  bool error_feedback() const noexcept { return codec_ == "topk"; }

  /// `range` cut where tensors begin or end (adaptive only; otherwise `range` itself).
  std::vector<part_range> pieces(part_range range) const;
  /// The codec of `piece` (inside one tensor) in `phase` of a round with `senders` members.
  chunk_codec codec_for(part_range piece, std::size_t senders, allreduce_phase phase) const;

private:
  bool small_tensor(part_range piece) const;

  std::string codec_ = "none";
  codec_options settings_;
  std::shared_ptr<const std::vector<uint64_t>> tensor_bounds_;
};

} // namespace ddactor
