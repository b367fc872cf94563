// A DDM expert serving velocities; see expert_server.hpp.
#include "actors/expert_server.hpp"

#include <spdlog/spdlog.h>

#include "models/caption_encoder.hpp"
#include "models/ensemble.hpp"
#include "models/tensor_wire.hpp"
#include "runtime/message_types.hpp"

namespace ddactor {

namespace {

struct expert_state {
  expert_server_options options;
  int64_t served = 0;
  int64_t rejected = 0;
  static inline const char* name = "expert_server";
};

// The conditions of a request as tensors, checked against the model.
dit_condition condition_of(const velocity_request& req, const dit_options& o, int64_t n) {
  dit_condition cond;
  if (o.conditioning == "class") {
    if (static_cast<int64_t>(req.labels.size()) != n)
      throw std::invalid_argument("one label per sample expected");
    for (auto label : req.labels)
      if (label < 0 || label >= o.num_classes)
        throw std::invalid_argument("label outside [0, num_classes)");
    cond.labels = torch::tensor(req.labels, torch::kInt64);
  } else if (o.conditioning == "caption") {
    if (req.token_length != o.caption.max_bytes ||
        static_cast<int64_t>(req.tokens.size()) != n * req.token_length)
      throw std::invalid_argument("caption tokens do not fit the model");
    for (auto token : req.tokens)
      if (token < 0 || token > caption_padding_token)
        throw std::invalid_argument("caption token out of range");
    cond.tokens = torch::tensor(req.tokens, torch::kInt64).view({n, req.token_length});
  }
  if (!req.is_null.empty()) {
    if (static_cast<int64_t>(req.is_null.size()) != n)
      throw std::invalid_argument("one null flag per sample expected");
    std::vector<int64_t> flags(req.is_null.begin(), req.is_null.end());
    cond.is_null = torch::tensor(flags, torch::kInt64).ne(0);
  }
  return cond;
}

expert_remote::behavior_type expert_server(expert_remote::stateful_pointer<expert_state> self,
                                           expert_server_options options) {
  self->state.options = std::move(options);
  self->state.options.model->eval();
  return {
    [=](velocity_atom, const velocity_request& req) -> caf::result<tensor_blob> {
      auto& st = self->state;
      const auto& o = st.options.model->options();
      try {
        if (!std::isfinite(req.cfg_scale) || req.cfg_scale < 0 || req.cfg_scale > 100)
          throw std::invalid_argument("cfg scale out of range");
        auto x = blob_to_tensor(req.x, {-1, o.in_channels, o.image_size, o.image_size},
                                st.options.max_batch);
        auto n = x.size(0);
        auto t = blob_to_tensor(req.t, {n});
        if ((t < 0).any().item<bool>() || (t > 1).any().item<bool>())
          throw std::invalid_argument("times outside [0, 1]");
        auto cond = condition_of(req, o, n);
        torch::NoGradGuard no_grad;
        const auto device = st.options.model->parameters().front().device();
        auto v = local_expert(st.options.model, req.cfg_scale)(x.to(device), t.to(device),
                                                               cond.to(device));
        ++st.served;
        return tensor_to_blob(v);
      } catch (const std::exception& e) {
        ++st.rejected;
        spdlog::warn("expert {}: rejected a request: {}", st.options.expert_index, e.what());
        return make_error(errc::invalid_message, e.what());
      }
    },
  };
}

} // namespace

expert_remote spawn_expert_server(caf::actor_system& system, expert_server_options options) {
  return system.spawn<caf::detached>(expert_server, std::move(options));
}

} // namespace ddactor
