// The state download actor; see state_download.hpp for its protocol.
#include "actors/state_download.hpp"

#include <limits>
#include <optional>

#include <spdlog/spdlog.h>

#include "monitoring/ddactor_metrics.hpp"
#include "runtime/actor_ticks.hpp"
#include "runtime/progress_meter.hpp"

namespace ddactor {

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

double megabytes(uint64_t bytes) { return static_cast<double>(bytes) / 1e6; }

class state_download_impl : public state_download_actor::base {
 public:
  state_download_impl(caf::actor_config& config, state_download_options options)
    : state_download_actor::base(config), options_(std::move(options)) {
    if (options_.chunks_in_flight == 0)
      options_.chunks_in_flight = 1;
    stats_.chunks_per_candidate.assign(options_.candidates.size(), 0);
  }

  const char* name() const override { return "state_download"; }

 protected:
  behavior_type make_behavior() override {
    started_ = clock_type::now();
    set_down_handler([this](caf::down_msg& down) {
      if (down.source == requester_) {
        // Whoever asked for the state is gone (a stopped trainer takes none): end now, and let
        // go of its promises (they hold the asker).
        waiting_.clear();
        quit();
        return;
      }
      if (!done_ && source_ && down.source == source_.address())
        fail_source("went down (" + system().render(down.reason) + ")");
    });
    deadline_ = started_ + options_.deadline;
    send(this, tick_atom_v);
    probe_next_candidate();
    return {
      [this](caf::get_atom) -> caf::result<state_download_result> {
        if (!requester_ && current_sender()) {
          requester_ = caf::actor_cast<caf::actor_addr>(current_sender());
          monitor(current_sender());
        }
        auto promise = make_response_promise();
        if (outcome_) {
          promise.deliver(std::move(*outcome_));
          outcome_.reset();
          quit();
        } else {
          waiting_.push_back(promise);
        }
        return promise;
      },
      [this](status_atom) -> caf::result<uint64_t, uint64_t> {
        if (outcome_ && *outcome_) // done, not yet collected
          return {(*outcome_)->manifest.total_bytes, (*outcome_)->manifest.total_bytes};
        if (!assembly_)
          return {uint64_t{0}, uint64_t{0}};
        return {assembly_->bytes_present(), assembly_->manifest().total_bytes};
      },
      [this](tick_atom) {
        // Deadline and progress log, on ticks (runtime/actor_ticks.hpp): a download that ended
        // is not held for the rest of its deadline by a timer.
        if (done_)
          return;
        const auto now = clock_type::now();
        if (progress_armed_ && now >= last_log_time_ + options_.progress_interval)
          log_progress();
        if (now < deadline_) {
          auto next = deadline_;
          if (progress_armed_)
            next = std::min(next, last_log_time_ + options_.progress_interval);
          delayed_send(this, tick_towards(next, now), tick_atom_v);
          return;
        }
        std::string progress = "nothing downloaded";
        if (assembly_)
          progress = std::to_string(assembly_->chunks_present()) + " of " +
                     std::to_string(assembly_->manifest().chunk_count) + " chunks downloaded";
        finish_error(errc::peer_unreachable,
                     "no training state of swarm '" + options_.swarm_id + "' within the deadline of " +
                       std::to_string(options_.deadline.count()) + " ms (" + progress + ")" +
                       failure_list());
      },
    };
  }

 private:
  // --- candidates and sources -----------------------------------------------------------------

  /// Asks the next candidate for its manifest, or gives up when none is left.
  void probe_next_candidate() {
    while (next_candidate_ < options_.candidates.size()) {
      const size_t index = next_candidate_++;
      const auto& candidate = options_.candidates[index];
      if (!candidate) {
        note_failure(index, "no actor handle");
        continue;
      }
      source_index_ = index;
      source_ = candidate;
      ++generation_;
      monitor(source_);
      const uint64_t generation = generation_;
      request(source_, options_.request_timeout, state_atom_v, options_.swarm_id,
              options_.min_epoch)
        .then(
          [this, generation](state_manifest& manifest) {
            if (generation == generation_)
              on_manifest(std::move(manifest));
          },
          [this, generation](caf::error& error) {
            if (generation == generation_)
              fail_source("no manifest: " + system().render(error));
          });
      return;
    }
    finish_error(errc::data_unavailable, "no peer could serve a training state of swarm '" +
                                           options_.swarm_id + "' at epoch >= " +
                                           std::to_string(options_.min_epoch) +
                                           (options_.candidates.empty() ? " (no candidates)"
                                                                        : failure_list()));
  }

  /// The current source (probed or downloading) failed: drop it and go on with the next.
  /// Chunks already held stay, for a resume.
  void fail_source(const std::string& why) {
    note_failure(source_index_, why);
    spdlog::warn("state download: candidate {} failed: {}", source_index_, why);
    leave_source();
    probe_next_candidate();
  }

  void leave_source() {
    if (source_)
      demonitor(source_.address());
    source_ = nullptr;
    ++generation_; // replies still on their way from the old source are ignored
    in_flight_ = 0;
    cursor_ = 0;
  }

  void note_failure(size_t index, const std::string& why) {
    failures_.push_back("candidate " + std::to_string(index) + ": " + why);
  }

  std::string failure_list() const {
    std::string text;
    for (const auto& f : failures_)
      text += (text.empty() ? ": " : "; ") + f;
    return text;
  }

  // --- manifest and chunks --------------------------------------------------------------------

  void on_manifest(state_manifest manifest) {
    if (auto why = validate_state_manifest(manifest, options_.limits))
      return fail_source("invalid manifest: " + *why);
    if (manifest.swarm_id != options_.swarm_id)
      return fail_source("serves swarm '" + manifest.swarm_id + "'");
    if (manifest.epoch < options_.min_epoch)
      return fail_source("serves epoch " + std::to_string(manifest.epoch) + ", older than the " +
                         std::to_string(options_.min_epoch) + " wanted");
    if (options_.refused_digests.contains(manifest.digest))
      return fail_source("serves a state refused before (no quorum vouched for it)");
    if (assembly_ && same_state_layout(assembly_->manifest(), manifest)) {
      if (assembly_->chunks_present() > 0) {
        ++stats_.resumes;
        metrics_.resumes.inc();
        spdlog::info("state download: resuming from candidate {} with {} of {} chunks held",
                     source_index_, assembly_->chunks_present(), manifest.chunk_count);
      }
    } else {
      if (assembly_ && assembly_->chunks_present() > 0) {
        ++stats_.restarts;
        stats_.chunks_discarded += assembly_->chunks_present();
        spdlog::info("state download: candidate {} serves another state (epoch {}); starting over",
                     source_index_, manifest.epoch);
      }
      assembly_.reset(); // free the old buffer before allocating the new one
      try {
        assembly_.emplace(manifest);
      } catch (const std::exception& e) {
        return finish_error(errc::data_unavailable,
                            "cannot hold a state of " + std::to_string(manifest.total_bytes) +
                              " bytes: " + e.what());
      }
    }
    if (!progress_armed_) {
      progress_armed_ = true;
      last_log_time_ = clock_type::now();
      last_log_bytes_ = bytes_fetched_;
    }
    if (assembly_->complete())
      return on_complete();
    request_chunks();
  }

  /// Keeps options.chunks_in_flight requests outstanding while chunks are missing. Chunks below
  /// cursor_ are held or in flight: the cursor goes back to 0 only when the source changes.
  void request_chunks() {
    while (in_flight_ < options_.chunks_in_flight) {
      auto next = assembly_->next_missing(cursor_);
      if (!next)
        return;
      cursor_ = *next + 1;
      ++in_flight_;
      const uint64_t index = *next;
      const uint64_t generation = generation_;
      request(source_, options_.request_timeout, state_atom_v, assembly_->manifest().digest,
              index)
        .then(
          [this, generation, index](state_chunk& chunk) {
            if (generation == generation_)
              on_chunk(index, chunk);
          },
          [this, generation, index](caf::error& error) {
            if (generation == generation_)
              fail_source("chunk " + std::to_string(index) + ": " + system().render(error));
          });
    }
  }

  void on_chunk(uint64_t index, const state_chunk& chunk) {
    --in_flight_;
    if (auto why = validate_state_chunk(chunk, assembly_->manifest(), index)) {
      ++stats_.chunks_rejected;
      metrics_.rejected_chunks.inc();
      return fail_source("rejected a chunk: " + *why);
    }
    if (assembly_->accept(chunk)) {
      ++stats_.chunks_fetched;
      ++stats_.chunks_per_candidate[source_index_];
      bytes_fetched_ += chunk.bytes.size();
      metrics_.download_bytes.inc(chunk.bytes.size());
    }
    if (assembly_->complete())
      return on_complete();
    request_chunks();
  }

  void on_complete() {
    if (!assembly_->digest_matches()) {
      // Every chunk passed its checksum, yet the whole is wrong: some source checksummed wrong
      // bytes. Which chunks are bad cannot be told, so none is kept.
      stats_.chunks_discarded += assembly_->chunks_present();
      assembly_.reset();
      return fail_source("the assembled state does not match its digest");
    }
    state_download_result result = stats_;
    result.manifest = assembly_->manifest();
    result.bytes = assembly_->release();
    spdlog::info("state download: got epoch {} of swarm '{}' ({:.1f} MB) in {:.2f} s, "
                 "{} resumes, {} restarts, {} chunks rejected",
                 result.manifest.epoch, result.manifest.swarm_id,
                 megabytes(result.manifest.total_bytes), seconds_since(started_), result.resumes,
                 result.restarts, result.chunks_rejected);
    metrics_.downloads_ok.inc();
    settle(std::move(result));
  }

  // --- outcome --------------------------------------------------------------------------------

  void finish_error(errc code, std::string text) {
    spdlog::warn("state download failed: {}", text);
    metrics_.downloads_failed.inc();
    settle(make_error(code, std::move(text)));
  }

  void settle(caf::expected<state_download_result> outcome) {
    done_ = true;
    leave_source();
    assembly_.reset();
    metrics_.download_seconds.observe(seconds_since(started_));
    outcome_ = std::move(outcome);
    if (waiting_.empty())
      return; // kept until asked
    for (auto& promise : waiting_)
      promise.deliver(*outcome_);
    waiting_.clear();
    outcome_.reset();
    quit();
  }

  void log_progress() {
    if (done_ || !assembly_)
      return;
    const auto now = clock_type::now();
    const double window = std::chrono::duration<double>(now - last_log_time_).count();
    const double rate = window > 0 ? megabytes(bytes_fetched_ - last_log_bytes_) / window : 0.0;
    const auto& m = assembly_->manifest();
    const uint64_t present = assembly_->bytes_present();
    const double left_mb = megabytes(m.total_bytes > present ? m.total_bytes - present : 0);
    spdlog::info(
        "state download: {:.0f}% of {:.1f} MB (epoch {}) from candidate {}, {:.1f} MB/s, ETA {}",
        m.total_bytes == 0
            ? 100.0
            : 100.0 * static_cast<double>(present) / static_cast<double>(m.total_bytes),
        megabytes(m.total_bytes), m.epoch, source_index_, rate,
        format_duration(rate > 0 ? left_mb / rate : std::numeric_limits<double>::infinity()));
    last_log_time_ = now;
    last_log_bytes_ = bytes_fetched_;
  }

  state_download_options options_;
  caf::actor_addr requester_;  // the first to ask for the outcome (its trainer)
  state_transfer_metrics metrics_{global_metrics()};
  clock_type::time_point started_;
  clock_type::time_point deadline_;

  size_t next_candidate_ = 0;
  size_t source_index_ = 0;
  state_server_remote source_;
  /// Bumped whenever the source changes or the download ends; a reply carries the generation of
  /// its request, and only replies of the current one are looked at.
  uint64_t generation_ = 0;
  std::vector<std::string> failures_;

  std::optional<state_assembly> assembly_;
  uint32_t in_flight_ = 0;
  uint64_t cursor_ = 0;
  state_download_result stats_;
  uint64_t bytes_fetched_ = 0;

  bool progress_armed_ = false;
  clock_type::time_point last_log_time_;
  uint64_t last_log_bytes_ = 0;

  bool done_ = false;
  std::optional<caf::expected<state_download_result>> outcome_;
  std::vector<caf::response_promise> waiting_;
};

} // namespace

state_download_actor spawn_state_download(caf::actor_system& system,
                                          state_download_options options) {
  return system.spawn<state_download_impl, caf::detached>(std::move(options));
}

caf::expected<state_download_result> download_state(caf::actor_system& system,
                                                    state_download_options options) {
  const auto limit = options.deadline + std::chrono::seconds(1);
  auto download = spawn_state_download(system, std::move(options));
  caf::scoped_actor self{system};
  std::optional<caf::expected<state_download_result>> outcome;
  self->request(download, limit, caf::get_atom_v)
    .receive([&](state_download_result& result) { outcome.emplace(std::move(result)); },
             [&](caf::error& error) { outcome.emplace(std::move(error)); });
  if (!*outcome)
    self->send_exit(download, caf::exit_reason::user_shutdown); // gone already unless we timed out
  return std::move(*outcome);
}

} // namespace ddactor
