// One member's side of a butterfly round; see butterfly_round.hpp for the protocol, its states
// and its failure semantics.
#include "runtime/allreduce/butterfly_round.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <span>
#include <utility>

#include "runtime/allreduce/bandwidth_shares.hpp"

namespace ddactor {

namespace {

constexpr std::size_t max_members = 64;

bool in_set(uint64_t set, uint32_t member) {
  return member < max_members && ((set >> member) & 1u);
}

uint64_t bit(uint32_t member) {
  return uint64_t{1} << member;
}

} // namespace

butterfly_round::butterfly_round(round_setup setup) : setup_(std::move(setup)) {}

uint64_t butterfly_round::all_members() const noexcept {
  const auto n = setup_.members.size();
  return n >= max_members ? ~uint64_t{0} : (bit(static_cast<uint32_t>(n)) - 1);
}

std::string butterfly_round::member_name(uint32_t member) const {
  if (member < setup_.members.size() && !setup_.members[member].name.empty())
    return setup_.members[member].name;
  return "member " + std::to_string(member);
}

std::vector<round_action> butterfly_round::start() {
  if (state_ != status::idle)
    return {};
  const auto n = setup_.members.size();
  if (n == 0 || n > max_members || setup_.me >= n || !setup_.values) {
    fail(round_failure::cause::invalid_setup, "assignment does not fit this peer");
    return take();
  }
  for (const auto& m : setup_.members)
    if (!(m.weight > 0) || !std::isfinite(m.weight)) {
      fail(round_failure::cause::invalid_setup, "assignment has an invalid member");
      return take();
    }
  clip_weights();
  if (setup_.policy.error_feedback() && setup_.residual.size() != setup_.values->size())
    setup_.residual.assign(setup_.values->size(), 0.0f);
  if (!setup_.policy.error_feedback())
    setup_.residual.clear();
  if (setup_.chunk_elements == 0)
    setup_.chunk_elements = 1;
  state_ = status::running;
  member_set_ = all_members();
  start_attempt();
  return take();
}

// Bounds every weight by max_weight_ratio x the median weight (the lower median of an even
// count), the same on every member since all clip the same assignment.
std::vector<double> bounded_weights(const std::vector<double>& claimed, double max_ratio) {
  if (!(max_ratio > 0) || claimed.size() < 2)
    return claimed;
  std::vector<double> sorted = claimed;
  const auto middle = sorted.begin() + static_cast<std::ptrdiff_t>((sorted.size() - 1) / 2);
  std::nth_element(sorted.begin(), middle, sorted.end());
  const double bound = max_ratio * *middle;
  std::vector<double> out = claimed;
  for (auto& w : out)
    w = std::min(w, bound);
  return out;
}

void butterfly_round::clip_weights() {
  std::vector<double> claimed;
  for (const auto& m : setup_.members)
    claimed.push_back(m.weight);
  const auto used = bounded_weights(claimed, setup_.max_weight_ratio);
  for (uint32_t m = 0; m < setup_.members.size(); ++m)
    if (used[m] != claimed[m]) {
      out_.emplace_back(round_weight_clipped{m, claimed[m], used[m]});
      setup_.members[m].weight = used[m];
    }
}

void butterfly_round::fail(round_failure::cause why, std::string detail) {
  if (state_ == status::done || state_ == status::failed)
    return;
  state_ = status::failed;
  reducer_.reset();
  out_.emplace_back(round_failure{why, std::move(detail)});
}

// (Re)starts the all-reduce among the members in member_set_.
void butterfly_round::start_attempt() {
  ++attempt_;  // results of earlier attempts still at the coders are dropped on arrival
  active_.clear();
  for (uint32_t m = 0; m < setup_.members.size(); ++m)
    if (in_set(member_set_, m))
      active_.push_back(m);
  my_position_ = static_cast<uint32_t>(
    std::find(active_.begin(), active_.end(), setup_.me) - active_.begin());
  const auto& values = *setup_.values;
  // Every part's result lands here; alone, our own values are the result.
  if (output_.capacity() < values.size() && setup_.output_buffers)
    output_ = setup_.output_buffers->take(values.size());
  if (active_.size() == 1)
    output_.assign(values.begin(), values.end());
  else  // not zero-filled: the round ends only once every part's every piece was written here
    output_.resize(values.size());
  residual_ = setup_.residual;
  std::vector<uint64_t> shares;
  for (auto member : active_)
    shares.push_back(setup_.members[member].part_share);
  parts_ = partition_by_shares(values.size(), shares);
  part_received_.assign(parts_.size(), 0);
  parts_done_ = 0;
  for (const auto& part : parts_)
    if (part.empty())
      ++parts_done_;
  part_pieces_.assign(parts_.size(), {});
  piece_arrived_.assign(parts_.size(), {});
  for (std::size_t p = 0; p < parts_.size(); ++p) {
    for (const auto& chunk : chunk_ranges(parts_[p], setup_.chunk_elements))
      for (const auto& piece : setup_.policy.pieces(chunk))
        part_pieces_[p].push_back({piece.begin - parts_[p].begin, piece.end - parts_[p].begin});
    piece_arrived_[p].assign(part_pieces_[p].size(), false);
  }
  const auto& my_part = parts_[my_position_];
  reducer_ =
    my_part.empty() ? nullptr
                    : std::make_unique<part_reducer>(my_part.size(), active_.size(),
                                                     setup_.aggregation);
  current_evidence_ = nullptr;
  if (setup_.keep_evidence && active_.size() > 1 && !my_part.empty()) {
    current_evidence_ = &evidence_[member_set_];
    *current_evidence_ = {};
    current_evidence_->position = my_position_;
    current_evidence_->part_begin = my_part.begin;
  }
  my_pieces_.clear();
  for (const auto& piece : part_pieces_[my_position_])
    my_pieces_.push_back({my_part.begin + piece.begin, my_part.begin + piece.end});
  piece_reduced_.assign(my_pieces_.size(), false);
  pieces_reduced_ = 0;
  scatter_chunks_ = 0;
  if (active_.size() == 1) {
    // Everyone else failed: this member's own values are the result, its residual untouched.
    reducer_.reset();
    parts_done_ = parts_.size();
    finish_if_complete();
    return;
  }
  // Scatter: part p of our vector to the member that reduces it, our own part into our reducer
  // as the others will read it.
  const bool topk = setup_.policy.error_feedback();
  const double my_weight = setup_.members[setup_.me].weight;
  for (uint32_t p = 0; p < active_.size(); ++p) {
    const auto& part = parts_[p];
    const bool own = p == my_position_;
    for (const auto& chunk : chunk_ranges(part, setup_.chunk_elements))
      for (const auto& piece : setup_.policy.pieces(chunk)) {
        const std::span<const float> piece_view(values.data() + piece.begin, piece.size());
        auto codec = setup_.policy.codec_for(piece, active_.size(), allreduce_phase::scatter);
        if (!topk && codec.name == "none") {
          // Raw floats are only read: the reducer and the encoder take views of our values.
          if (own) {
            if (reducer_->accept_shared(my_position_, piece.begin - part.begin, setup_.values,
                                        piece_view, my_weight) != accept_status::accepted) {
              fail(round_failure::cause::unencodable_values, "our own values are not finite");
              return;
            }
            if (current_evidence_)
              current_evidence_->own_raw.push_back(piece);
          } else
            encode_view(active_[p], p, piece, piece_view);
          continue;
        }
        std::vector<float> piece_values(piece_view.begin(), piece_view.end());
        if (topk) {
          // Error feedback: what earlier rounds dropped rides along with this round's values
          // (where the sum would overflow float32, the old residual is given up instead).
          for (std::size_t i = 0; i < piece.size(); ++i) {
            const float sum = piece_values[i] + residual_[piece.begin + i];
            if (std::isfinite(sum))
              piece_values[i] = sum;
          }
        }
        if (!own)
          ++scatter_chunks_;
        encode(own ? chunk_role::own_part : chunk_role::scatter_out, active_[p], p, piece,
               std::move(piece_values), std::move(codec), own, topk);
      }
  }
  reduce_ready_pieces();
  finish_if_complete();  // an empty vector: nothing to send or receive
}

void butterfly_round::encode(chunk_role role, uint32_t member, uint32_t position,
                             part_range piece, std::vector<float> values, chunk_codec codec,
                             bool decode_back, bool error_feedback) {
  const auto& part = parts_[position];
  pending_job job;
  job.role = role;
  job.attempt = attempt_;
  job.member = member;
  job.position = position;
  job.offset = piece.begin - part.begin;
  job.piece_begin = piece.begin;
  job.elements = piece.size();
  round_encode action;
  action.tag = next_tag_++;
  action.role = role;
  action.member = member;
  action.job.round_id = setup_.round_id;
  action.job.part_index = position;
  action.job.offset = job.offset;
  action.job.part_length = part.size();
  action.job.values = std::move(values);
  action.job.codec = std::move(codec);
  action.job.decode_back = decode_back;
  action.job.error_feedback = error_feedback;
  if (role == chunk_role::scatter_out || role == chunk_role::own_part) {
    action.job.signer = setup_.signer;
    action.job.member_set = member_set_;
    action.job.sender = setup_.me;
  }
  pending_.emplace(action.tag, job);
  out_.emplace_back(std::move(action));
}

// Our raw values for another member's part, as a view of setup_.values (no copy).
void butterfly_round::encode_view(uint32_t member, uint32_t position, part_range piece,
                                  std::span<const float> view) {
  ++scatter_chunks_;
  encode(chunk_role::scatter_out, member, position, piece, {}, chunk_codec{}, false, false);
  auto& job = std::get<round_encode>(out_.back()).job;
  job.owner = setup_.values;
  job.view = view;
}

// Every piece of our part that all members have sent is reduced at once and encoded once; the
// result is applied and sent when it comes back. Pieces go out while others still arrive, so a
// member on a slow link receives results while it still sends (the gather overlaps the scatter).
void butterfly_round::reduce_ready_pieces() {
  if (!reducer_)
    return;
  const auto& part = parts_[my_position_];
  for (std::size_t k = 0; k < my_pieces_.size(); ++k) {
    const auto& piece = my_pieces_[k];
    const auto offset = piece.begin - part.begin;
    if (piece_reduced_[k] || !reducer_->range_complete(offset, offset + piece.size()))
      continue;
    piece_reduced_[k] = true;
    ++pieces_reduced_;
    encode(chunk_role::gather_out, setup_.me, my_position_, piece,
           reducer_->average_of_range(offset, offset + piece.size()),
           setup_.policy.codec_for(piece, active_.size(), allreduce_phase::gather), true, false);
  }
  if (pieces_reduced_ == my_pieces_.size()) {
    reducer_.reset();
    if (current_evidence_)
      current_evidence_->complete = true;
  }
}

void butterfly_round::apply_result(uint32_t position, uint64_t offset,
                                   const std::vector<float>& values) {
  const auto& part = parts_[position];
  std::copy(values.begin(), values.end(),
            output_.begin() + static_cast<std::ptrdiff_t>(part.begin + offset));
  part_received_[position] += values.size();
  if (part_received_[position] == part.size())
    ++parts_done_;
}

// Whether [offset, offset + size) is one of the part's pieces and has not arrived before.
bool butterfly_round::expected_result_piece(uint32_t position, uint64_t offset,
                                            std::size_t size) {
  const auto& pieces = part_pieces_[position];
  auto it = std::lower_bound(pieces.begin(), pieces.end(), offset,
                             [](const part_range& piece, uint64_t at) { return piece.begin < at; });
  if (it == pieces.end() || it->begin != offset || it->size() != size)
    return false;
  const auto k = static_cast<std::size_t>(it - pieces.begin());
  if (piece_arrived_[position][k])
    return false;
  piece_arrived_[position][k] = true;
  return true;
}

void butterfly_round::finish_if_complete() {
  if (state_ != status::running || parts_done_ != parts_.size())
    return;
  state_ = status::done;
  digest_ = blob_checksum(std::span<const char>(reinterpret_cast<const char*>(output_.data()),
                                                output_.size() * sizeof(float)));
  digests_expected_ = active_.size() > 1 ? member_set_ & ~bit(setup_.me) & ~gone_ : 0;
  round_done done;
  done.values = setup_.output_buffers
                  ? setup_.output_buffers->share(std::move(output_))
                  : std::make_shared<const std::vector<float>>(std::move(output_));
  done.group_size = static_cast<uint32_t>(active_.size());
  done.member_set = member_set_;
  done.left_out = all_members() & ~member_set_ & ~gone_;
  done.digest = digest_;
  // Alone, nothing was sent: the residual stays as the round found it.
  done.residual = active_.size() > 1 ? std::move(residual_) : setup_.residual;
  output_.clear();
  reducer_.reset();
  out_.emplace_back(std::move(done));
}

// Drops members from the round and restarts it, if that changes the member set.
void butterfly_round::shrink_to(uint64_t set, const std::string& why) {
  set &= member_set_;
  set |= bit(setup_.me);
  if (state_ != status::running || set == member_set_)
    return;
  member_set_ = set;
  ++restarts_;
  out_.emplace_back(round_restart{member_set_, why});
  start_attempt();
}

void butterfly_round::reject(uint32_t sender, std::string reason, std::string detail) {
  const bool known = sender < setup_.members.size();
  out_.emplace_back(round_reject{known ? sender : static_cast<uint32_t>(setup_.members.size()),
                                 reason, detail});
  if (known && sender != setup_.me)
    shrink_to(member_set_ & ~bit(sender), "invalid data from " + member_name(sender));
}

// Whether this attempt has everything it needs from `member`: its values for our part (our
// reduction is over, or its share of it arrived) and its part's result.
bool butterfly_round::has_everything_from(uint32_t member) const {
  const auto at = std::find(active_.begin(), active_.end(), member);
  if (at == active_.end())
    return false;
  const auto position = static_cast<std::size_t>(at - active_.begin());
  const bool scatter_in = !reducer_ || reducer_->sender_complete(position);
  const bool gather_in = part_received_[position] >= parts_[position].size();
  return scatter_in && gather_in;
}

std::size_t butterfly_round::decoding_from(uint32_t member) const {
  std::size_t n = 0;
  for (const auto& [tag, job] : pending_)
    n += job.attempt == attempt_ && job.member == member &&
             (job.role == chunk_role::scatter_in || job.role == chunk_role::gather_in)
           ? 1
           : 0;
  return n;
}

// Members that are gone: forgotten once we have all of their data, dropped from the round (a
// restart) when some is missing and nothing more of theirs is being decoded.
void butterfly_round::settle_departures() {
  for (uint32_t m = 0; m < setup_.members.size() && departed_ != 0; ++m) {
    if (state_ != status::running)
      return;
    if (!in_set(departed_, m))
      continue;
    const bool harmless =
      has_everything_from(m) && (reducer_ != nullptr || !in_set(departed_unfinished_, m));
    if (!in_set(member_set_, m) || harmless) {
      departed_ &= ~bit(m);
    } else if (decoding_from(m) == 0) {
      departed_ &= ~bit(m);
      shrink_to(member_set_ & ~bit(m), member_name(m) + " is gone");
    }
  }
}

std::vector<round_action> butterfly_round::member_gone(uint32_t member, bool finished) {
  if (member >= setup_.members.size() || member == setup_.me)
    return {};
  gone_ |= bit(member);
  if (!finished)
    departed_unfinished_ |= bit(member);
  digests_expected_ &= ~bit(member);
  if (state_ == status::running && in_set(member_set_, member)) {
    departed_ |= bit(member);
    settle_departures();
  }
  return take();
}

std::vector<round_action> butterfly_round::deadline_passed() {
  fail(round_failure::cause::deadline, "the round did not finish before its deadline");
  return take();
}

std::vector<round_action> butterfly_round::chunk_arrived(allreduce_chunk chunk) {
  if (state_ != status::running)
    return {};
  const auto n = setup_.members.size();
  if (chunk.round_id != setup_.round_id || chunk.sender >= n || chunk.sender == setup_.me) {
    reject(static_cast<uint32_t>(n), "header", "wrong round or sender");
    return take();
  }
  if (!in_set(chunk.member_set, chunk.sender)) {
    reject(chunk.sender, "header", "a member set without its sender");
    return take();
  }
  // A member we dropped has no say in our set any more (a hostile one would otherwise shrink it
  // at will, or cut us off from members that already finished without it).
  if (!in_set(member_set_, chunk.sender))
    return take();
  if (chunk.member_set != member_set_) {
    // Members shrink the set as each notices failures from where it stands. Everyone moves to the
    // intersection of the sets it sees, so members that noticed different failures (a link cut
    // between two of them) agree on one set instead of waiting for each other until the deadline.
    if (!in_set(chunk.member_set, setup_.me)) {
      // Sets only shrink: every set that follows from the sender's lacks this member too.
      fail(round_failure::cause::excluded,
           member_name(chunk.sender) + " continues the round without this member");
      return take();
    }
    const bool subset = (chunk.member_set & ~member_set_) == 0;
    shrink_to(member_set_ & chunk.member_set,
              subset ? "a member noticed a failure" : "members noticed different failures");
    if (state_ != status::running || chunk.member_set != member_set_)
      return take();
  }
  if (!in_set(member_set_, chunk.sender))
    return take();
  const auto sender_position = static_cast<uint32_t>(
    std::find(active_.begin(), active_.end(), chunk.sender) - active_.begin());
  const auto phase = static_cast<allreduce_phase>(chunk.phase);
  const auto part_index = chunk.blob.part_index;
  if (phase == allreduce_phase::scatter) {
    if (part_index != my_position_ || !reducer_) {
      reject(chunk.sender, "wrong_part", "scatter chunk for a part this member does not reduce");
      return take();
    }
  } else if (phase == allreduce_phase::gather) {
    if (part_index >= parts_.size() || active_[part_index] != chunk.sender) {
      reject(chunk.sender, "wrong_part", "result for a part the sender does not reduce");
      return take();
    }
  } else {
    reject(chunk.sender, "header", "unknown phase");
    return take();
  }
  pending_job job;
  job.role = phase == allreduce_phase::scatter ? chunk_role::scatter_in : chunk_role::gather_in;
  job.attempt = attempt_;
  job.member = chunk.sender;
  job.position = phase == allreduce_phase::scatter ? sender_position : part_index;
  job.offset = chunk.blob.offset;
  round_decode action;
  action.tag = next_tag_++;
  action.member = chunk.sender;
  action.job.blob = std::move(chunk.blob);
  action.job.round_id = setup_.round_id;
  action.job.part_index = part_index;
  action.job.part_length = parts_[part_index].size();
  if (phase == allreduce_phase::scatter) {
    if (setup_.check_signatures)
      action.job.signer_id = setup_.members[chunk.sender].peer_id;
    action.job.proof = std::move(chunk.proof);
    action.job.member_set = chunk.member_set;
    action.job.sender = chunk.sender;
    action.job.keep_blob = setup_.keep_evidence;
  }
  pending_.emplace(action.tag, job);
  out_.emplace_back(std::move(action));
  return take();
}

std::vector<round_action> butterfly_round::chunk_coded(uint64_t tag, coded_chunk result) {
  auto it = pending_.find(tag);
  if (it == pending_.end())
    return {};
  const auto job = it->second;
  pending_.erase(it);
  if (state_ != status::running || job.attempt != attempt_)
    return {};
  on_coded(job, result);
  if (state_ == status::running && departed_ != 0)
    settle_departures();
  return take();
}

// Hands decoded values to the reducer, which keeps them as they are (no copy).
accept_status butterfly_round::accept_into_reducer(uint32_t position, uint64_t offset,
                                                   std::vector<float> values, double weight) {
  auto owned = std::make_shared<const std::vector<float>>(std::move(values));
  const std::span<const float> view(*owned);
  return reducer_->accept_shared(position, offset, std::move(owned), view, weight);
}

void butterfly_round::on_coded(const pending_job& job, coded_chunk& coded) {
  const bool ours = job.role == chunk_role::scatter_out || job.role == chunk_role::own_part ||
                    job.role == chunk_role::gather_out;
  if (!coded.error.empty()) {
    if (ours)  // our own values would not encode (non-finite): nothing sensible can be sent
      fail(round_failure::cause::unencodable_values, "could not encode a chunk: " + coded.error);
    else
      reject(job.member, "invalid", coded.error);
    return;
  }
  if (!coded.leftover.empty() && coded.leftover.size() == job.elements &&
      job.piece_begin + job.elements <= residual_.size())
    std::copy(coded.leftover.begin(), coded.leftover.end(),
              residual_.begin() + static_cast<std::ptrdiff_t>(job.piece_begin));
  switch (job.role) {
    case chunk_role::scatter_out:
      float_bytes_ += job.elements * sizeof(float);
      out_.emplace_back(round_send{
        job.member, {setup_.round_id, member_set_, static_cast<uint8_t>(allreduce_phase::scatter),
                     setup_.me, std::move(coded.blob), std::move(coded.proof)}});
      return;
    case chunk_role::own_part:
      accept_into_reducer(my_position_, job.offset, std::move(coded.values),
                          setup_.members[setup_.me].weight);
      if (current_evidence_)
        current_evidence_->inputs.push_back({setup_.round_id, member_set_, setup_.me,
                                             std::move(coded.blob), std::move(coded.proof)});
      reduce_ready_pieces();
      return;
    case chunk_role::gather_out:
      apply_result(my_position_, job.offset, coded.values);
      for (std::size_t k = 0; k < active_.size(); ++k) {
        const auto member = active_[k];
        if (member == setup_.me)
          continue;
        float_bytes_ += coded.values.size() * sizeof(float);
        const bool last = k + 1 == active_.size() || (k + 2 == active_.size() &&
                                                      active_.back() == setup_.me);
        out_.emplace_back(round_send{
          member, {setup_.round_id, member_set_, static_cast<uint8_t>(allreduce_phase::gather),
                   setup_.me, last ? std::move(coded.blob) : coded.blob, {}}});
      }
      finish_if_complete();
      return;
    case chunk_role::scatter_in: {
      if (!reducer_)
        return;
      const auto status = accept_into_reducer(job.position, job.offset, std::move(coded.values),
                                              setup_.members[job.member].weight);
      if (status != accept_status::accepted) {
        reject(job.member, std::string(to_string(status)), std::string(to_string(status)));
        return;
      }
      if (current_evidence_)
        current_evidence_->inputs.push_back({setup_.round_id, member_set_, job.member,
                                             std::move(coded.blob), std::move(coded.proof)});
      reduce_ready_pieces();
      return;
    }
    case chunk_role::gather_in:
      if (!expected_result_piece(job.position, job.offset, coded.values.size())) {
        reject(job.member, "duplicate", "a result piece that was not expected or came twice");
        return;
      }
      apply_result(job.position, job.offset, coded.values);
      finish_if_complete();
      return;
  }
}

std::vector<round_action> butterfly_round::digest_arrived(uint32_t sender, uint64_t member_set,
                                                         uint64_t digest) {
  if (sender >= setup_.members.size() || sender == setup_.me)
    return {};
  if (state_ == status::running) {
    if (in_set(member_set, sender) && !in_set(member_set, setup_.me) &&
        (member_set & ~all_members()) == 0)
      fail(round_failure::cause::excluded,
           member_name(sender) + " finished the round without this member");
    else if (in_set(member_set_, sender) && in_set(member_set, sender) &&
             in_set(member_set, setup_.me) && member_set != member_set_ &&
             (member_set_ & ~member_set) == 0)
      // It finished an attempt we have left for a smaller one: it takes no part in ours (its
      // group may stay a while for auditors, so no departure would tell us).
      return member_gone(sender, true);
    return take();
  }
  if (state_ != status::done || !in_set(digests_expected_, sender))
    return {};
  digests_expected_ &= ~bit(sender);
  out_.emplace_back(round_digest_checked{sender, member_set == member_set_ && digest == digest_,
                                         !in_set(member_set, setup_.me)});
  return take();
}

const std::vector<audit_evidence>& butterfly_round::audit_evidence_of_our_part(
  uint64_t member_set) {
  static const std::vector<audit_evidence> none;
  auto it = evidence_.find(member_set);
  if (it == evidence_.end() || !it->second.complete)
    return none;
  auto& attempt = it->second;
  // Our own values that went into our reducer raw: as the blob they would have been, signed.
  for (const auto& piece : attempt.own_raw) {
    audit_evidence own{setup_.round_id, member_set, setup_.me,
                       make_float32_blob(setup_.round_id, attempt.position,
                                         piece.begin - attempt.part_begin,
                                         std::span<const float>(*setup_.values)
                                           .subspan(piece.begin, piece.size())),
                       {}};
    if (setup_.signer)
      own.proof = sign_chunk(*setup_.signer, setup_.round_id, member_set, setup_.me, own.blob);
    attempt.inputs.push_back(std::move(own));
  }
  attempt.own_raw.clear();
  return attempt.inputs;
}

std::vector<uint32_t> butterfly_round::reducers_of_last_attempt() const {
  std::vector<uint32_t> reducers;
  if (state_ != status::done || active_.size() < 2)
    return reducers;
  for (std::size_t p = 0; p < active_.size(); ++p)
    if (active_[p] != setup_.me && !parts_[p].empty())
      reducers.push_back(active_[p]);
  return reducers;
}

std::optional<audit_plan> butterfly_round::audit_plan_for(uint32_t reducer,
                                                          const std::vector<float>& result) const {
  const auto at = std::find(active_.begin(), active_.end(), reducer);
  if (state_ != status::done || active_.size() < 2 || at == active_.end() ||
      parts_[static_cast<std::size_t>(at - active_.begin())].empty() ||
      result.size() != setup_.values->size())
    return std::nullopt;
  audit_plan plan;
  plan.round_id = setup_.round_id;
  plan.member_set = member_set_;
  plan.reducer = reducer;
  for (std::size_t p = 0; p < active_.size(); ++p) {
    const auto& m = setup_.members[active_[p]];
    plan.senders.push_back(active_[p]);
    plan.sender_ids.push_back(m.peer_id);
    plan.weights.push_back(m.weight);
    if (active_[p] == reducer)
      plan.position = static_cast<uint32_t>(p);
  }
  plan.part = parts_[plan.position];
  plan.pieces = part_pieces_[plan.position];
  plan.policy = setup_.policy;
  plan.aggregation = setup_.aggregation;
  plan.result.assign(result.begin() + static_cast<std::ptrdiff_t>(plan.part.begin),
                     result.begin() + static_cast<std::ptrdiff_t>(plan.part.end));
  return plan;
}

} // namespace ddactor
