// Auditing a reducer; see reducer_audit.hpp.
#include "runtime/allreduce/reducer_audit.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <span>

#include <fmt/format.h>

#include "runtime/allreduce/weighted_reduction.hpp"

namespace ddactor {

reducer_audit::reducer_audit(audit_plan plan) : plan_(std::move(plan)) {
  inputs_.assign(plan_.pieces.size(), std::vector<std::vector<float>>(plan_.senders.size()));
}

bool reducer_audit::wants(const audit_evidence& evidence) const {
  return std::any_of(plan_.pieces.begin(), plan_.pieces.end(), [&](const part_range& piece) {
    return piece.begin == evidence.blob.offset;
  });
}

std::optional<std::string> reducer_audit::add(const audit_evidence& evidence) {
  if (evidence.round_id != plan_.round_id || evidence.member_set != plan_.member_set)
    return "evidence of another round or attempt";
  const auto at = std::find(plan_.senders.begin(), plan_.senders.end(), evidence.sender);
  if (at == plan_.senders.end())
    return "evidence from a member outside the attempt";
  const auto position = static_cast<std::size_t>(at - plan_.senders.begin());
  const auto& blob = evidence.blob;
  const auto piece =
    std::find_if(plan_.pieces.begin(), plan_.pieces.end(),
                 [&](const part_range& p) { return p.begin == blob.offset; });
  if (blob.part_index != plan_.position || piece == plan_.pieces.end())
    return "evidence for a piece that was not asked for";
  const auto k = static_cast<std::size_t>(piece - plan_.pieces.begin());
  if (!inputs_[k][position].empty())
    return "the same piece twice";
  if (!chunk_signed_by(evidence.proof, plan_.sender_ids[position], plan_.round_id,
                       plan_.member_set, evidence.sender, blob))
    return fmt::format("a chunk not signed by member {}", evidence.sender);
  std::vector<float> values;
  try {
    values = decode_chunk(blob, plan_.round_id, plan_.position, plan_.part.size());
  } catch (const std::exception& e) {
    return e.what();
  }
  if (values.size() != piece->size())
    return "a piece of the wrong size";
  inputs_[k][position] = std::move(values);
  accepted_.push_back(evidence);
  ++received_;
  return std::nullopt;
}

audit_plan sample_pieces(audit_plan plan, std::size_t count, uint64_t seed) {
  if (plan.pieces.size() <= count)
    return plan;
  std::mt19937_64 draw(seed);
  std::shuffle(plan.pieces.begin(), plan.pieces.end(), draw);
  plan.pieces.resize(count);
  std::sort(plan.pieces.begin(), plan.pieces.end(),
            [](const part_range& a, const part_range& b) { return a.begin < b.begin; });
  return plan;
}

proof_finding check_accusation_proof(audit_plan plan, const std::vector<audit_evidence>& proof) {
  using kind = proof_finding::kind;
  std::vector<uint64_t> offsets;
  for (const auto& evidence : proof)
    if (std::find(offsets.begin(), offsets.end(), evidence.blob.offset) == offsets.end())
      offsets.push_back(evidence.blob.offset);
  if (offsets.empty() || offsets.size() > max_audited_pieces)
    return {kind::refused, fmt::format("it names {} pieces", offsets.size())};
  std::vector<part_range> pieces;
  for (const auto offset : offsets) {
    const auto piece = std::find_if(plan.pieces.begin(), plan.pieces.end(),
                                    [&](const part_range& p) { return p.begin == offset; });
    if (piece == plan.pieces.end())
      return {kind::refused, fmt::format("no piece of the part begins at {}", offset)};
    pieces.push_back(*piece);
  }
  plan.pieces = std::move(pieces);
  reducer_audit audit(std::move(plan));
  for (const auto& evidence : proof)
    if (auto refused = audit.add(evidence))
      return {kind::refused, *refused};
  if (!audit.complete())
    return {kind::refused, fmt::format("{} of its {} inputs are missing",
                                       audit.expected() - audit.received(), audit.expected())};
  auto finding = audit.verdict();
  return {finding.honest ? kind::contradicted : kind::confirmed, std::move(finding.detail)};
}

bool matches_within_codec_error(const std::vector<float>& applied,
                                const std::vector<float>& reduced, const chunk_codec& codec,
                                double* distance, double* allowed) {
  if (applied.size() != reduced.size())
    return false;
  // The codec's own error on the honest values: what the reducer had to send.
  std::vector<float> sent = reduced;
  if (codec.name != "none") {
    chunk_encode_job job;
    job.part_length = reduced.size();
    job.values = reduced;
    job.codec = codec;
    job.decode_back = true;
    auto coded = run_chunk_job(std::move(job));
    if (coded.error.empty())
      sent = std::move(coded.values);
  }
  double diff = 0, codec_error = 0, norm = 0;
  for (std::size_t i = 0; i < reduced.size(); ++i) {
    const double r = reduced[i];
    diff += (applied[i] - r) * (applied[i] - r);
    codec_error += (sent[i] - r) * (sent[i] - r);
    norm += r * r;
  }
  const double d = std::sqrt(diff);
  const double bound = 2 * std::sqrt(codec_error) + 1e-5 * std::sqrt(norm) + 1e-30;
  if (distance)
    *distance = d;
  if (allowed)
    *allowed = bound;
  return d <= bound;
}

audit_finding reducer_audit::verdict() const {
  if (!complete())
    return {false, fmt::format("{} of {} inputs arrived", received_, expected())};
  for (std::size_t k = 0; k < plan_.pieces.size(); ++k) {
    const auto& piece = plan_.pieces[k];
    part_reducer reducer(piece.size(), plan_.senders.size(), plan_.aggregation);
    for (std::size_t j = 0; j < plan_.senders.size(); ++j)
      if (reducer.accept(j, 0, inputs_[k][j], plan_.weights[j]) != accept_status::accepted)
        return {false, fmt::format("member {}'s input does not reduce", plan_.senders[j])};
    const auto reduced = reducer.average_of_range(0, piece.size());
    const auto first = plan_.result.begin() + static_cast<std::ptrdiff_t>(piece.begin);
    const std::vector<float> applied(first, first + static_cast<std::ptrdiff_t>(piece.size()));
    const part_range in_vector{plan_.part.begin + piece.begin, plan_.part.begin + piece.end};
    const auto codec =
      plan_.policy.codec_for(in_vector, plan_.senders.size(), allreduce_phase::gather);
    double distance = 0, allowed = 0;
    if (!matches_within_codec_error(applied, reduced, codec, &distance, &allowed))
      return {false, fmt::format("elements [{}, {}) of its result are {:.3g} away from what its "
                                 "inputs give (at most {:.3g} allowed)",
                                 in_vector.begin, in_vector.end, distance, allowed)};
  }
  return {true, ""};
}

} // namespace ddactor
