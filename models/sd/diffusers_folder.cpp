// Reading, checking and writing back diffusers pipeline folders; see diffusers_folder.hpp.
#include "models/sd/diffusers_folder.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <tuple>
#include <vector>

#include "models/sd/module_state_loading.hpp"
#include "models/sd/python_json.hpp"
#include "runtime/safetensors.hpp"

namespace ddactor {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view model_index_name = "model_index.json";
constexpr std::string_view model_config_name = "config.json";
constexpr std::string_view scheduler_config_name = "scheduler_config.json";

// Weights file stems: diffusers models save diffusion_pytorch_model.*, transformers models
// model.*.
constexpr std::string_view diffusers_weights_stem = "diffusion_pytorch_model";
constexpr std::string_view transformers_weights_stem = "model";

// A class ddactor reads for a part, with the library model_index.json names it under.
struct known_class {
  diffusers_part part;
  std::string_view library;
  std::string_view name;
};

// The schedulers are diffusers' KarrasDiffusionSchedulers (v0.25.1), those StableDiffusionPipeline
// takes. Their configs hold the same training noise schedule (num_train_timesteps, beta_*,
// prediction_type), which a sampler of another class takes over as diffusers' from_config does:
// which sampler runs is chosen apart from the folder, so SD 1.x's PNDMScheduler folders are as
// usable as DDIM ones.
constexpr std::array<known_class, 18> known_classes = {{
  {diffusers_part::unet, "diffusers", "UNet2DConditionModel"},
  {diffusers_part::vae, "diffusers", "AutoencoderKL"},
  {diffusers_part::text_encoder, "transformers", "CLIPTextModel"},
  {diffusers_part::tokenizer, "transformers", "CLIPTokenizer"},
  {diffusers_part::scheduler, "diffusers", "DDIMScheduler"},
  {diffusers_part::scheduler, "diffusers", "DDPMScheduler"},
  {diffusers_part::scheduler, "diffusers", "PNDMScheduler"},
  {diffusers_part::scheduler, "diffusers", "LMSDiscreteScheduler"},
  {diffusers_part::scheduler, "diffusers", "EulerDiscreteScheduler"},
  {diffusers_part::scheduler, "diffusers", "HeunDiscreteScheduler"},
  {diffusers_part::scheduler, "diffusers", "EulerAncestralDiscreteScheduler"},
  {diffusers_part::scheduler, "diffusers", "DPMSolverMultistepScheduler"},
  {diffusers_part::scheduler, "diffusers", "DPMSolverSinglestepScheduler"},
  {diffusers_part::scheduler, "diffusers", "KDPM2DiscreteScheduler"},
  {diffusers_part::scheduler, "diffusers", "KDPM2AncestralDiscreteScheduler"},
  {diffusers_part::scheduler, "diffusers", "DEISMultistepScheduler"},
  {diffusers_part::scheduler, "diffusers", "UniPCMultistepScheduler"},
  {diffusers_part::scheduler, "diffusers", "DPMSolverSDEScheduler"},
}};

bool is_model_part(diffusers_part part) {
  return part == diffusers_part::unet || part == diffusers_part::vae ||
         part == diffusers_part::text_encoder;
}

std::vector<known_class> classes_of(diffusers_part part) {
  std::vector<known_class> out;
  for (const auto& known : known_classes)
    if (known.part == part)
      out.push_back(known);
  return out;
}

std::vector<known_class> model_classes() {
  std::vector<known_class> out;
  for (const auto& known : known_classes)
    if (is_model_part(known.part))
      out.push_back(known);
  return out;
}

[[noreturn]] void fail(const fs::path& file, const std::string& problem) {
  throw diffusers_folder_error(file.string() + ": " + problem);
}

void require_file(const fs::path& file, const std::string& what) {
  std::error_code error;
  if (!fs::is_regular_file(file, error))
    fail(file, "missing (" + what + ")");
}

nlohmann::json read_json_object(const fs::path& file, const std::string& what) {
  require_file(file, what);
  nlohmann::json value;
  try {
    value = read_python_json_file(file);
  } catch (const std::runtime_error& e) {
    throw diffusers_folder_error(e.what()); // names the file
  }
  if (!value.is_object())
    fail(file, std::string("must hold a JSON object, not ") + value.type_name());
  return value;
}

// A JSON file the folder may leave out: an empty object then.
nlohmann::json read_optional_json_object(const fs::path& file, const std::string& what) {
  std::error_code error;
  if (!fs::exists(file, error))
    return nlohmann::json::object();
  return read_json_object(file, what);
}

// A config's own record of its class must agree with model_index.json: a disagreement means
// the folder was assembled from parts of different models.
void check_own_class_name(const fs::path& file, const nlohmann::json& config, const char* key,
                          const std::string& class_name) {
  if (!config.contains(key))
    return;
  const auto& recorded = config[key];
  const bool agrees = recorded.is_array()
                        ? std::find(recorded.begin(), recorded.end(), class_name) != recorded.end()
                        : recorded == class_name;
  if (!agrees)
    fail(file, std::string(key) + " is " + recorded.dump() + ", but the part is read as " +
                 class_name);
}

const known_class* find_model_class(const std::string& class_name) {
  for (const auto& known : known_classes)
    if (is_model_part(known.part) && known.name == class_name)
      return &known;
  return nullptr;
}

std::string listed(const std::vector<known_class>& classes) {
  std::string out;
  for (size_t i = 0; i < classes.size(); ++i)
    out += (i ? ", " : "") + std::string(classes[i].name);
  return out;
}

fs::path weights_path(const fs::path& folder, std::string_view stem, const std::string& variant,
                      std::string_view extension) {
  std::string name(stem);
  if (!variant.empty())
    name += "." + variant;
  return folder / (name + std::string(extension));
}

// The weights file by diffusers' rule (see the header), or an error that says what the folder
// holds instead.
std::pair<fs::path, std::string> choose_weights(const fs::path& folder, std::string_view stem,
                                                const std::string& requested_variant) {
  const std::string preferred =
    requested_variant.empty() ? std::string(fp16_variant) : requested_variant;
  const fs::path full = weights_path(folder, stem, "", ".safetensors");
  const fs::path variant = weights_path(folder, stem, preferred, ".safetensors");
  std::error_code error;
  const bool has_full = fs::is_regular_file(full, error);
  const bool has_variant = fs::is_regular_file(variant, error);
  if (!requested_variant.empty() && has_variant)
    return {variant, preferred};
  if (has_full)
    return {full, ""};
  if (has_variant)
    return {variant, preferred};

  std::string problem = "no weights file: expected " + full.filename().string() + " or " +
                        variant.filename().string();
  for (const auto& pickle : {weights_path(folder, stem, "", ".bin"),
                             weights_path(folder, stem, preferred, ".bin")})
    if (fs::exists(pickle, error))
      problem += "; " + pickle.filename().string() +
                 " is a PyTorch pickle, which ddactor does not read: convert it to safetensors "
                 "(in Python: load the part and save_pretrained(folder, "
                 "safe_serialization=True))";
  const fs::path index = folder / (full.filename().string() + ".index.json");
  if (fs::exists(index, error))
    problem += "; " + index.filename().string() +
               " describes a sharded checkpoint, which ddactor does not read: save it unsharded";
  fail(folder, problem);
}

diffusers_tokenizer_part read_tokenizer_part(const fs::path& folder,
                                             const std::string& class_name) {
  diffusers_tokenizer_part part;
  part.class_name = class_name;
  part.folder = folder;
  part.vocab_file = folder / "vocab.json";
  part.merges_file = folder / "merges.txt";
  require_file(part.vocab_file, "the tokenizer's vocabulary");
  require_file(part.merges_file, "the tokenizer's BPE merges");
  const fs::path config_file = folder / "tokenizer_config.json";
  part.tokenizer_config = read_optional_json_object(config_file, "the tokenizer's config");
  check_own_class_name(config_file, part.tokenizer_config, "tokenizer_class", class_name);
  part.special_tokens_map =
    read_optional_json_object(folder / "special_tokens_map.json", "the tokenizer's special tokens");
  return part;
}

diffusers_scheduler_part read_scheduler_part(const fs::path& folder,
                                             const std::string& class_name) {
  diffusers_scheduler_part part;
  part.class_name = class_name;
  part.folder = folder;
  part.config_file = folder / scheduler_config_name;
  part.config = read_json_object(part.config_file, "the scheduler's config");
  check_own_class_name(part.config_file, part.config, "_class_name", class_name);
  return part;
}

// model_index.json's [library, class] entry for a required part, checked against what ddactor
// implements.
std::string indexed_class(const diffusers_folder& folder, diffusers_part part) {
  const fs::path index_file = folder.root / model_index_name;
  const std::string name(diffusers_part_name(part));
  if (!folder.model_index.contains(name))
    fail(index_file, "lists no " + name + ", which is required here");
  const auto& entry = folder.model_index[name];
  if (entry.is_array() && entry.size() == 2 && entry[0].is_null() && entry[1].is_null())
    fail(index_file, name + " was saved as [null, null] (no " + name + "), but it is required here");
  if (!entry.is_array() || entry.size() != 2 || !entry[0].is_string() || !entry[1].is_string())
    fail(index_file, name + " must be a [library, class] pair, not " + entry.dump());
  const auto library = entry[0].get<std::string>();
  const auto class_name = entry[1].get<std::string>();
  const auto expected = classes_of(part);
  const bool known = std::any_of(expected.begin(), expected.end(), [&](const known_class& k) {
    return k.library == library && k.name == class_name;
  });
  if (!known)
    fail(index_file, name + " is [\"" + library + "\", \"" + class_name +
                       "\"]; ddactor reads " + listed(expected) + " there");
  return class_name;
}

// --- writing ----------------------------------------------------------------------------------

tensor_dtype stored_dtype(const torch::Tensor& tensor, const std::string& name) {
  switch (tensor.scalar_type()) {
    case torch::kFloat32: return tensor_dtype::f32;
    case torch::kFloat16: return tensor_dtype::f16;
    case torch::kBFloat16: return tensor_dtype::bf16;
    case torch::kFloat64: return tensor_dtype::f64;
    case torch::kInt64: return tensor_dtype::i64;
    case torch::kInt32: return tensor_dtype::i32;
    case torch::kInt16: return tensor_dtype::i16;
    case torch::kInt8: return tensor_dtype::i8;
    case torch::kUInt8: return tensor_dtype::u8;
    case torch::kBool: return tensor_dtype::boolean;
    default:
      throw diffusers_folder_error(name + ": dtype " +
                                   std::string(c10::toString(tensor.scalar_type())) +
                                   " has no safetensors equivalent");
  }
}

// The module's state as safetensors content, in module_state order, with the metadata diffusers'
// save_pretrained writes.
safetensors_content module_content(torch::nn::Module& module) {
  safetensors_content content;
  content.metadata["format"] = "pt";
  for (const auto& [name, tensor] : module_state(module)) {
    const auto dtype = stored_dtype(tensor, name);
    const auto host = tensor.detach().to(torch::kCPU).contiguous();
    stored_tensor stored{name, dtype, host.sizes().vec(), {}};
    stored.data.resize(static_cast<size_t>(host.nbytes()));
    if (!stored.data.empty())
      std::memcpy(stored.data.data(), host.data_ptr(), stored.data.size());
    content.tensors.push_back(std::move(stored));
  }
  return content;
}

// Hard links where the file system allows them, copies where it does not (another device).
// Symbolic links are resolved first: a hub cache's snapshot is a tree of relative links into
// its blobs/ folder, which would dangle if linked as links.
void link_or_copy(const fs::path& from, const fs::path& to) {
  if (fs::is_directory(from)) {
    fs::create_directory(to);
    for (const auto& entry : fs::directory_iterator(from))
      link_or_copy(entry.path(), to / entry.path().filename());
    return;
  }
  const fs::path file = fs::canonical(from);
  std::error_code error;
  fs::create_hard_link(file, to, error);
  if (error)
    fs::copy_file(file, to);
}

void sync(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const std::string reason = std::strerror(errno);
    if (fd >= 0)
      ::close(fd);
    fail(path, "cannot be synced to disk: " + reason);
  }
  ::close(fd);
}

// Everything under `root`, then `root` itself, so that the rename that publishes it publishes
// data that is on disk.
void sync_tree(const fs::path& root) {
  for (const auto& entry : fs::recursive_directory_iterator(root))
    if (entry.is_regular_file() || entry.is_directory())
      sync(entry.path());
  sync(root);
}

} // namespace

std::string_view diffusers_part_name(diffusers_part part) {
  switch (part) {
    case diffusers_part::unet: return "unet";
    case diffusers_part::vae: return "vae";
    case diffusers_part::text_encoder: return "text_encoder";
    case diffusers_part::tokenizer: return "tokenizer";
    case diffusers_part::scheduler: return "scheduler";
  }
  throw std::logic_error("unknown diffusers_part");
}

diffusers_model_part read_diffusers_model_part(const fs::path& folder,
                                               const std::string& class_name,
                                               const std::string& variant) {
  const auto* known = find_model_class(class_name);
  if (known == nullptr)
    fail(folder, "ddactor has no model class " + class_name + " (it reads " +
                   listed(model_classes()) + ")");
  std::error_code error;
  if (!fs::is_directory(folder, error))
    fail(folder, "missing (the " + class_name + " folder)");

  diffusers_model_part part;
  part.class_name = class_name;
  part.folder = folder;
  part.config_file = folder / model_config_name;
  part.config = read_json_object(part.config_file, "the " + class_name + " config");
  const bool from_transformers = known->library == "transformers";
  check_own_class_name(part.config_file, part.config,
                       from_transformers ? "architectures" : "_class_name", class_name);

  std::tie(part.weights_file, part.weights_variant) = choose_weights(
    folder, from_transformers ? transformers_weights_stem : diffusers_weights_stem, variant);
  try {
    // Validates the header against the file's size: a truncated or damaged file fails here,
    // before anything is built from it.
    const safetensors_reader header_check(part.weights_file);
  } catch (const safetensors_error& e) {
    throw diffusers_folder_error(e.what()); // names the file
  }
  return part;
}

diffusers_folder read_diffusers_folder(const fs::path& root,
                                       const diffusers_folder_options& options) {
  diffusers_folder folder;
  folder.root = root;
  const fs::path index_file = root / model_index_name;
  folder.model_index = read_json_object(index_file, "a diffusers pipeline's model index");
  const auto pipeline_class = folder.model_index.find("_class_name");
  if (pipeline_class == folder.model_index.end() || !pipeline_class->is_string())
    fail(index_file, "has no _class_name naming the pipeline");
  folder.pipeline_class = pipeline_class->get<std::string>();

  for (const auto part : options.required_parts) {
    const std::string class_name = indexed_class(folder, part);
    const fs::path part_folder = root / diffusers_part_name(part);
    std::error_code error;
    if (!fs::is_directory(part_folder, error))
      fail(part_folder, "missing (" + std::string(model_index_name) + " lists " +
                          std::string(diffusers_part_name(part)) + ")");
    switch (part) {
      case diffusers_part::unet:
        folder.unet = read_diffusers_model_part(part_folder, class_name, options.variant);
        break;
      case diffusers_part::vae:
        folder.vae = read_diffusers_model_part(part_folder, class_name, options.variant);
        break;
      case diffusers_part::text_encoder:
        folder.text_encoder = read_diffusers_model_part(part_folder, class_name, options.variant);
        break;
      case diffusers_part::tokenizer:
        folder.tokenizer = read_tokenizer_part(part_folder, class_name);
        break;
      case diffusers_part::scheduler:
        folder.scheduler = read_scheduler_part(part_folder, class_name);
        break;
    }
  }
  return folder;
}

void write_diffusers_folder_with_unet(const diffusers_folder& source, torch::nn::Module& unet,
                                      const fs::path& destination_as_given) {
  // "out/" names the folder "out": the staging folder is named after it.
  const fs::path destination = destination_as_given.has_filename()
                                 ? destination_as_given
                                 : destination_as_given.parent_path();
  if (!source.unet)
    fail(source.root, "was read without its unet, so it has no UNet to replace");
  std::error_code error;
  if (fs::exists(destination, error) || fs::is_symlink(destination, error))
    fail(destination, "already exists; a diffusers folder is written to a new path only");
  const auto mismatch = compare_module_state(unet, source.unet->weights_file);
  if (!mismatch.empty())
    fail(source.unet->weights_file,
         "the UNet module to write does not have this file's keys and shapes:" +
           mismatch.describe());

  const fs::path parent = destination.has_parent_path() ? destination.parent_path() : ".";
  const fs::path staging =
    parent / ("." + destination.filename().string() + ".tmp-" + std::to_string(::getpid()));
  try {
    fs::remove_all(staging); // left by an earlier process of this id that died while writing
    fs::create_directory(staging);
    link_or_copy(source.root / model_index_name, staging / model_index_name);
    for (const auto& [name, entry] : source.model_index.items()) {
      const bool is_part = entry.is_array() && entry.size() == 2 && entry[0].is_string();
      if (!is_part || name == diffusers_part_name(diffusers_part::unet))
        continue;
      // Parts the source lists but lacks stay absent: the copy is as complete as the source.
      if (fs::is_directory(source.root / name))
        link_or_copy(source.root / name, staging / name);
    }
    const fs::path unet_folder = staging / diffusers_part_name(diffusers_part::unet);
    fs::create_directory(unet_folder);
    link_or_copy(source.unet->config_file, unet_folder / model_config_name);
    write_safetensors_file(weights_path(unet_folder, diffusers_weights_stem, "", ".safetensors"),
                           module_content(unet));
    sync_tree(staging);
    fs::rename(staging, destination);
    sync(parent);
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(staging, error);
    throw diffusers_folder_error("cannot write " + destination.string() + ": " + e.what());
  } catch (...) {
    fs::remove_all(staging, error);
    throw;
  }
}

} // namespace ddactor
