// The codec of each piece of a round; see chunk_policy.hpp.
#include "runtime/allreduce/chunk_policy.hpp"

#include <algorithm>
#include <cmath>

namespace ddactor {

chunk_policy::chunk_policy(std::string codec, codec_options settings,
                           std::shared_ptr<const std::vector<uint64_t>> tensor_bounds)
    : codec_(std::move(codec)), settings_(settings), tensor_bounds_(std::move(tensor_bounds)) {}

std::vector<part_range> chunk_policy::pieces(part_range range) const {
  std::vector<part_range> out;
  if (codec_ != "adaptive" || tensor_bounds_ == nullptr) {
    out.push_back(range);
    return out;
  }
  auto begin = range.begin;
  auto it = std::upper_bound(tensor_bounds_->begin(), tensor_bounds_->end(),
                             static_cast<uint64_t>(begin));
  for (; it != tensor_bounds_->end() && *it < range.end; ++it) {
    out.push_back({begin, static_cast<std::size_t>(*it)});
    begin = static_cast<std::size_t>(*it);
  }
  out.push_back({begin, range.end});
  return out;
}

bool chunk_policy::small_tensor(part_range piece) const {
  const auto& bounds = *tensor_bounds_;
  auto it = std::upper_bound(bounds.begin(), bounds.end(), static_cast<uint64_t>(piece.begin));
  if (it == bounds.begin() || it == bounds.end())
    return true;
  return *it - *(it - 1) < settings_.adaptive_exact_below;
}

chunk_codec chunk_policy::codec_for(part_range piece, std::size_t senders,
                                    allreduce_phase phase) const {
  chunk_codec out{codec_, settings_};
  if (codec_ == "adaptive")
    out.name = tensor_bounds_ && small_tensor(piece) ? "none" : "int8";
  if (codec_ == "topk" && phase == allreduce_phase::gather && !piece.empty()) {
    const auto size = static_cast<double>(piece.size());
    const auto kept =
      static_cast<double>(std::max<long long>(1, std::llround(out.settings.topk_fraction * size)));
    out.settings.topk_fraction =
      std::min(1.0, (static_cast<double>(senders) * kept + 0.5) / size);
  }
  return out;
}

} // namespace ddactor
