// The DDM generator (router actor); see generator.hpp.
#include "actors/generator.hpp"

#include <spdlog/spdlog.h>

#include <ATen/CPUGeneratorImpl.h>

#include <nlohmann/json.hpp>

#include <deque>

#include "actors/local_control.hpp"
#include "models/device_transfer.hpp"
#include "models/ensemble.hpp"
#include "models/image_generation.hpp"
#include "models/tensor_wire.hpp"
#include "runtime/image_io.hpp"

namespace ddactor {

namespace {

// A request being sampled; see work().
struct generation_job {
  std::optional<flow_integration> integration;
  velocity_field field;
  std::shared_ptr<std::set<int64_t>> unavailable;
  int64_t columns = 1;
  std::vector<std::string> row_labels;
  caf::response_promise promise;
  caf::actor_addr requester;
};

struct generator_state {
  generator_options options;
  std::vector<bool> last_available;
  int64_t served = 0;
  std::deque<generation_job> jobs;
  bool work_pending = false;
  static inline const char* name = "generator";
};

using generator_pointer = generator_actor::stateful_pointer<generator_state>;

// What /healthz and `status` show, kept where they can read it without waiting for this actor.
void publish_status(generator_pointer self) {
  const auto& st = self->state;
  nlohmann::json experts = nlohmann::json::array();
  for (size_t k = 0; k < st.options.experts.size(); ++k)
    experts.push_back({{"expert", k},
                       {"where", st.options.experts[k].local ? "local"
                                                              : st.options.experts[k].address},
                       {"available", static_cast<bool>(st.last_available[k])}});
  st.options.status->set(nlohmann::json{{"experts", experts},
                                        {"served", st.served},
                                        {"in_progress", st.jobs.size()},
                                        {"max_queue", st.options.max_queue}}
                           .dump());
}

// One work message at a time, behind whatever else arrived (new requests, cancellations).
void schedule_work(generator_pointer self) {
  auto& st = self->state;
  if (st.work_pending || st.jobs.empty())
    return;
  st.work_pending = true;
  self->send(self, work_atom_v);
}

// An expert on another peer: one blocking request per sampling step (this actor is detached).
expert_function remote_expert(caf::actor_system& system, expert_remote handle, int64_t index,
                              std::chrono::milliseconds timeout, double cfg_scale,
                              int64_t token_length) {
  return [&system, handle, index, timeout, cfg_scale, token_length](
           const torch::Tensor& x, const torch::Tensor& t, const dit_condition& cond) {
    velocity_request req;
    req.x = tensor_to_blob(x);
    req.t = tensor_to_blob(t);
    if (cond.labels.defined()) {
      auto labels = on_host(cond.labels);
      req.labels.assign(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + labels.numel());
    }
    if (cond.tokens.defined()) {
      auto tokens = on_host(cond.tokens);
      req.tokens.assign(tokens.data_ptr<int64_t>(), tokens.data_ptr<int64_t>() + tokens.numel());
      req.token_length = token_length;
    }
    req.cfg_scale = cfg_scale;
    torch::Tensor out;
    std::string failure;
    caf::scoped_actor self{system};
    self->request(handle, timeout, velocity_atom_v, req)
      .receive(
        [&](const tensor_blob& blob) {
          try {
            out = blob_to_tensor(blob, x.sizes().vec()).to(x.device());
          } catch (const std::exception& e) {
            failure = std::string("invalid answer: ") + e.what();
          }
        },
        [&](const caf::error& err) { failure = system.render(err); });
    if (!out.defined())
      throw expert_unavailable(index, failure);
    return out;
  };
}

// The condition of every image a request asks for, its grid's shape and its row labels.
dit_condition condition_for(const generate_request& r, const generator_options& o, int64_t& rows,
                            generation_job& job) {
  const dit_options& shape = o.shape;
  job.columns = r.count;
  rows = 1;
  const auto class_label = [&](int64_t c) {
    return c < static_cast<int64_t>(o.class_names.size()) ? o.class_names[static_cast<size_t>(c)]
                                                          : "class " + std::to_string(c);
  };
  if (shape.conditioning == "class") {
    if (r.class_index >= 0) {
      dit_condition cond;
      cond.labels = torch::full({r.count}, r.class_index, torch::kInt64);
      job.row_labels = {class_label(r.class_index)};
      return cond;
    }
    rows = shape.num_classes;
    for (int64_t c = 0; c < rows; ++c) job.row_labels.push_back(class_label(c));
    return class_rows(rows, job.columns);
  }
  if (shape.conditioning == "caption") {
    job.row_labels = {r.prompt.empty() ? "(no prompt)" : r.prompt};
    return prompt_rows({r.prompt}, r.count, shape.caption.max_bytes);
  }
  return {};
}

// Everything from the job's images to its answer: the PNG grid, or the error.
void finish_job(generator_pointer self, generation_job& job) {
  auto& st = self->state;
  const auto& o = st.options;
  auto images = on_host(job.integration->current().clamp(-1, 1));
  for (size_t k = 0; k < st.last_available.size(); ++k)
    st.last_available[k] = job.unavailable->count(static_cast<int64_t>(k)) == 0;
  for (auto k : *job.unavailable)
    spdlog::warn("expert {} ({}) was unavailable; its samples went to the next-best expert", k,
                 o.experts[static_cast<size_t>(k)].address);
  const auto n = images.size(0);
  auto png = encode_image_grid_png(
    std::span<const float>(images.data_ptr<float>(), static_cast<size_t>(images.numel())),
    static_cast<int>(n), static_cast<int>(o.shape.in_channels),
    static_cast<int>(o.shape.image_size), static_cast<int>(o.shape.image_size),
    static_cast<int>(job.columns), 2, job.row_labels);
  ++st.served;
  job.promise.deliver(std::vector<char>(png.begin(), png.end()));
}

// One sampling step of the job at the front, which then goes to the back: jobs interleave step
// by step, so a small request is not stuck behind a large one, and a request whose client left
// stops between two steps.
void work(generator_pointer self) {
  auto& st = self->state;
  st.work_pending = false;
  if (st.jobs.empty())
    return;
  auto job = std::move(st.jobs.front());
  st.jobs.pop_front();
  bool finished = false;
  try {
    job.integration->step(job.field);
    if (job.integration->done()) {
      finish_job(self, job);
      finished = true;
    }
  } catch (const expert_unavailable& e) {
    st.last_available[static_cast<size_t>(e.expert)] = false;
    spdlog::warn("generation failed: {}", e.what());
    job.promise.deliver(make_error(errc::peer_unreachable, e.what()));
    finished = true;
  } catch (const std::exception& e) {
    spdlog::warn("generation failed: {}", e.what());
    job.promise.deliver(make_error(errc::training_failed, e.what()));
    finished = true;
  }
  if (!finished)
    st.jobs.push_back(std::move(job));
  else if (job.requester)
    self->demonitor(job.requester);
  publish_status(self);
  schedule_work(self);
}

caf::result<std::vector<char>> generate(generator_pointer self, const generate_request& r) {
  auto& st = self->state;
  const auto& o = st.options;
  if (auto problem = validate_generate_request(r, o.shape, o.max_count))
    return make_error(errc::invalid_message, *problem);
  if (st.jobs.size() >= o.max_queue)
    return make_error(errc::overloaded, std::to_string(st.jobs.size()) +
                                          " requests are being served already (serve.max_queue)");
  std::vector<expert_function> experts;
  for (size_t k = 0; k < o.experts.size(); ++k) {
    const auto& e = o.experts[k];
    experts.push_back(e.local ? local_expert(e.local, r.cfg_scale)
                              : remote_expert(self->system(), e.remote, static_cast<int64_t>(k),
                                              o.expert_timeout, r.cfg_scale,
                                              o.shape.caption.max_bytes));
  }
  ensemble_options ensemble;
  ensemble.strategy = parse_routing(r.strategy);
  ensemble.top_k = r.top_k;
  ensemble.fall_back = o.fall_back;
  generation_job job;
  int64_t rows = 1;
  auto cond = condition_for(r, o, rows, job);
  job.unavailable = std::make_shared<std::set<int64_t>>();
  job.field =
    ensemble_velocity(o.routing, experts, cond.to(o.device), ensemble, job.unavailable);
  // Drawn on the host: a seed gives the same images on any device.
  auto generator = at::make_generator<at::CPUGeneratorImpl>(r.seed);
  auto noise = at::randn({rows * job.columns, o.shape.in_channels, o.shape.image_size,
                          o.shape.image_size},
                         generator, torch::kFloat32)
                 .to(o.device);
  job.integration.emplace(noise, r.steps, parse_sampler(r.sampler));
  // The requester's end (a client that hung up, a dead peer) cancels its job. Asked before the
  // promise is made: making it takes the sender out of the message.
  if (auto sender = self->current_sender()) {
    job.requester = caf::actor_cast<caf::actor_addr>(sender);
    self->monitor(caf::actor_cast<caf::actor>(sender));
  }
  job.promise = self->make_response_promise();
  st.jobs.push_back(std::move(job));
  publish_status(self);
  schedule_work(self);
  return st.jobs.back().promise;
}

generator_actor::behavior_type generator(generator_pointer self, generator_options options) {
  self->state.options = std::move(options);
  self->state.last_available.assign(self->state.options.experts.size(), true);
  publish_status(self);
  self->set_down_handler([=](const caf::down_msg& dm) {
    auto& st = self->state;
    const auto before = st.jobs.size();
    std::erase_if(st.jobs, [&](const generation_job& job) { return job.requester == dm.source; });
    if (st.jobs.size() < before) {
      spdlog::info("a generation request was cancelled: its client is gone");
      publish_status(self);
    }
  });
  return {
    [=](generate_atom, const generate_request& r) { return generate(self, r); },
    [=](work_atom) {
      if (!refuse_remote(self, "generator", "work"))
        work(self);
    },
    [=](status_atom) { return self->state.options.status->json(); },
  };
}

} // namespace

int64_t requested_images(const generate_request& r, const dit_options& shape) {
  const int64_t per_row = std::max<int64_t>(r.count, 0);
  if (shape.conditioning == "class" && r.class_index < 0)
    return per_row * shape.num_classes;
  return per_row;
}

std::optional<std::string> validate_generate_request(const generate_request& r,
                                                     const dit_options& shape,
                                                     int32_t max_count) {
  if (r.count < 1 || r.count > max_count)
    return "count must be in [1, " + std::to_string(max_count) + "]";
  if (const auto images = requested_images(r, shape); images > max_count)
    return "this asks for " + std::to_string(images) + " images (" + std::to_string(r.count) +
           " for each of " + std::to_string(images / r.count) +
           " classes); at most " + std::to_string(max_count) +
           " per request (serve.max_count): name a class or lower count";
  if (r.steps < 1 || r.steps > 1000)
    return "steps must be in [1, 1000]";
  if (r.sampler != "euler" && r.sampler != "heun")
    return "sampler must be euler or heun";
  if (!std::isfinite(r.cfg_scale) || r.cfg_scale < 0 || r.cfg_scale > 100)
    return "cfg must be in [0, 100]";
  if (r.strategy != "top1" && r.strategy != "topk" && r.strategy != "full")
    return "strategy must be top1, topk or full";
  if (r.top_k < 1 || r.top_k > 64)
    return "top_k must be in [1, 64]";
  if (shape.conditioning == "class" && r.class_index >= shape.num_classes)
    return "class must be in [0, " + std::to_string(shape.num_classes) + ")";
  if (r.class_index < -1)
    return "class must be in [0, " + std::to_string(shape.num_classes) + "), or left out";
  if (shape.conditioning != "class" && r.class_index >= 0)
    return "this model is not class-conditioned";
  if (shape.conditioning != "caption" && !r.prompt.empty())
    return "this model is not caption-conditioned";
  if (r.prompt.size() > 4096)
    return "prompt too long";
  return std::nullopt;
}

generator_actor spawn_generator(caf::actor_system& system, generator_options options) {
  return system.spawn<caf::detached>(generator, std::move(options));
}

} // namespace ddactor
