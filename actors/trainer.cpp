// The trainer actor; see trainer.hpp for its lifecycle.
#include "actors/trainer.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>

#include "models/checkpoint.hpp"
#include "models/diffusion_trainer.hpp"
#include "models/image_generation.hpp"
#include "models/model_config.hpp"
#include "monitoring/ddactor_metrics.hpp"
#include "runtime/checkpoint_files.hpp"
#include "runtime/image_io.hpp"

namespace ddactor {

namespace {

using clock_type = std::chrono::steady_clock;

struct trainer_state {
  trainer_options options;
  std::unique_ptr<diffusion_trainer> model;
  data_loader_actor loader;
  uint64_t loader_generation = 0;
  training_progress progress;
  bool finishing = false;
  clock_type::time_point started = clock_type::now();
  int64_t first_step = 0;
  // Progress window between two log lines.
  clock_type::time_point window_start = clock_type::now();
  int64_t window_samples = 0;
  int64_t window_steps = 0;
  double window_loss = 0;
  training_metrics metrics{global_metrics()};
  static inline const char* name = "trainer";
};

using trainer_pointer = trainer_actor::stateful_pointer<trainer_state>;

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0)
    return "?";
  auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600)
    return fmt::format("{}h{:02}m", s / 3600, (s / 60) % 60);
  if (s >= 60)
    return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

// Restores the newest checkpoint that loads; corrupt ones are skipped with a warning.
void restore_latest(trainer_state& st) {
  auto files = list_checkpoints(st.options.config.run_dir());
  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    try {
      auto content = read_safetensors_file(it->path);
      st.progress = restore_training_state(content, *st.model);
      spdlog::info("resumed from {} (step {}, data epoch {}, position {})", it->path.string(),
                   st.progress.step, st.progress.data_epoch, st.progress.data_position);
      return;
    } catch (const std::exception& e) {
      spdlog::warn("skipping checkpoint {}: {}", it->path.string(), e.what());
    }
  }
}

void write_sample_grid(trainer_state& st) {
  const auto& cfg = st.options.config;
  auto model = st.model->ema_model();
  generation_settings gen;
  gen.steps = cfg.sample.steps;
  gen.sampler = parse_sampler(cfg.sample.sampler);
  gen.cfg_scale = cfg.sample.cfg_scale;
  gen.seed = cfg.sample.seed;
  dit_condition cond;
  int64_t rows = 8;
  int64_t columns = cfg.sample.per_class;
  if (cfg.model.conditioning == "class") {
    rows = cfg.model.num_classes;
    cond = class_rows(rows, columns);
  } else if (cfg.model.conditioning == "caption") {
    auto prompts = st.options.grid_prompts;
    if (prompts.empty())
      prompts.push_back("");
    rows = static_cast<int64_t>(prompts.size());
    cond = prompt_rows(prompts, columns, cfg.model.text_max_bytes);
  }
  auto images = generate_images(model, cond, gen, rows * columns).contiguous();
  auto dir = cfg.run_dir() / "samples";
  std::filesystem::create_directories(dir);
  auto path = dir / fmt::format("step_{:08}.png", st.progress.step);
  write_image_grid_png(path,
                       std::span<const float>(images.data_ptr<float>(),
                                              static_cast<size_t>(images.numel())),
                       static_cast<int>(images.size(0)), static_cast<int>(images.size(1)),
                       static_cast<int>(images.size(2)), static_cast<int>(images.size(3)),
                       static_cast<int>(columns));
  std::filesystem::copy_file(path, dir / "latest.png",
                             std::filesystem::copy_options::overwrite_existing);
  spdlog::info("sample grid written to {}", path.string());
}

bool reached_limit(const trainer_state& st) {
  const auto& t = st.options.config.train;
  if (t.steps > 0 && st.progress.step >= t.steps)
    return true;
  if (t.max_seconds > 0 &&
      std::chrono::duration<double>(clock_type::now() - st.started).count() >= t.max_seconds)
    return true;
  return false;
}

void log_progress(trainer_state& st, const step_result& r) {
  auto now = clock_type::now();
  double elapsed = std::chrono::duration<double>(now - st.window_start).count();
  double samples_per_second = elapsed > 0 ? st.window_samples / elapsed : 0;
  double seconds_per_step = st.window_steps > 0 ? elapsed / st.window_steps : 0;
  const auto& t = st.options.config.train;
  double eta = std::numeric_limits<double>::infinity();
  if (t.steps > 0)
    eta = static_cast<double>(t.steps - st.progress.step) * seconds_per_step;
  if (t.max_seconds > 0)
    eta = std::min(eta, t.max_seconds -
                          std::chrono::duration<double>(now - st.started).count());
  auto target = t.steps > 0 ? std::to_string(t.steps) : std::string("inf");
  spdlog::info("step {}/{} | loss {:.4f} | {:.1f} samples/s | lr {:.2e} | epoch {} | ETA {}",
               st.progress.step, target, st.window_loss / std::max<int64_t>(st.window_steps, 1),
               samples_per_second, r.lr, st.progress.data_epoch, format_duration(eta));
  st.metrics.samples_per_second.set(samples_per_second);
  st.window_start = now;
  st.window_samples = 0;
  st.window_steps = 0;
  st.window_loss = 0;
}

// Snapshot now, write on the checkpointer's thread; `then` runs after the file is on disk.
template <class OnSaved>
void save_checkpoint(trainer_pointer self, OnSaved on_saved) {
  auto& st = self->state;
  checkpoint_snapshot snapshot{snapshot_training_state(*st.model, st.progress), st.progress.step};
  self->request(st.options.checkpointer, std::chrono::minutes(5), save_atom_v, snapshot)
    .then(
      [=](const std::string& path) mutable {
        spdlog::info("checkpoint written: {}", path);
        on_saved(true);
      },
      [=](const caf::error& err) mutable {
        spdlog::error("checkpoint failed: {}", self->system().render(err));
        on_saved(false);
      });
}

void finish(trainer_pointer self, const char* why) {
  auto& st = self->state;
  if (st.finishing)
    return;
  st.finishing = true;
  spdlog::info("training {} at step {}; writing the final checkpoint", why, st.progress.step);
  try {
    write_sample_grid(st);
  } catch (const std::exception& e) {
    spdlog::warn("final sample grid not written: {}", e.what());
  }
  save_checkpoint(self, [=](bool) { self->quit(); });
}

void on_batch(trainer_pointer self, const training_batch& batch) {
  auto& st = self->state;
  const auto& cfg = st.options.config;
  if (st.options.inject_crash && cfg.debug.crash_trainer_at_step > 0 &&
      st.progress.step + 1 == cfg.debug.crash_trainer_at_step)
    throw std::runtime_error("injected trainer crash (debug.crash_trainer_at_step)");
  auto step_started = clock_type::now();
  auto result = st.model->train_step(batch);
  if (!std::isfinite(result.loss))
    throw std::runtime_error("loss is not finite at step " + std::to_string(result.step));
  st.metrics.step_seconds.observe(
    std::chrono::duration<double>(clock_type::now() - step_started).count());
  st.metrics.steps.inc();
  st.metrics.samples.inc(result.samples);
  st.metrics.step.set(static_cast<double>(result.step));
  st.metrics.loss.set(result.loss);
  st.metrics.learning_rate.set(result.lr);
  st.progress.step = result.step;
  st.progress.data_epoch = batch.epoch_after;
  st.progress.data_position = batch.position_after;
  st.window_samples += result.samples;
  st.window_steps += 1;
  st.window_loss += result.loss;
  self->send(st.loader, credit_atom_v, int32_t{1});
  if (st.progress.step % cfg.train.log_every == 0)
    log_progress(st, result);
  if (reached_limit(st)) {
    finish(self, "finished");
    return;
  }
  if (st.progress.step % cfg.train.checkpoint_every == 0)
    save_checkpoint(self, [](bool) {});
  if (cfg.train.sample_every > 0 && st.progress.step % cfg.train.sample_every == 0)
    write_sample_grid(st);
}

trainer_actor::behavior_type trainer(trainer_pointer self, trainer_options options) {
  auto& st = self->state;
  st.options = std::move(options);
  st.model = std::make_unique<diffusion_trainer>(make_dit_options(st.options.config),
                                                 make_trainer_settings(st.options.config));
  restore_latest(st);
  st.first_step = st.progress.step;
  st.metrics.step.set(static_cast<double>(st.progress.step));
  spdlog::info("trainer ready: {} parameters, starting at step {}",
               count_parameters(*st.model->model()), st.progress.step);
  if (reached_limit(st)) {
    spdlog::info("step limit {} already reached; nothing to train",
                 st.options.config.train.steps);
    self->quit();
  }
  return {
    [=](const batch_message& msg) {
      auto& st = self->state;
      if (st.finishing || msg.batch->loader_generation != st.loader_generation)
        return;  // a stale batch from a replaced loader, or we are done
      try {
        on_batch(self, *msg.batch);
      } catch (const std::exception& e) {
        spdlog::error("trainer failed at step {}: {}", st.progress.step + 1, e.what());
        st.metrics.failures.inc();
        self->quit(make_error(errc::training_failed, e.what()));
      }
    },
    [=](attach_atom, data_loader_actor loader, uint64_t generation) {
      auto& st = self->state;
      st.loader = std::move(loader);
      st.loader_generation = generation;
      self->send(st.loader, fetch_atom_v, caf::actor_cast<batch_sink_actor>(self),
                 st.progress.data_epoch, st.progress.data_position,
                 static_cast<int32_t>(st.options.config.data.prefetch));
      st.window_start = clock_type::now();
    },
    [=](attach_atom, checkpointer_actor checkpointer) {
      self->state.options.checkpointer = std::move(checkpointer);
    },
    [=](stop_atom) -> caf::result<int64_t> {
      auto& st = self->state;
      auto promise = self->make_response_promise<int64_t>();
      if (st.finishing) {
        promise.deliver(st.progress.step);
        return promise;
      }
      st.finishing = true;
      spdlog::info("stopping at step {}; writing a checkpoint", st.progress.step);
      save_checkpoint(self, [=](bool) mutable {
        promise.deliver(self->state.progress.step);
        self->quit();
      });
      return promise;
    },
  };
}

} // namespace

trainer_actor spawn_trainer(caf::actor_system& system, trainer_options options) {
  return system.spawn<caf::detached>(trainer, std::move(options));
}

} // namespace ddactor
