// DiT with adaLN-Zero; see dit.hpp for the shape of the network.
#include "models/dit.hpp"

#include <cmath>
#include <stdexcept>

namespace ddactor {

namespace {

// adaLN: LayerNorm output shifted and scaled per sample by the condition.
torch::Tensor modulate(const torch::Tensor& x, const torch::Tensor& shift,
                       const torch::Tensor& scale) {
  return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1);
}

torch::nn::LayerNorm affine_free_layer_norm(int64_t dim) {
  return torch::nn::LayerNorm(
    torch::nn::LayerNormOptions({dim}).elementwise_affine(false).eps(1e-6));
}

torch::Tensor sincos_1d(int64_t dim, const torch::Tensor& positions) {
  auto omega = torch::arange(dim / 2, torch::kFloat64) / (dim / 2.0);
  omega = 1.0 / torch::pow(10000.0, omega);
  auto out = positions.to(torch::kFloat64).reshape({-1, 1}) * omega.reshape({1, -1});
  return torch::cat({out.sin(), out.cos()}, 1);
}

} // namespace

int64_t dit_condition::batch_size() const {
  for (const auto* t : {&labels, &tokens, &context, &is_null})
    if (t->defined())
      return t->size(0);
  return 0;
}

namespace {

// Where a condition's tensors are (the CPU for one with none).
torch::Device device_of(const dit_condition& cond) {
  for (const auto* t : {&cond.labels, &cond.tokens, &cond.context, &cond.is_null})
    if (t->defined())
      return t->device();
  return torch::kCPU;
}

} // namespace

dit_condition dit_condition::as_null() const {
  dit_condition out = *this;
  auto n = batch_size();
  out.is_null =
    torch::ones({n}, torch::TensorOptions().dtype(torch::kBool).device(device_of(*this)));
  return out;
}

dit_condition dit_condition::concat(const dit_condition& other) const {
  auto cat = [](const torch::Tensor& a, const torch::Tensor& b) {
    return a.defined() ? torch::cat({a, b}, 0) : torch::Tensor{};
  };
  dit_condition out;
  out.labels = cat(labels, other.labels);
  out.tokens = cat(tokens, other.tokens);
  out.context = cat(context, other.context);
  out.null_context = cat(null_context, other.null_context);
  auto n = batch_size(), m = other.batch_size();
  const auto flags = torch::TensorOptions().dtype(torch::kBool).device(device_of(*this));
  auto null_a = is_null.defined() ? is_null : torch::zeros({n}, flags);
  auto null_b = other.is_null.defined() ? other.is_null : torch::zeros({m}, flags);
  out.is_null = torch::cat({null_a, null_b.to(null_a.device())}, 0);
  return out;
}

namespace {

// `condition` with `change` applied to each of its tensors that is defined.
template <class Change>
dit_condition map_tensors(const dit_condition& condition, Change change) {
  auto apply = [&](const torch::Tensor& t) { return t.defined() ? change(t) : t; };
  dit_condition out;
  out.labels = apply(condition.labels);
  out.tokens = apply(condition.tokens);
  out.is_null = apply(condition.is_null);
  out.context = apply(condition.context);
  out.null_context = apply(condition.null_context);
  return out;
}

} // namespace

dit_condition dit_condition::slice(int64_t begin, int64_t end) const {
  return map_tensors(*this, [&](const torch::Tensor& t) { return t.slice(0, begin, end); });
}

dit_condition dit_condition::select(const torch::Tensor& indices) const {
  return map_tensors(*this, [&](const torch::Tensor& t) { return t.index_select(0, indices); });
}

dit_condition dit_condition::to(const torch::Device& device) const {
  return map_tensors(*this, [&](const torch::Tensor& t) { return t.to(device); });
}

torch::Tensor sincos_2d_position_embedding(int64_t dim, int64_t grid_size) {
  if (dim % 4 != 0)
    throw std::invalid_argument("2D sin-cos positions need a hidden size divisible by 4");
  auto coords = torch::arange(grid_size, torch::kFloat64);
  auto grid = torch::meshgrid({coords, coords}, "xy");
  auto emb_a = sincos_1d(dim / 2, grid[0]);
  auto emb_b = sincos_1d(dim / 2, grid[1]);
  return torch::cat({emb_a, emb_b}, 1).to(torch::kFloat32);
}

torch::Tensor timestep_frequency_embedding(const torch::Tensor& t, int64_t dim,
                                           double max_period) {
  auto half = dim / 2;
  auto freqs = torch::exp(-std::log(max_period) *
                          torch::arange(half, torch::TensorOptions().dtype(torch::kFloat32)
                                                .device(t.device())) /
                          static_cast<double>(half));
  auto args = t.to(torch::kFloat32).unsqueeze(1) * freqs.unsqueeze(0);
  auto emb = torch::cat({args.cos(), args.sin()}, 1);
  if (dim % 2 == 1)
    emb = torch::cat({emb, torch::zeros_like(emb.slice(1, 0, 1))}, 1);
  return emb;
}

timestep_embedder_impl::timestep_embedder_impl(int64_t hidden_size, int64_t freq_size)
  : frequency_size(freq_size),
    fc1(register_module("fc1", torch::nn::Linear(freq_size, hidden_size))),
    fc2(register_module("fc2", torch::nn::Linear(hidden_size, hidden_size))) {}

torch::Tensor timestep_embedder_impl::forward(const torch::Tensor& t) {
  // Flow-matching time lives in [0, 1]; the sinusoids were designed for 0..1000.
  auto freq = timestep_frequency_embedding(t * 1000.0, frequency_size);
  return fc2(torch::silu(fc1(freq)));
}

attention_impl::attention_impl(int64_t dim, int64_t heads)
  : num_heads(heads),
    qkv(register_module("qkv", torch::nn::Linear(dim, 3 * dim))),
    proj(register_module("proj", torch::nn::Linear(dim, dim))) {
  if (dim % heads != 0)
    throw std::invalid_argument("attention width must be divisible by the number of heads");
}

torch::Tensor attention_impl::forward(const torch::Tensor& x, const torch::Tensor&) {
  auto n = x.size(0), l = x.size(1), d = x.size(2);
  auto head_dim = d / num_heads;
  auto parts = qkv(x).reshape({n, l, 3, num_heads, head_dim}).permute({2, 0, 3, 1, 4});
  auto q = parts[0] * (1.0 / std::sqrt(static_cast<double>(head_dim)));
  auto weights = torch::matmul(q, parts[1].transpose(-2, -1)).softmax(-1);
  auto out = torch::matmul(weights, parts[2]).transpose(1, 2).reshape({n, l, d});
  return proj(out);
}

context_attention_impl::context_attention_impl(int64_t dim, int64_t heads)
  : num_heads(heads),
    q(register_module("q", torch::nn::Linear(dim, dim))),
    kv(register_module("kv", torch::nn::Linear(dim, 2 * dim))),
    proj(register_module("proj", torch::nn::Linear(dim, dim))) {
  if (dim % heads != 0)
    throw std::invalid_argument("attention width must be divisible by the number of heads");
}

torch::Tensor context_attention_impl::forward(const torch::Tensor& x,
                                              const torch::Tensor& context) {
  auto n = x.size(0), t = x.size(1), d = x.size(2), l = context.size(1);
  auto head_dim = d / num_heads;
  auto queries = q(x).reshape({n, t, num_heads, head_dim}).transpose(1, 2) *
                 (1.0 / std::sqrt(static_cast<double>(head_dim)));
  auto keys_values = kv(context).reshape({n, l, 2, num_heads, head_dim}).permute({2, 0, 3, 1, 4});
  auto weights = torch::matmul(queries, keys_values[0].transpose(-2, -1)).softmax(-1);
  return proj(torch::matmul(weights, keys_values[1]).transpose(1, 2).reshape({n, t, d}));
}

feed_forward_impl::feed_forward_impl(int64_t dim, int64_t hidden)
  : fc1(register_module("fc1", torch::nn::Linear(dim, hidden))),
    fc2(register_module("fc2", torch::nn::Linear(hidden, dim))) {}

torch::Tensor feed_forward_impl::forward(const torch::Tensor& x) {
  return fc2(torch::gelu(fc1(x)));
}

dit_block_impl::dit_block_impl(int64_t hidden_size, int64_t num_heads, double mlp_ratio,
                               bool with_context)
  : norm1(register_module("norm1", affine_free_layer_norm(hidden_size))),
    attn(register_module("attn", attention(hidden_size, num_heads))),
    norm2(register_module("norm2", affine_free_layer_norm(hidden_size))),
    mlp(register_module("mlp", feed_forward(hidden_size, static_cast<int64_t>(
                                                           hidden_size * mlp_ratio)))),
    ada_ln(register_module("ada_ln", torch::nn::Linear(hidden_size, 6 * hidden_size))) {
  if (with_context) {
    norm_context = register_module(
      "norm_context", torch::nn::LayerNorm(torch::nn::LayerNormOptions({hidden_size}).eps(1e-6)));
    context_attn = register_module("context_attn", context_attention(hidden_size, num_heads));
  }
}

torch::Tensor dit_block_impl::forward(const torch::Tensor& x, const torch::Tensor& c,
                                      const torch::Tensor& context) {
  auto mod = ada_ln(torch::silu(c)).chunk(6, 1);
  const auto &shift_msa = mod[0], &scale_msa = mod[1], &gate_msa = mod[2];
  const auto &shift_mlp = mod[3], &scale_mlp = mod[4], &gate_mlp = mod[5];
  auto h = x + gate_msa.unsqueeze(1) * attn(modulate(norm1(x), shift_msa, scale_msa));
  if (context_attn) {
    if (!context.defined())
      throw std::invalid_argument("a DiT with text-embedding conditioning needs a context");
    h = h + context_attn(norm_context(h), context);
  }
  return h + gate_mlp.unsqueeze(1) * mlp(modulate(norm2(h), shift_mlp, scale_mlp));
}

dit_final_layer_impl::dit_final_layer_impl(int64_t hidden_size, int64_t patch_size,
                                           int64_t out_channels)
  : norm(register_module("norm", affine_free_layer_norm(hidden_size))),
    linear(register_module(
      "linear", torch::nn::Linear(hidden_size, patch_size * patch_size * out_channels))),
    ada_ln(register_module("ada_ln", torch::nn::Linear(hidden_size, 2 * hidden_size))) {}

torch::Tensor dit_final_layer_impl::forward(const torch::Tensor& x, const torch::Tensor& c) {
  auto mod = ada_ln(torch::silu(c)).chunk(2, 1);
  return linear(modulate(norm(x), mod[0], mod[1]));
}

dit_impl::dit_impl(dit_options opts)
  : patch_embed(register_module(
      "patch_embed",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(opts.in_channels, opts.hidden_size,
                                                 opts.patch_size)
                          .stride(opts.patch_size)))),
    t_embedder(register_module("t_embedder", timestep_embedder(opts.hidden_size))),
    final_layer(register_module(
      "final_layer", dit_final_layer(opts.hidden_size, opts.patch_size, opts.in_channels))),
    options_(std::move(opts)) {
  const auto& o = options_;
  if (o.image_size % o.patch_size != 0)
    throw std::invalid_argument("image size must be divisible by the patch size");
  pos_embed = register_buffer(
    "pos_embed", sincos_2d_position_embedding(o.hidden_size, o.image_size / o.patch_size));
  if (o.conditioning == "class") {
    label_embedder =
      register_module("label_embedder", torch::nn::Embedding(o.num_classes + 1, o.hidden_size));
  } else if (o.conditioning == "caption") {
    text_encoder = register_module("text_encoder", caption_encoder(o.caption, o.hidden_size));
  } else if (o.conditioning == "text_embedding") {
    if (o.context_length < 1 || o.context_width < 1)
      throw std::invalid_argument("text-embedding conditioning needs a context shape");
    context_embedder = register_module(
      "context_embedder",
      torch::nn::Sequential(torch::nn::Linear(o.context_width, o.hidden_size), torch::nn::GELU(),
                            torch::nn::Linear(o.hidden_size, o.hidden_size)));
  } else if (o.conditioning != "none") {
    throw std::invalid_argument("unknown conditioning '" + o.conditioning + "'");
  }
  const bool with_context = o.conditioning == "text_embedding";
  for (int64_t i = 0; i < o.depth; ++i)
    blocks->push_back(dit_block(o.hidden_size, o.num_heads, o.mlp_ratio, with_context));
  register_module("blocks", blocks);
  initialize_weights();
}

void dit_impl::initialize_weights() {
  torch::NoGradGuard no_grad;
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* linear = module->as<torch::nn::Linear>()) {
      torch::nn::init::xavier_uniform_(linear->weight);
      if (linear->bias.defined())
        linear->bias.zero_();
    }
  }
  // Patch embedding as a linear layer over flattened patches.
  auto w = patch_embed->weight;
  torch::nn::init::xavier_uniform_(w.view({w.size(0), -1}));
  patch_embed->bias.zero_();
  if (label_embedder)
    torch::nn::init::normal_(label_embedder->weight, 0.0, 0.02);
  torch::nn::init::normal_(t_embedder->fc1->weight, 0.0, 0.02);
  torch::nn::init::normal_(t_embedder->fc2->weight, 0.0, 0.02);
  // adaLN-Zero: every block starts as the identity, and the output as zero.
  for (auto& block : *blocks) {
    auto* b = block->as<dit_block>();
    b->ada_ln->weight.zero_();
    b->ada_ln->bias.zero_();
    if (b->context_attn) {
      b->context_attn->proj->weight.zero_();
      b->context_attn->proj->bias.zero_();
    }
  }
  final_layer->ada_ln->weight.zero_();
  final_layer->ada_ln->bias.zero_();
  final_layer->linear->weight.zero_();
  final_layer->linear->bias.zero_();
}

torch::Tensor dit_impl::embed_condition(const dit_condition& cond) {
  if (label_embedder) {
    if (!cond.labels.defined())
      throw std::invalid_argument("class-conditioned DiT needs labels");
    auto labels = cond.labels;
    if (cond.is_null.defined())
      labels = torch::where(cond.is_null, torch::full_like(labels, options_.num_classes), labels);
    return label_embedder(labels);
  }
  if (text_encoder) {
    if (!cond.tokens.defined())
      throw std::invalid_argument("caption-conditioned DiT needs caption tokens");
    return text_encoder(cond.tokens, cond.is_null);
  }
  return {};
}

torch::Tensor dit_impl::embed_context(const dit_condition& cond) {
  if (!context_embedder)
    return {};
  const auto& o = options_;
  auto fits = [&](const torch::Tensor& t) {
    return t.defined() && t.dim() == 3 && t.size(0) == cond.batch_size() &&
           t.size(1) == o.context_length && t.size(2) == o.context_width;
  };
  if (!fits(cond.context))
    throw std::invalid_argument("a DiT conditioned on text embeddings needs a context of (N, " +
                                std::to_string(o.context_length) + ", " +
                                std::to_string(o.context_width) + ")");
  auto context = cond.context;
  if (cond.is_null.defined()) {
    if (!fits(cond.null_context))
      throw std::invalid_argument("null rows of a text-embedding condition need a null context "
                                  "of the context's shape");
    context = torch::where(cond.is_null.view({-1, 1, 1}), cond.null_context, context);
  }
  return context_embedder->forward(context);
}

torch::Tensor dit_impl::forward(const torch::Tensor& x, const torch::Tensor& t,
                                const dit_condition& cond) {
  auto tokens = patch_embed(x).flatten(2).transpose(1, 2) + pos_embed.unsqueeze(0);
  auto c = t_embedder(t);
  if (auto y = embed_condition(cond); y.defined())
    c = c + y;
  const auto context = embed_context(cond);
  for (auto& block : *blocks)
    tokens = block->as<dit_block>()->forward(tokens, c, context);
  return unpatchify(final_layer(tokens, c));
}

torch::Tensor dit_impl::unpatchify(const torch::Tensor& x) const {
  auto p = options_.patch_size, c = options_.in_channels;
  auto g = options_.image_size / p;
  auto n = x.size(0);
  return x.reshape({n, g, g, p, p, c})
    .permute({0, 5, 1, 3, 2, 4})
    .reshape({n, c, g * p, g * p});
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters())
    if (p.requires_grad())
      n += p.numel();
  return n;
}

} // namespace ddactor
