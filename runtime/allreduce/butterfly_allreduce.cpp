// The butterfly round as a simulation: one butterfly_round per peer, their messages, coding jobs
// and crash notices in one queue, delivered in order or shuffled by a seed.
#include "runtime/allreduce/butterfly_allreduce.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <variant>

#include "runtime/allreduce/bandwidth_shares.hpp"
#include "runtime/allreduce/butterfly_round.hpp"

namespace ddactor {

namespace {

constexpr std::size_t max_group = 64;

void check_arguments(const std::vector<std::vector<float>>& inputs,
                     const std::vector<double>& weights, const allreduce_options& options,
                     const failure_plan& failures) {
  const std::size_t n = inputs.size();
  if (n == 0 || n > max_group)
    throw allreduce_error("simulate_butterfly_allreduce: a group has 1 to 64 peers, not " +
                          std::to_string(n));
  if (weights.size() != n)
    throw allreduce_error("simulate_butterfly_allreduce: " + std::to_string(weights.size()) +
                          " weights for " + std::to_string(n) + " peers");
  for (std::size_t j = 0; j < n; ++j) {
    if (inputs[j].size() != inputs[0].size())
      throw allreduce_error("simulate_butterfly_allreduce: peer " + std::to_string(j) + " has " +
                            std::to_string(inputs[j].size()) + " elements, peer 0 has " +
                            std::to_string(inputs[0].size()));
    if (!std::isfinite(weights[j]) || !(weights[j] > 0.0))
      throw allreduce_error("simulate_butterfly_allreduce: weight of peer " + std::to_string(j) +
                            " is " + std::to_string(weights[j]) + "; it must be finite and > 0 "
                            "(a peer with nothing to contribute does not join as a sender)");
  }
  if (!options.part_shares.empty() && options.part_shares.size() != n)
    throw allreduce_error("simulate_butterfly_allreduce: " +
                          std::to_string(options.part_shares.size()) + " part shares for " +
                          std::to_string(n) + " peers");
  if (options.chunk_elements == 0)
    throw allreduce_error("simulate_butterfly_allreduce: chunk_elements must be at least 1");
  auto check_peer = [n](std::size_t peer, const char* role) {
    if (peer >= n)
      throw allreduce_error(std::string("simulate_butterfly_allreduce: failure plan names ") +
                            role + " " + std::to_string(peer) + " in a group of " +
                            std::to_string(n));
  };
  for (auto p : failures.crashes_at_start)
    check_peer(p, "peer");
  for (const auto& c : failures.crashes_while_sending) {
    check_peer(c.sender, "sender");
    check_peer(c.reducer, "reducer");
  }
  for (const auto& c : failures.corrupted) {
    check_peer(c.sender, "sender");
    check_peer(c.reducer, "reducer");
  }
  for (std::size_t r : failures.dead_reducers)
    check_peer(r, "dead reducer");
  for (const auto& [a, b] : failures.cut_links) {
    check_peer(a, "cut link end");
    check_peer(b, "cut link end");
  }
}

// What travels through the queue to peer `to`.
struct chunk_delivery {
  allreduce_chunk chunk;
};
struct digest_delivery {
  uint32_t sender = 0;
  uint64_t member_set = 0;
  uint64_t digest = 0;
};
struct coding_done {
  uint64_t tag = 0;
  coded_chunk result;
};
struct crash_notice {
  uint32_t member = 0;
};
struct event {
  std::size_t to = 0;
  std::variant<chunk_delivery, digest_delivery, coding_done, crash_notice> what;
};

class round_simulation {
public:
  round_simulation(const std::vector<std::vector<float>>& inputs,
                   const std::vector<double>& weights, const allreduce_options& options,
                   const failure_plan& failures)
      : inputs_(inputs), failures_(failures), rng_(options.delivery_seed),
        shuffle_(options.delivery_seed != 0), n_(inputs.size()) {
    const auto shares =
      options.part_shares.empty() ? std::vector<uint64_t>(n_, 1) : options.part_shares;
    std::vector<round_member> members(n_);
    for (std::size_t j = 0; j < n_; ++j)
      members[j] = {weights[j], shares[j], {}, {}};
    result_.partition = partition_by_shares(inputs[0].size(), shares);
    result_.members.resize(n_);
    sent_to_.assign(n_, std::vector<std::size_t>(n_, 0));
    for (std::size_t j = 0; j < n_; ++j) {
      round_setup setup;
      setup.round_id = options.round_id;
      setup.members = members;
      setup.me = static_cast<uint32_t>(j);
      setup.values = std::make_shared<const std::vector<float>>(inputs[j]);
      setup.chunk_elements = options.chunk_elements;
      setup.policy = options.policy;
      setup.max_weight_ratio = options.max_weight_ratio;
      rounds_.push_back(std::make_unique<butterfly_round>(std::move(setup)));
    }
  }

  allreduce_result run() {
    for (auto p : failures_.crashes_at_start)
      crash(p);
    // Each end of a cut link sees the other as gone (its monitor fires), the others see nothing.
    for (const auto& [a, b] : failures_.cut_links) {
      queue_.push_back({a, crash_notice{static_cast<uint32_t>(b)}});
      queue_.push_back({b, crash_notice{static_cast<uint32_t>(a)}});
    }
    for (std::size_t j = 0; j < n_; ++j)
      if (!result_.members[j].crashed)
        act(j, rounds_[j]->start());
    while (!queue_.empty()) {
      auto next = take_next();
      if (result_.members[next.to].crashed)
        continue;
      auto& round = *rounds_[next.to];
      if (auto* chunk = std::get_if<chunk_delivery>(&next.what)) {
        act(next.to, round.chunk_arrived(std::move(chunk->chunk)));
      } else if (auto* coded = std::get_if<coding_done>(&next.what)) {
        act(next.to, round.chunk_coded(coded->tag, std::move(coded->result)));
      } else if (auto* gone = std::get_if<crash_notice>(&next.what)) {
        act(next.to, round.member_gone(gone->member));
      } else if (auto* digest = std::get_if<digest_delivery>(&next.what)) {
        act(next.to, round.digest_arrived(digest->sender, digest->member_set, digest->digest));
      }
    }
    // Nothing more can arrive: whoever is still running reaches its deadline.
    for (std::size_t j = 0; j < n_; ++j) {
      auto& member = result_.members[j];
      if (!member.crashed && rounds_[j]->state() == butterfly_round::status::running)
        act(j, rounds_[j]->deadline_passed());
      member.restarts = rounds_[j]->restarts();
      member.member_set = rounds_[j]->member_set();
    }
    return std::move(result_);
  }

private:
  event take_next() {
    std::size_t at = 0;
    if (shuffle_)
      at = std::uniform_int_distribution<std::size_t>(0, queue_.size() - 1)(rng_);
    event next = std::move(queue_[at]);
    queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(at));
    return next;
  }

  void crash(std::size_t peer) {
    auto& member = result_.members[peer];
    if (member.crashed)
      return;
    member.crashed = true;
    member.output.reset();
    for (std::size_t j = 0; j < n_; ++j)
      if (j != peer)
        queue_.push_back({j, crash_notice{static_cast<uint32_t>(peer)}});
  }

  bool crashes_now(std::size_t sender, std::size_t reducer, std::size_t sent) const {
    return std::any_of(
      failures_.crashes_while_sending.begin(), failures_.crashes_while_sending.end(),
      [&](const auto& c) { return c.sender == sender && c.reducer == reducer && c.chunks == sent; });
  }

  bool corrupted(std::size_t sender, std::size_t reducer, std::size_t index) const {
    return std::any_of(failures_.corrupted.begin(), failures_.corrupted.end(), [&](const auto& c) {
      return c.sender == sender && c.reducer == reducer && c.chunk == index;
    });
  }

  bool link_cut(std::size_t a, std::size_t b) const {
    return std::any_of(failures_.cut_links.begin(), failures_.cut_links.end(), [&](const auto& c) {
      return (c.first == a && c.second == b) || (c.first == b && c.second == a);
    });
  }

  bool dies_as_reducer(std::size_t peer) const {
    return std::find(failures_.dead_reducers.begin(), failures_.dead_reducers.end(), peer) !=
           failures_.dead_reducers.end();
  }

  // Carries out peer `from`'s actions, until it crashes.
  void act(std::size_t from, std::vector<round_action> actions) {
    auto& me = result_.members[from];
    for (auto& action : actions) {
      if (me.crashed)
        return;
      if (auto* encode = std::get_if<round_encode>(&action)) {
        if (encode->role == chunk_role::gather_out && dies_as_reducer(from)) {
          crash(from);
          return;
        }
        queue_.push_back({from, coding_done{encode->tag, run_chunk_job(std::move(encode->job))}});
      } else if (auto* decode = std::get_if<round_decode>(&action)) {
        queue_.push_back({from, coding_done{decode->tag, run_chunk_job(decode->job)}});
      } else if (auto* send = std::get_if<round_send>(&action)) {
        send_chunk(from, *send);
      } else if (std::holds_alternative<round_reject>(action)) {
        ++me.rejected_chunks;
      } else if (auto* done = std::get_if<round_done>(&action)) {
        me.output = *done->values;
        me.result = done->group_size > 1 ? round_result::averaged : round_result::alone;
        me.residual = std::move(done->residual);
        for (uint32_t m = 0; m < n_; ++m)
          if (m != from && (((done->member_set | done->left_out) >> m) & 1u) &&
              !link_cut(from, m))
            queue_.push_back(
              {m, digest_delivery{static_cast<uint32_t>(from), done->member_set, done->digest}});
      } else if (auto* checked = std::get_if<round_digest_checked>(&action)) {
        me.digest_mismatches += checked->matches ? 0 : 1;
      } else if (auto* failure = std::get_if<round_failure>(&action)) {
        me.output = inputs_[from];
        me.result = failure->why == round_failure::cause::excluded ? round_result::missed
                                                                    : round_result::failed;
      }
    }
  }

  void send_chunk(std::size_t from, round_send& send) {
    const bool scatter = send.chunk.phase == static_cast<uint8_t>(allreduce_phase::scatter);
    if (scatter) {
      auto& sent = sent_to_[from][send.to];
      if (crashes_now(from, send.to, sent)) {
        crash(from);
        return;
      }
      if (corrupted(from, send.to, sent) && !send.chunk.blob.bytes.empty())
        send.chunk.blob.bytes[0] ^= 0x01;
      ++sent;
    }
    if (link_cut(from, send.to))
      return;
    const auto bytes = send.chunk.blob.bytes.size();
    auto& sender = result_.members[from].traffic;
    auto& receiver = result_.members[send.to].traffic;
    sender.bytes_sent += bytes;
    sender.messages_sent += 1;
    receiver.bytes_received += bytes;
    receiver.messages_received += 1;
    queue_.push_back({send.to, chunk_delivery{std::move(send.chunk)}});
  }

  const std::vector<std::vector<float>>& inputs_;
  const failure_plan& failures_;
  std::mt19937_64 rng_;
  bool shuffle_;
  std::size_t n_;
  std::vector<std::unique_ptr<butterfly_round>> rounds_;
  std::deque<event> queue_;
  std::vector<std::vector<std::size_t>> sent_to_;  // scatter chunks sent, by sender and receiver
  allreduce_result result_;
};

} // namespace

allreduce_result simulate_butterfly_allreduce(std::vector<std::vector<float>> inputs,
                                              std::vector<double> weights,
                                              const allreduce_options& options,
                                              const failure_plan& failures) {
  check_arguments(inputs, weights, options, failures);
  return round_simulation(inputs, weights, options, failures).run();
}

} // namespace ddactor
