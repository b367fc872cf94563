// The run-file schema and its loader. The schema is a table: one small function per section lists
// that section's key bindings (name, the struct field it fills, the requirement on its value), and
// a short list holds the rules that tie keys of different sections together. Loading walks the
// parsed TOML in file order, hands each value to its binding, applies --set overrides, fills the
// source-dependent defaults and the preset, then checks the cross-key rules. Every failure
// becomes a config_error that points at the value that is wrong.
//
// To add a section: add its struct to run_config.hpp, write a `<name>_keys()` function like the
// ones below, and list it in config_schema(). Cross-key rules go in cross_key_rules().

#include "config/config_loader.hpp"
#include "config/memory_estimate.hpp"
#include "runtime/peer_address.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <type_traits>
#include <utility>

namespace ddactor {

namespace {

std::string format_message(const std::string& file, int line, int column, const std::string& key,
                           const std::string& problem) {
  std::string out = file;
  if (line > 0)
    out += ":" + std::to_string(line) + ":" + std::to_string(column);
  out += ": ";
  if (!key.empty())
    out += "key '" + key + "': ";
  return out + problem;
}

} // namespace

config_error::config_error(std::string file, int line, int column, std::string key,
                           std::string problem)
  : std::runtime_error(format_message(file, line, column, key, problem)),
    file_(std::move(file)),
    line_(line),
    column_(column),
    key_(std::move(key)),
    problem_(std::move(problem)) {
}

std::filesystem::path run_config::ddm_root() const {
  if (!run.dir.empty())
    return run.dir;
  return std::filesystem::path("runs") / run.name;
}

std::filesystem::path run_config::run_dir() const {
  if (ddm.expert >= 0)
    return ddm_root() / ("expert-" + std::to_string(ddm.expert));
  if (run.mode == "router")
    return ddm_root() / "router";
  return ddm_root();
}

std::filesystem::path run_config::assignments_path() const {
  return ddm.assignments.empty() ? ddm_root() / "clusters.safetensors" : ddm.assignments;
}

namespace {

// --- TOML text of values -------------------------------------------------------------------------

/// A TOML basic string; control characters are escaped so that the text stays on one line.
std::string toml_string(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\f': out += "\\f"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04X", static_cast<unsigned>(c));
          out += escaped;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

/// The shortest text that reads back as the same double, in plain notation where that stays
/// readable (0.0003, not 3e-04); whole numbers keep no ".0".
std::string shortest_number(double value) {
  const double magnitude = std::fabs(value);
  const bool plain = magnitude == 0 || (magnitude >= 1e-4 && magnitude < 1e15);
  char buffer[64];
  const auto format = plain ? std::chars_format::fixed : std::chars_format::scientific;
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value, format);
  return std::string(buffer, result.ptr);
}

/// A TOML float: it must not read back as an integer.
std::string toml_float(double value) {
  if (std::isnan(value))
    return "nan";
  if (std::isinf(value))
    return value > 0 ? "inf" : "-inf";
  std::string text = shortest_number(value);
  if (text.find_first_of(".e") == std::string::npos)
    text += ".0";
  return text;
}

std::string render(const std::string& value) { return toml_string(value); }
std::string render(const std::filesystem::path& value) { return toml_string(value.string()); }
std::string render(double value) { return toml_float(value); }
std::string render(bool value) { return value ? "true" : "false"; }
std::string render(int value) { return std::to_string(value); }
std::string render(int64_t value) { return std::to_string(value); }
std::string render(uint64_t value) { return std::to_string(value); }
std::string render(const std::vector<std::string>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i)
    out += (i ? ", " : "") + toml_string(values[i]);
  return out + "]";
}

/// "a float (1.5)", "a string (\"abc\")", "a table": what a value in the file is, for messages.
std::string describe_node(const toml::node& node) {
  constexpr size_t shown_chars = 40;
  switch (node.type()) {
    case toml::node_type::string: {
      const std::string& text = node.as_string()->get();
      std::string shown = text.size() > shown_chars ? text.substr(0, shown_chars) + "..." : text;
      return "a string (" + toml_string(shown) + ")";
    }
    case toml::node_type::integer: return "an integer (" + render(node.as_integer()->get()) + ")";
    case toml::node_type::floating_point:
      return "a float (" + toml_float(node.as_floating_point()->get()) + ")";
    case toml::node_type::boolean: return "a boolean (" + render(node.as_boolean()->get()) + ")";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "nothing";
  }
}

/// Key names come from the file and end up in a terminal: keep control characters out.
std::string printable(std::string_view text) {
  std::string out;
  for (char c : text)
    out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  return out;
}

// --- Reading typed values ------------------------------------------------------------------------

/// Thrown by a key binding when a value cannot be stored; the loader adds where it came from.
struct bad_value {
  std::string problem;
};

template <class T>
constexpr bool is_text_v =
    std::is_same_v<T, std::string> || std::is_same_v<T, std::filesystem::path>;

template <class T>
T read_as(const toml::node& node) {
  if constexpr (is_text_v<T>) {
    if (const auto* text = node.as_string())
      return T(text->get());
    throw bad_value{"expected a string, got " + describe_node(node)};
  } else if constexpr (std::is_same_v<T, bool>) {
    if (const auto* flag = node.as_boolean())
      return flag->get();
    throw bad_value{"expected a boolean, got " + describe_node(node)};
  } else if constexpr (std::is_same_v<T, double>) {
    double value;
    if (const auto* real = node.as_floating_point())
      value = real->get();
    else if (const auto* whole = node.as_integer())
      value = static_cast<double>(whole->get());
    else
      throw bad_value{"expected a float, got " + describe_node(node)};
    if (!std::isfinite(value))
      throw bad_value{"must be a finite number, got " + toml_float(value)};
    return value;
  } else if constexpr (std::is_integral_v<T>) {
    const auto* whole = node.as_integer();
    if (!whole)
      throw bad_value{"expected an integer, got " + describe_node(node)};
    const int64_t value = whole->get();
    if constexpr (std::is_same_v<T, uint64_t>) {
      if (value < 0)
        throw bad_value{"must be >= 0, got " + render(value)};
    } else if constexpr (!std::is_same_v<T, int64_t>) {
      if (value < std::numeric_limits<T>::min() || value > std::numeric_limits<T>::max())
        throw bad_value{"must be in [" + std::to_string(std::numeric_limits<T>::min()) + ", " +
                        std::to_string(std::numeric_limits<T>::max()) + "], got " +
                        render(value)};
    }
    return static_cast<T>(value);
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    // One string stands for a list of one ("" for none): `listen = "0.0.0.0:7000"`.
    if (const auto* text = node.as_string())
      return text->get().empty() ? std::vector<std::string>{}
                                 : std::vector<std::string>{text->get()};
    const auto* items = node.as_array();
    if (!items)
      throw bad_value{"expected a string or an array of strings, got " + describe_node(node)};
    std::vector<std::string> values;
    for (const auto& item : *items) {
      if (!item.is_string())
        throw bad_value{"expected an array of strings, found " + describe_node(item) + " in it"};
      values.push_back(item.as_string()->get());
    }
    return values;
  } else {
    static_assert(sizeof(T) == 0, "no TOML reading for this field type");
  }
}

// --- Requirements on single values ---------------------------------------------------------------
// A requirement returns nothing when the value is fine, else what it must be ("> 0", "in [0, 1)"),
// which the binding turns into "must be > 0, got -1". They are generic so that one `at_least(0)`
// serves int, int64_t and double fields alike.

template <class T>
using requirement = std::function<std::optional<std::string>(const T&)>;

auto at_least(double low) {
  return [low](const auto& value) -> std::optional<std::string> {
    if (value >= low)
      return std::nullopt;
    return ">= " + shortest_number(low);
  };
}

auto greater_than(double low) {
  return [low](const auto& value) -> std::optional<std::string> {
    if (value > low)
      return std::nullopt;
    return "> " + shortest_number(low);
  };
}

/// [low, high].
auto within(double low, double high) {
  return [low, high](const auto& value) -> std::optional<std::string> {
    if (value >= low && value <= high)
      return std::nullopt;
    return "in [" + shortest_number(low) + ", " + shortest_number(high) + "]";
  };
}

/// [low, high): decays and probabilities that must stay below 1.
auto within_below(double low, double high) {
  return [low, high](const auto& value) -> std::optional<std::string> {
    if (value >= low && value < high)
      return std::nullopt;
    return "in [" + shortest_number(low) + ", " + shortest_number(high) + ")";
  };
}

auto one_of(std::vector<std::string> allowed) {
  return [allowed = std::move(allowed)](const std::string& value) -> std::optional<std::string> {
    if (std::find(allowed.begin(), allowed.end(), value) != allowed.end())
      return std::nullopt;
    std::string listed;
    for (size_t i = 0; i < allowed.size(); ++i)
      listed += (i ? ", " : "") + toml_string(allowed[i]);
    return "one of " + listed;
  };
}

auto grey_or_rgb() {
  return [](const int& channels) -> std::optional<std::string> {
    if (channels == 1 || channels == 3)
      return std::nullopt;
    return "1 (grey) or 3 (RGB)";
  };
}

/// (low, high]: rates that must be positive and have a sane ceiling.
auto above_at_most(double low, double high) {
  return [low, high](const auto& value) -> std::optional<std::string> {
    if (value > low && value <= high)
      return std::nullopt;
    return "in (" + shortest_number(low) + ", " + shortest_number(high) + "]";
  };
}

/// A run name becomes a folder under runs/: one plain name, never a path out of it.
auto run_name() {
  return [](const std::string& value) -> std::optional<std::string> {
    const bool plain = !value.empty() && value.size() <= 128 && value != "." && value != ".." &&
                       std::all_of(value.begin(), value.end(), [](char c) {
                         return std::isalnum(static_cast<unsigned char>(c)) || c == '-' ||
                                c == '_' || c == '.';
                       });
    if (plain)
      return std::nullopt;
    return "a plain name of letters, digits, '-', '_' and '.' (up to 128; it becomes the folder "
           "runs/<name>; use run.dir for another place)";
  };
}

/// "host:port" with a numeric port (a host in brackets for IPv6).
bool is_host_port(const std::string& value) {
  const auto colon = value.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == value.size() ||
      value.size() - colon - 1 > 5)
    return false;
  const auto port = value.substr(colon + 1);
  if (!std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  return std::stoi(port) <= 65535;
}

auto empty_or_address() {
  return [](const std::string& value) -> std::optional<std::string> {
    if (value.empty() || is_host_port(value))
      return std::nullopt;
    return "empty or \"host:port\"";
  };
}

auto empty_or_addresses() {
  return [](const std::vector<std::string>& values) -> std::optional<std::string> {
    for (const auto& value : values)
      if (!value.empty() && !is_host_port(value))
        return "a list of \"host:port\" strings (\"\" for a local expert)";
    return std::nullopt;
  };
}

/// "host:port" as peers read it ("[v6]:port"; a bare IPv6 address cannot carry a port).
bool is_peer_address(const std::string& value) {
  try {
    split_listen_address(value);
    return true;
  } catch (const std::invalid_argument&) {
    return false;
  }
}

/// network.listen: up to 4 "host:port" on one port (a probe's dial-back and the relays name one
/// port per peer; a router forwards one).
auto listen_addresses() {
  return [](const std::vector<std::string>& values) -> std::optional<std::string> {
    constexpr size_t most = 4;
    if (values.size() > most)
      return "at most " + std::to_string(most) + " \"host:port\" strings";
    for (const auto& value : values)
      if (!is_peer_address(value))
        return "\"host:port\" or a list of them (\"[v6]:port\" for IPv6)";
    for (const auto& value : values)
      if (value.substr(value.rfind(':')) != values.front().substr(values.front().rfind(':')))
        return "addresses on one port (" + values.front() + " and " + value + " differ)";
    return std::nullopt;
  };
}

/// network.announce: the first is dialed first, the others when it fails.
auto announce_addresses() {
  return [](const std::vector<std::string>& values) -> std::optional<std::string> {
    constexpr size_t most = 5;  // one, and max_alternate_addresses
    if (values.size() > most)
      return "at most " + std::to_string(most) + " \"host:port\" strings";
    for (const auto& value : values)
      if (!is_peer_address(value))
        return "\"host:port\" or a list of them (\"[v6]:port\" for IPv6)";
    return std::nullopt;
  };
}

auto addresses() {
  return [](const std::vector<std::string>& values) -> std::optional<std::string> {
    for (const auto& value : values)
      if (!parse_peer_address(value))
        return "a list of \"host:port\" strings (\"[v6]:port\" for IPv6, port 1-65535)";
    return std::nullopt;
  };
}

/// A TLS certificate comes with its key: both or neither.
std::optional<std::string> tls_pair_problem(const std::string& section,
                                            const std::filesystem::path& certificate,
                                            const std::filesystem::path& key) {
  if (certificate.empty() == key.empty())
    return std::nullopt;
  return section + ".tls_certificate_file and " + section +
         ".tls_key_file go together: set both (HTTPS) or neither (plain HTTP)";
}

/// Ed25519 public keys: 64 hex characters each.
auto public_keys() {
  return [](const std::vector<std::string>& values) -> std::optional<std::string> {
    for (const auto& value : values)
      if (value.size() != 64 || !std::all_of(value.begin(), value.end(), [](char c) {
            return std::isxdigit(static_cast<unsigned char>(c)) != 0;
          }))
        return "a list of public keys (64 hex characters each, as `ddactor keys` prints them)";
    return std::nullopt;
  };
}

/// "cpu", "cuda" or "cuda:N".
bool is_device_name(const std::string& value) {
  if (value == "cpu" || value == "cuda")
    return true;
  constexpr std::string_view cuda_prefix = "cuda:";
  constexpr size_t max_index_digits = 4;
  return value.size() > cuda_prefix.size() &&
         value.size() <= cuda_prefix.size() + max_index_digits &&
         value.compare(0, cuda_prefix.size(), cuda_prefix) == 0 &&
         std::all_of(value.begin() + cuda_prefix.size(), value.end(),
                     [](char c) { return c >= '0' && c <= '9'; });
}

auto device_name() {
  return [](const std::string& value) -> std::optional<std::string> {
    if (is_device_name(value))
      return std::nullopt;
    return "\"cpu\", \"cuda\" or \"cuda:N\" (N a device index)";
  };
}

// run.devices: distinct CUDA devices, one trainer each (several CPU trainers: run.trainers).
auto device_list() {
  return [](const std::vector<std::string>& values) -> std::optional<std::string> {
    const std::set<std::string> distinct(values.begin(), values.end());
    if (distinct.size() == values.size() && values.size() <= 64 &&
        std::all_of(values.begin(), values.end(), [](const std::string& value) {
          return is_device_name(value) && value.rfind("cuda:", 0) == 0;
        }))
      return std::nullopt;
    return "a list of distinct \"cuda:N\" devices, one trainer each (several trainers on the "
           "CPU: run.trainers)";
  };
}

// --- Model presets (Peebles & Xie, Table 1) ------------------------------------------------------

struct model_preset {
  int hidden_size;
  int depth;
  int num_heads;
  int patch_size;
};

std::optional<model_preset> find_preset(std::string_view name) {
  struct size_entry {
    std::string_view size;
    int hidden_size, depth, num_heads;
  };
  static constexpr size_entry sizes[] = {
      {"S", 384, 12, 6}, {"B", 768, 12, 12}, {"L", 1024, 24, 16}, {"XL", 1152, 28, 16}};
  const auto slash = name.find('/');
  if (slash == std::string_view::npos)
    return std::nullopt;
  const std::string_view size = name.substr(0, slash), patch = name.substr(slash + 1);
  if (patch != "2" && patch != "4" && patch != "8")
    return std::nullopt;
  for (const auto& entry : sizes)
    if (entry.size == size)
      return model_preset{entry.hidden_size, entry.depth, entry.num_heads, patch[0] - '0'};
  return std::nullopt;
}

auto preset_name() {
  return [](const std::string& value) -> std::optional<std::string> {
    if (value == "custom" || find_preset(value))
      return std::nullopt;
    return "\"custom\" or S, B, L or XL followed by /2, /4 or /8 (e.g. \"S/4\")";
  };
}

// --- Key bindings --------------------------------------------------------------------------------

/// One key of one section struct S: reads a TOML value into its field (checking type and
/// requirement) and writes the field back as TOML text.
template <class S>
struct field_binding {
  std::string_view name;
  bool takes_text;
  std::function<void(S&, const toml::node&)> read;
  std::function<std::string(const S&)> render;
};

template <class S, class T>
field_binding<S> field(std::string_view name, T S::*member,
                       std::type_identity_t<requirement<T>> check = {}) {
  return {name, is_text_v<T>,
          [member, check](S& section, const toml::node& node) {
            T value = read_as<T>(node);
            if (check)
              if (auto needed = check(value))
                throw bad_value{"must be " + *needed + ", got " + render(value)};
            section.*member = std::move(value);
          },
          [member](const S& section) { return render(section.*member); }};
}

/// averaging.overlap: a boolean, or "auto" (on where it is sound: averaging.overlap in run_config).
field_binding<averaging_section> overlap_field() {
  return {"overlap", false,
          [](averaging_section& section, const toml::node& node) {
            if (const auto* flag = node.as_boolean()) {
              section.overlap = flag->get() ? overlap_policy::on : overlap_policy::off;
              return;
            }
            if (const auto* text = node.as_string(); text && text->get() == "auto") {
              section.overlap = overlap_policy::automatic;
              return;
            }
            throw bad_value{"expected true, false or \"auto\", got " + describe_node(node)};
          },
          [](const averaging_section& section) {
            switch (section.overlap) {
              case overlap_policy::off: return std::string("false");
              case overlap_policy::on: return std::string("true");
              case overlap_policy::automatic: break;
            }
            return std::string("\"auto\"");
          }};
}

/// A field binding lifted to the whole run_config.
struct key_binding {
  std::string section;
  std::string key;
  /// String-valued: an override's text is used as is even where it would parse as a number.
  bool takes_text;
  std::function<void(run_config&, const toml::node&)> read;
  std::function<std::string(const run_config&)> render;

  std::string full_name() const { return section + "." + key; }
};

struct section_schema {
  std::string name;
  std::vector<key_binding> keys;
};

template <class S>
section_schema bind_section(std::string_view name, S run_config::*member,
                            std::vector<field_binding<S>> fields) {
  section_schema schema{std::string(name), {}};
  for (auto& f : fields)
    schema.keys.push_back(
        {schema.name, std::string(f.name), f.takes_text,
         [member, read = std::move(f.read)](run_config& config, const toml::node& node) {
           read(config.*member, node);
         },
         [member, render = std::move(f.render)](const run_config& config) {
           return render(config.*member);
         }});
  return schema;
}

// --- The schema ----------------------------------------------------------------------------------

/// What a process can be asked to do (run.mode). Later capabilities add "router".
const std::vector<std::string> run_modes = {"train", "router"};
const std::vector<std::string> samplers = {"euler", "heun"};
/// sample.sampler: the DiT's samplers and Stable Diffusion's (models/sd/latent_samplers.hpp).
const std::vector<std::string> sample_samplers = {"euler", "heun", "ddim", "dpm++2m"};
const std::vector<std::string> byzantine_behaviours = {
  "", "forged_state", "scaled_values", "silent_leader", "lying_reducer", "false_accuser"};
/// The samplers only Stable Diffusion has.
bool is_sd_only_sampler(const std::string& name) { return name == "ddim" || name == "dpm++2m"; }

/// A list of layer names as PEFT's target_modules takes them ("to_q", "attn2.to_out.0").
auto layer_names() {
  return [](const std::vector<std::string>& values) -> std::optional<std::string> {
    auto valid = [](const std::string& name) {
      return !name.empty() && name.front() != '.' && name.back() != '.' &&
             name.find("..") == std::string::npos &&
             std::all_of(name.begin(), name.end(), [](char c) {
               return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
             });
    };
    if (!values.empty() && std::all_of(values.begin(), values.end(), valid))
      return std::nullopt;
    return "a non-empty list of layer names (letters, digits, '_' and '.', e.g. \"to_q\")";
  };
}

section_schema run_keys() {
  return bind_section("run", &run_config::run, {
      field("name", &run_section::name, run_name()),
      field("dir", &run_section::dir),
      field("mode", &run_section::mode, one_of(run_modes)),
      field("seed", &run_section::seed),
      field("threads", &run_section::threads, within(0, 1024)),
      field("trainers", &run_section::trainers, within(1, 64)),
      field("attach", &run_section::attach),
      field("device", &run_section::device, device_name()),
      field("devices", &run_section::devices, device_list()),
  });
}

section_schema model_keys() {
  return bind_section("model", &run_config::model, {
      field("preset", &model_section::preset, preset_name()),
      field("hidden_size", &model_section::hidden_size, within(1, 16384)),
      field("depth", &model_section::depth, within(1, 256)),
      field("num_heads", &model_section::num_heads, within(1, 256)),
      field("patch_size", &model_section::patch_size, within(1, 64)),
      field("mlp_ratio", &model_section::mlp_ratio, above_at_most(0, 16)),
      field("conditioning", &model_section::conditioning, one_of({"class", "caption", "none"})),
      field("num_classes", &model_section::num_classes, at_least(0)),
      field("condition_dropout", &model_section::condition_dropout, within_below(0, 1)),
      field("text_layers", &model_section::text_layers, at_least(0)),
      field("text_max_bytes", &model_section::text_max_bytes, within(1, 4096)),
      field("pretrained", &model_section::pretrained),
      field("latent", &model_section::latent),
  });
}

section_schema data_keys() {
  return bind_section("data", &run_config::data, {
      field("source", &data_section::source, one_of({"fashion-mnist", "folder"})),
      field("path", &data_section::path),
      field("resolution", &data_section::resolution, within(4, 4096)),
      field("channels", &data_section::channels, grey_or_rgb()),
      field("batch_size", &data_section::batch_size, within(1, 65536)),
      field("micro_batch_size", &data_section::micro_batch_size, within(0, 65536)),
      field("prefetch", &data_section::prefetch, within(1, 1024)),
      field("holdout_fraction", &data_section::holdout_fraction, within(0, 0.5)),
      field("buckets", &data_section::buckets),
      field("cache_latents", &data_section::cache_latents),
  });
}

section_schema train_keys() {
  return bind_section("train", &run_config::train, {
      field("steps", &train_section::steps, at_least(0)),
      field("max_seconds", &train_section::max_seconds, at_least(0)),
      field("lr", &train_section::lr, above_at_most(0, 1)),
      field("weight_decay", &train_section::weight_decay, at_least(0)),
      field("adam_beta1", &train_section::adam_beta1, within_below(0, 1)),
      field("adam_beta2", &train_section::adam_beta2, within_below(0, 1)),
      field("adam_eps", &train_section::adam_eps, greater_than(0)),
      field("warmup_steps", &train_section::warmup_steps, at_least(0)),
      field("grad_clip", &train_section::grad_clip, at_least(0)),
      field("ema_decay", &train_section::ema_decay, within_below(0, 1)),
      field("logit_normal_mean", &train_section::logit_normal_mean),
      field("logit_normal_std", &train_section::logit_normal_std, greater_than(0)),
      field("log_every", &train_section::log_every, at_least(1)),
      field("checkpoint_every", &train_section::checkpoint_every, at_least(1)),
      field("keep_checkpoints", &train_section::keep_checkpoints, at_least(1)),
      field("sample_every", &train_section::sample_every, at_least(0)),
      field("target_batch_size", &train_section::target_batch_size, at_least(0)),
      field("averaging", &train_section::averaging,
            one_of({"gradients", "parameters", "diloco"})),
      field("precision", &train_section::precision, one_of({"fp32", "bf16", "fp16"})),
      field("outer_lr", &train_section::outer_lr, greater_than(0)),
      field("outer_momentum", &train_section::outer_momentum, within_below(0, 1)),
      field("lora_rank", &train_section::lora_rank, within(0, 1024)),
      field("lora_alpha", &train_section::lora_alpha, greater_than(0)),
      field("lora_targets", &train_section::lora_targets, layer_names()),
      field("offset_noise", &train_section::offset_noise, within(0, 1)),
      field("min_snr_gamma", &train_section::min_snr_gamma, at_least(0)),
      field("caption_dropout", &train_section::caption_dropout, within_below(0, 1)),
      field("checkpoint_activations", &train_section::checkpoint_activations),
  });
}

section_schema sample_keys() {
  return bind_section("sample", &run_config::sample, {
      field("steps", &sample_section::steps, at_least(1)),
      field("sampler", &sample_section::sampler, one_of(sample_samplers)),
      field("cfg_scale", &sample_section::cfg_scale, at_least(0)),
      field("per_class", &sample_section::per_class, at_least(1)),
      field("seed", &sample_section::seed),
  });
}

section_schema eval_keys() {
  return bind_section("eval", &run_config::eval, {
      field("num_samples", &eval_section::num_samples, at_least(1)),
      field("steps", &eval_section::steps, at_least(1)),
      field("sampler", &eval_section::sampler, one_of(samplers)),
      field("cfg_scale", &eval_section::cfg_scale, at_least(0)),
      field("batch_size", &eval_section::batch_size, at_least(1)),
      field("seed", &eval_section::seed),
      field("cache_dir", &eval_section::cache_dir),
  });
}

section_schema network_keys() {
  return bind_section("network", &run_config::network, {
      field("listen", &network_section::listen, listen_addresses()),
      field("announce", &network_section::announce, announce_addresses()),
      field("reachable", &network_section::reachable, one_of({"auto", "yes", "no"})),
      field("initial_peers", &network_section::initial_peers, addresses()),
      field("swarm_id", &network_section::swarm_id),
      field("gossip_interval", &network_section::gossip_interval, greater_than(0)),
      field("suspect_after", &network_section::suspect_after, greater_than(0)),
      field("remove_after", &network_section::remove_after, greater_than(0)),
      field("heartbeat_interval", &network_section::heartbeat_interval, greater_than(0)),
      field("connection_timeout", &network_section::connection_timeout, greater_than(0)),
      field("connect_timeout", &network_section::connect_timeout, greater_than(0)),
      field("bootstrap_retry", &network_section::bootstrap_retry, greater_than(0)),
      field("wait_for_peers", &network_section::wait_for_peers, within(1, 100000)),
      field("encryption", &network_section::encryption),
      field("swarm_key_file", &network_section::swarm_key_file),
      field("allowlist", &network_section::allowlist, public_keys()),
      field("open", &network_section::open),
      field("identity_file", &network_section::identity_file),
      field("handshake_timeout", &network_section::handshake_timeout, greater_than(0)),
      field("max_handshakes_per_address", &network_section::max_handshakes_per_address,
            within(1, 10000)),
      field("ban_time", &network_section::ban_time, within(1, 1e7)),
  });
}

section_schema averaging_keys() {
  return bind_section("averaging", &run_config::averaging, {
      field("group_size", &averaging_section::group_size, within(1, 64)),
      field("matchmaking_time", &averaging_section::matchmaking_time, greater_than(0)),
      field("allreduce_timeout", &averaging_section::allreduce_timeout, greater_than(0)),
      field("chunk_elements", &averaging_section::chunk_elements, within(1024, 16777216)),
      field("request_timeout", &averaging_section::request_timeout, greater_than(0)),
      field("state_chunk_bytes", &averaging_section::state_chunk_bytes,
            within(4096, 256 * 1024 * 1024)),
      field("compression", &averaging_section::compression,
            one_of({"none", "fp16", "bf16", "int8", "topk", "adaptive"})),
      field("zstd_level", &averaging_section::zstd_level, within(0, 19)),
      field("int8_block_size", &averaging_section::int8_block_size, within(1, 1048576)),
      field("topk_fraction", &averaging_section::topk_fraction, within(1e-6, 1)),
      field("topk_catch_up", &averaging_section::topk_catch_up),
      field("adaptive_exact_below", &averaging_section::adaptive_exact_below, at_least(0)),
      field("compressor_threads", &averaging_section::compressor_threads, within(1, 64)),
      field("state_compression", &averaging_section::state_compression,
            one_of({"none", "zstd", "fp16", "bf16"})),
      field("state_every", &averaging_section::state_every, at_least(1)),
      field("bandwidth", &averaging_section::bandwidth, within(0, 1e6)),
      overlap_field(),
      field("step_ahead", &averaging_section::step_ahead),
      field("max_weight_ratio", &averaging_section::max_weight_ratio, within(0, 1e6)),
      field("state_quorum", &averaging_section::state_quorum, within(1, 64)),
      field("aggregation", &averaging_section::aggregation, one_of({"mean", "centered_clip"})),
      field("clip_radius", &averaging_section::clip_radius, at_least(0)),
      field("clip_iterations", &averaging_section::clip_iterations, within(1, 100)),
      field("audit_probability", &averaging_section::audit_probability, within(0, 1)),
  });
}

section_schema monitoring_keys() {
  return bind_section("monitoring", &run_config::monitoring, {
      field("listen", &monitoring_section::listen, empty_or_address()),
      field("enabled", &monitoring_section::enabled),
      field("tls_certificate_file", &monitoring_section::tls_certificate_file),
      field("tls_key_file", &monitoring_section::tls_key_file),
  });
}

section_schema ddm_keys() {
  return bind_section("ddm", &run_config::ddm, {
      field("num_experts", &ddm_section::num_experts, within(1, 64)),
      field("fine_clusters", &ddm_section::fine_clusters, within(1, 100000)),
      field("features", &ddm_section::features),
      field("feature_dims", &ddm_section::feature_dims, within(1, 4096)),
      field("features_resolution", &ddm_section::features_resolution, within(0, 4096)),
      field("partition", &ddm_section::partition, one_of({"kmeans", "random"})),
      field("assignments", &ddm_section::assignments),
      field("seed", &ddm_section::seed),
      field("expert", &ddm_section::expert, within(-1, 63)),
      field("kmeans_iterations", &ddm_section::kmeans_iterations, within(1, 100000)),
      field("kmeans_batch", &ddm_section::kmeans_batch, within(1, 10000000)),
      field("router_hidden_size", &ddm_section::router_hidden_size, greater_than(0)),
      field("router_depth", &ddm_section::router_depth, within(1, 64)),
      field("router_heads", &ddm_section::router_heads, at_least(1)),
      field("router_patch_size", &ddm_section::router_patch_size, at_least(1)),
      field("strategy", &ddm_section::strategy, one_of({"top1", "topk", "full"})),
      field("top_k", &ddm_section::top_k, within(1, 64)),
  });
}

section_schema serve_keys() {
  return bind_section("serve", &run_config::serve, {
      field("http", &serve_section::http, empty_or_address()),
      field("listen", &serve_section::listen, empty_or_address()),
      field("experts", &serve_section::experts, empty_or_addresses()),
      field("fall_back", &serve_section::fall_back),
      field("expert_timeout", &serve_section::expert_timeout, greater_than(0)),
      field("max_count", &serve_section::max_count, within(1, 4096)),
      field("max_queue", &serve_section::max_queue, within(1, 1024)),
      field("request_timeout", &serve_section::request_timeout, greater_than(0)),
      field("token_file", &serve_section::token_file),
      field("tls_certificate_file", &serve_section::tls_certificate_file),
      field("tls_key_file", &serve_section::tls_key_file),
  });
}

section_schema debug_keys() {
  return bind_section("debug", &run_config::debug, {
      field("crash_trainer_at_step", &debug_section::crash_trainer_at_step, at_least(0)),
      field("crash_trainer_every_time", &debug_section::crash_trainer_every_time),
      field("out_of_memory_above", &debug_section::out_of_memory_above, at_least(0)),
      field("crash_loader_after_batches", &debug_section::crash_loader_after_batches,
            at_least(0)),
      field("batch_delay_ms", &debug_section::batch_delay_ms, at_least(0)),
      field("die_in_round", &debug_section::die_in_round, at_least(0)),
      field("die_as", &debug_section::die_as, one_of({"sender", "reducer"})),
      field("corrupt_chunks_from", &debug_section::corrupt_chunks_from, at_least(0)),
      field("byzantine", &debug_section::byzantine, one_of(byzantine_behaviours)),
      field("allow_byzantine", &debug_section::allow_byzantine),
  });
}

const std::vector<section_schema>& config_schema() {
  static const std::vector<section_schema> schema = {
      run_keys(),    model_keys(), data_keys(),      train_keys(), sample_keys(),
      eval_keys(),   network_keys(), averaging_keys(), monitoring_keys(), ddm_keys(),
      serve_keys(),  debug_keys(),
  };
  return schema;
}

const section_schema* find_section(std::string_view name) {
  for (const auto& section : config_schema())
    if (section.name == name)
      return &section;
  return nullptr;
}

const key_binding* find_key(std::string_view section_name, std::string_view key) {
  if (const auto* section = find_section(section_name))
    for (const auto& binding : section->keys)
      if (binding.key == key)
        return &binding;
  return nullptr;
}

// --- Where values came from ----------------------------------------------------------------------

/// The place a value was set: a file position or an override, and the key to name in a message
/// (for a value filled by a preset or a source default, the key that caused it).
struct value_origin {
  std::string source;
  int line = 0;
  int column = 0;
  std::string key;
};

/// "section.key" -> where its current value was set; keys left at their struct default are absent.
using origin_map = std::map<std::string, value_origin>;

[[noreturn]] void fail(const value_origin& at, const std::string& problem) {
  throw config_error(at.source, at.line, at.column, at.key, problem);
}

value_origin origin_of(const std::string& source, const toml::source_region& region,
                       std::string key) {
  return {source, static_cast<int>(region.begin.line), static_cast<int>(region.begin.column),
          std::move(key)};
}

void assign(run_config& config, origin_map& origins, const key_binding& binding,
            const toml::node& value, value_origin at) {
  try {
    binding.read(config, value);
  } catch (const bad_value& bad) {
    fail(at, bad.problem);
  }
  origins[binding.full_name()] = std::move(at);
}

// --- Unknown keys --------------------------------------------------------------------------------

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

/// Typos within a few characters of a name; more than that is a different word.
bool close_enough(std::string_view typed, size_t distance) {
  const size_t allowed = std::clamp<size_t>((typed.size() + 1) / 3, 1, 3);
  return distance <= allowed;
}

/// The known key a user most likely meant: a near-miss in the same section, or the same name in
/// another section (a key put under the wrong header).
std::optional<std::string> closest_key(std::string_view section_name, std::string_view key) {
  std::optional<std::string> best;
  size_t best_distance = SIZE_MAX;
  for (const auto& section : config_schema())
    for (const auto& binding : section.keys) {
      size_t distance;
      if (binding.key == key)
        distance = 0; // the right name under the wrong header
      else if (binding.section == section_name)
        distance = edit_distance(key, binding.key);
      else
        continue;
      if (distance < best_distance && close_enough(key, distance)) {
        best_distance = distance;
        best = binding.full_name();
      }
    }
  return best;
}

std::string unknown_key_problem(std::string_view section_name, std::string_view key) {
  std::string problem = section_name.empty() ? "keys belong in a [section]" : "unknown key";
  if (auto guess = closest_key(section_name, key))
    return problem + "; did you mean '" + *guess + "'?";
  return problem + " (config/example.toml lists every key)";
}

std::string unknown_section_problem(std::string_view name) {
  std::optional<std::string> best;
  size_t best_distance = SIZE_MAX;
  std::string known;
  for (const auto& section : config_schema()) {
    known += (known.empty() ? "" : ", ") + section.name;
    const size_t distance = edit_distance(name, section.name);
    if (distance < best_distance && close_enough(name, distance)) {
      best_distance = distance;
      best = section.name;
    }
  }
  if (best)
    return "unknown section; did you mean '" + *best + "'?";
  return "unknown section (known sections: " + known + ")";
}

// --- Reading the file ----------------------------------------------------------------------------

/// One value of the file, matched to its binding, or the reason it has none.
struct file_entry {
  value_origin at;
  const key_binding* binding = nullptr;
  const toml::node* value = nullptr;
  std::string problem;
};

/// Every value in the document, in file order, so that the first mistake in the file is the one
/// reported (toml++ keeps keys sorted by name, not by position).
std::vector<file_entry> entries_in_file_order(const toml::table& document,
                                              const std::string& source) {
  std::vector<file_entry> entries;
  for (const auto& [section_key, section_node] : document) {
    const std::string section_name = printable(section_key.str());
    const auto* section = find_section(section_key.str());
    const auto* table = section_node.as_table();
    if (!table) {
      // A bare key at the top level, or a known section written as a value or an array.
      entries.push_back({origin_of(source, section_key.source(), section_name), nullptr, nullptr,
                         section ? "expected a table ([" + section_name + "]), got " +
                                       describe_node(section_node)
                                 : unknown_key_problem("", section_key.str())});
      continue;
    }
    if (!section) {
      entries.push_back({origin_of(source, section_key.source(), section_name), nullptr, nullptr,
                         unknown_section_problem(section_key.str())});
      continue;
    }
    for (const auto& [key, value] : *table) {
      const std::string full_name = section_name + "." + printable(key.str());
      if (const auto* binding = find_key(section->name, key.str()))
        entries.push_back({origin_of(source, value.source(), full_name), binding, &value, {}});
      else
        entries.push_back({origin_of(source, key.source(), full_name), nullptr, nullptr,
                           unknown_key_problem(section->name, key.str())});
    }
  }
  std::stable_sort(entries.begin(), entries.end(), [](const file_entry& a, const file_entry& b) {
    return std::pair(a.at.line, a.at.column) < std::pair(b.at.line, b.at.column);
  });
  return entries;
}

// --- Overrides -----------------------------------------------------------------------------------

std::string_view trimmed(std::string_view text) {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string_view::npos)
    return {};
  const auto last = text.find_last_not_of(" \t");
  return text.substr(first, last - first + 1);
}

/// Applies one "section.key=value" override.
void apply_override(const std::string& text, run_config& config, origin_map& origins) {
  value_origin at{"--set " + printable(text), 0, 0, ""};
  const auto equals = text.find('=');
  if (equals == std::string::npos)
    fail(at, "expected section.key=value");
  const std::string_view name = trimmed(std::string_view(text).substr(0, equals));
  const std::string_view raw_value = trimmed(std::string_view(text).substr(equals + 1));
  at.key = printable(name);
  const auto dot = name.find('.');
  if (dot == std::string_view::npos)
    fail(at, "expected section.key=value");
  const std::string_view section_name = name.substr(0, dot), key = name.substr(dot + 1);
  const auto* binding = find_key(section_name, key);
  if (!binding) {
    if (!find_section(section_name))
      fail(at, unknown_section_problem(section_name));
    fail(at, unknown_key_problem(section_name, key));
  }
  if (raw_value.find_first_of("\r\n") != std::string_view::npos)
    fail(at, "the value must be on one line");

  // Parse the value as the right-hand side of a TOML key; shell-friendly bare words (heun,
  // /data/images) are not TOML and stand for themselves, and so does any text given to a
  // string-valued key (run.name=123).
  toml::table holder;
  bool parsed = false;
  try {
    holder = toml::parse("v = " + std::string(raw_value), std::string_view("--set"));
    parsed = holder.size() == 1 && holder.contains("v");
  } catch (const toml::parse_error& error) {
    // Text opening like a string, array or table was meant as TOML: say what is wrong with it.
    constexpr std::string_view toml_openers = "\"'[{";
    if (!raw_value.empty() && toml_openers.find(raw_value.front()) != std::string_view::npos)
      fail(at, "not a valid TOML value: " + std::string(error.description()));
  }
  if (!parsed || (binding->takes_text && !holder["v"].is_string())) {
    holder = toml::table{};
    holder.insert("v", std::string(raw_value));
  }
  assign(config, origins, *binding, *holder.get("v"), std::move(at));
}

// --- Defaults that depend on other keys ----------------------------------------------------------

/// Sets `field` from `value` unless the user set `key`; the new value's origin is `cause`.
template <class T>
void fill_unless_set(origin_map& origins, const std::string& key, T& field, T value,
                     const value_origin& cause) {
  if (origins.count(key))
    return;
  field = std::move(value);
  origins[key] = cause;
}

void apply_source_defaults(run_config& config, origin_map& origins) {
  if (config.data.source != "folder")
    return;
  const value_origin cause = origins.at("data.source");
  fill_unless_set(origins, "data.channels", config.data.channels, 3, cause);
  // Stable Diffusion 1.x trained at 512 px; a latent DiT is cheaper at 256 (32 x 32 latents).
  if (!config.model.pretrained.empty())
    fill_unless_set(origins, "data.resolution", config.data.resolution,
                    config.model.latent ? 256 : 512, origins.at("model.pretrained"));
  fill_unless_set(origins, "data.resolution", config.data.resolution, 32, cause);
  fill_unless_set(origins, "model.conditioning", config.model.conditioning,
                  std::string("caption"), cause);
}

void apply_preset(run_config& config, origin_map& origins) {
  const auto preset = find_preset(config.model.preset);
  if (!preset)
    return; // "custom"; other names were rejected when read
  const value_origin cause = origins.at("model.preset");
  fill_unless_set(origins, "model.hidden_size", config.model.hidden_size, preset->hidden_size,
                  cause);
  fill_unless_set(origins, "model.depth", config.model.depth, preset->depth, cause);
  fill_unless_set(origins, "model.num_heads", config.model.num_heads, preset->num_heads, cause);
  fill_unless_set(origins, "model.patch_size", config.model.patch_size, preset->patch_size, cause);
}

// --- Rules across keys ---------------------------------------------------------------------------

struct cross_key_rule {
  /// The keys involved; the message names the first one the user set explicitly (else the first
  /// one set at all, e.g. by a preset).
  std::vector<std::string> keys;
  std::function<std::optional<std::string>(const run_config&)> problem;
};

/// Whether the run fine-tunes a Stable Diffusion UNet (rather than training a DiT).
bool uses_unet(const run_config& c) { return !c.model.pretrained.empty() && !c.model.latent; }
/// SD's VAE maps 8 x 8 pixels to one latent pixel; the UNet halves the latent three times.
constexpr int latent_pixels = 8;
constexpr int sd_pixel_step = 64;

const std::vector<cross_key_rule>& cross_key_rules() {
  static const std::vector<cross_key_rule> rules = {
      {{"model.hidden_size", "model.num_heads"},
       [](const run_config& c) -> std::optional<std::string> {
         if (c.model.hidden_size % c.model.num_heads == 0)
           return std::nullopt;
         return "model.hidden_size (" + render(c.model.hidden_size) +
                ") must be divisible by model.num_heads (" + render(c.model.num_heads) + ")";
       }},
      {{"model.patch_size", "data.resolution"},
       [](const run_config& c) -> std::optional<std::string> {
         if (uses_unet(c))
           return std::nullopt;  // no patches
         if (c.model.latent) {
           if (c.data.resolution % latent_pixels == 0 &&
               (c.data.resolution / latent_pixels) % c.model.patch_size == 0)
             return std::nullopt;
           return "data.resolution / 8 (" + render(c.data.resolution / latent_pixels) +
                  ", the latent size) must be divisible by model.patch_size (" +
                  render(c.model.patch_size) + ") with model.latent";
         }
         if (c.data.resolution % c.model.patch_size == 0)
           return std::nullopt;
         return "data.resolution (" + render(c.data.resolution) +
                ") must be divisible by model.patch_size (" + render(c.model.patch_size) + ")";
       }},
      {{"data.resolution", "model.pretrained"},
       [](const run_config& c) -> std::optional<std::string> {
         if (!uses_unet(c) || c.data.resolution % sd_pixel_step == 0)
           return std::nullopt;
         return "data.resolution must be a multiple of 64 for Stable Diffusion "
                "(model.pretrained), got " +
                render(c.data.resolution);
       }},
      {{"model.latent", "model.pretrained"},
       [](const run_config& c) -> std::optional<std::string> {
         if (!c.model.latent || !c.model.pretrained.empty())
           return std::nullopt;
         return "model.latent needs model.pretrained (the diffusers folder whose VAE and text "
                "encoder it uses)";
       }},
      {{"model.conditioning", "model.latent"},
       [](const run_config& c) -> std::optional<std::string> {
         if (!c.model.latent || c.model.conditioning != "class")
           return std::nullopt;
         return "a latent DiT (model.latent) is conditioned on its images' captions through the "
                "folder's text encoder (\"caption\") or on nothing (\"none\"), not on "
                "classes";
       }},
      {{"run.mode", "model.pretrained"},
       [](const run_config& c) -> std::optional<std::string> {
         if (c.run.mode != "router" || c.model.pretrained.empty())
           return std::nullopt;
         return "run.mode = \"router\" trains a DDM router over pixel DiT experts; it does not "
                "take model.pretrained";
       }},
      {{"train.lora_rank", "model.pretrained"},
       [](const run_config& c) -> std::optional<std::string> {
         if (c.train.lora_rank == 0 || uses_unet(c))
           return std::nullopt;
         return "train.lora_rank > 0 fine-tunes a Stable Diffusion UNet: it needs "
                "model.pretrained, without model.latent";
       }},
      {{"run.trainers", "run.device"},
       [](const run_config& c) -> std::optional<std::string> {
         if (c.run.trainers == 1 || c.run.device == "cpu" || !c.run.devices.empty())
           return std::nullopt;
         return "run.trainers > 1 splits a CPU's threads; for one trainer per GPU list them in "
                "run.devices = [\"cuda:0\", \"cuda:1\"]";
       }},
      {{"run.devices", "run.trainers"},
       [](const run_config& c) -> std::optional<std::string> {
         if (c.run.devices.empty() || c.run.trainers == 1 ||
             c.run.trainers == static_cast<int>(c.run.devices.size()))
           return std::nullopt;
         return "run.devices names one trainer per device; leave run.trainers out (or set it "
                "to their number)";
       }},
      {{"train.precision", "run.device"},
       [](const run_config& c) -> std::optional<std::string> {
         if (c.train.precision != "fp16" || c.run.device != "cpu" || !c.run.devices.empty())
           return std::nullopt;
         return "train.precision = \"fp16\" needs a CUDA device (run.device): LibTorch's CPU "
                "autocast computes in bf16 only; use \"bf16\" on a CPU";
       }},
      {{"data.buckets", "model.pretrained"},
       [](const run_config& c) -> std::optional<std::string> {
         if (!c.data.buckets || uses_unet(c))
           return std::nullopt;
         return "data.buckets needs a Stable Diffusion UNet (model.pretrained without "
                "model.latent): a DiT trains at one size";
       }},
      {{"data.source", "model.pretrained"},
       [](const run_config& c) -> std::optional<std::string> {
         if (c.model.pretrained.empty() || c.data.source == "folder")
           return std::nullopt;
         return "model.pretrained trains on captioned images: data.source must be \"folder\"";
       }},
      {{"data.channels", "model.pretrained"},
       [](const run_config& c) -> std::optional<std::string> {
         if (c.model.pretrained.empty() || c.data.channels == 3)
           return std::nullopt;
         return "data.channels must be 3 with model.pretrained (the VAE encodes RGB), got " +
                render(c.data.channels);
       }},
      {{"sample.sampler", "model.pretrained"},
       [](const run_config& c) -> std::optional<std::string> {
         if (uses_unet(c) || !is_sd_only_sampler(c.sample.sampler))
           return std::nullopt;
         return "sample.sampler \"" + c.sample.sampler +
                "\" is a Stable Diffusion sampler; a DiT samples with \"euler\" or \"heun\"";
       }},
      {{"model.num_classes", "model.conditioning"},
       [](const run_config& c) -> std::optional<std::string> {
         if (c.model.conditioning != "class" || c.model.num_classes >= 1)
           return std::nullopt;
         return "model.num_classes must be >= 1 when model.conditioning is \"class\", got " +
                render(c.model.num_classes);
       }},
      {{"debug.allow_byzantine", "debug.byzantine"},
       [](const run_config& c) -> std::optional<std::string> {
         if (c.debug.allow_byzantine || (c.debug.byzantine.empty() && c.debug.corrupt_chunks_from == 0))
           return std::nullopt;
         return "debug.byzantine and debug.corrupt_chunks_from make this peer attack its swarm "
                "(tests of its defences only); set debug.allow_byzantine = true to mean it";
       }},
      {{"train.target_batch_size", "network.listen"},
       [](const run_config& c) -> std::optional<std::string> {
         if (c.network.listen.empty() || c.train.target_batch_size > 0)
           return std::nullopt;
         return "train.target_batch_size must be > 0 when network.listen is set (the samples the "
                "swarm accumulates per epoch)";
       }},
      {{"network.listen", "network.encryption"},
       [](const run_config& c) -> std::optional<std::string> {
         if (c.network.listen.size() <= 1 || c.network.encryption)
           return std::nullopt;
         return "network.listen lists several addresses, which only the sealed links' gateway "
                "listens on: keep network.encryption = true or list one address";
       }},
      {{"monitoring.tls_certificate_file", "monitoring.tls_key_file"},
       [](const run_config& c) -> std::optional<std::string> {
         return tls_pair_problem("monitoring", c.monitoring.tls_certificate_file,
                                 c.monitoring.tls_key_file);
       }},
      {{"serve.tls_certificate_file", "serve.tls_key_file"},
       [](const run_config& c) -> std::optional<std::string> {
         return tls_pair_problem("serve", c.serve.tls_certificate_file, c.serve.tls_key_file);
       }},
      {{"network.remove_after", "network.suspect_after"},
       [](const run_config& c) -> std::optional<std::string> {
         if (c.network.remove_after > c.network.suspect_after)
           return std::nullopt;
         return "network.remove_after must be greater than network.suspect_after";
       }},
      {{"ddm.fine_clusters", "ddm.num_experts"},
       [](const run_config& c) -> std::optional<std::string> {
         if (c.ddm.fine_clusters >= c.ddm.num_experts)
           return std::nullopt;
         return "ddm.fine_clusters (" + render(c.ddm.fine_clusters) +
                ") must be >= ddm.num_experts (" + render(c.ddm.num_experts) +
                "): the fine clusters are merged into the experts' clusters";
       }},
      {{"ddm.expert", "ddm.num_experts"},
       [](const run_config& c) -> std::optional<std::string> {
         if (c.ddm.expert < c.ddm.num_experts)
           return std::nullopt;
         return "ddm.expert (" + render(c.ddm.expert) + ") must be below ddm.num_experts (" +
                render(c.ddm.num_experts) + ")";
       }},
      {{"ddm.router_hidden_size", "ddm.router_heads"},
       [](const run_config& c) -> std::optional<std::string> {
         if (c.ddm.router_hidden_size % c.ddm.router_heads == 0 &&
             c.ddm.router_hidden_size % 4 == 0)
           return std::nullopt;
         return "ddm.router_hidden_size must be divisible by ddm.router_heads and by 4";
       }},
      {{"ddm.router_patch_size", "data.resolution"},
       [](const run_config& c) -> std::optional<std::string> {
         if (c.data.resolution % c.ddm.router_patch_size == 0)
           return std::nullopt;
         return "data.resolution must be divisible by ddm.router_patch_size";
       }},
      {{"data.channels", "data.source"},
       [](const run_config& c) -> std::optional<std::string> {
         if (c.data.source != "fashion-mnist" || c.data.channels == 1)
           return std::nullopt;
         return "data.channels must be 1 for data.source \"fashion-mnist\" (the images are grey), "
                "got " +
                render(c.data.channels);
       }},
  };
  return rules;
}

/// Rules that depend on the machine the run is read on.
std::vector<cross_key_rule> machine_rules(const machine_limits& machine) {
  if (machine.memory_bytes <= 0)
    return {};
  return {
      {{"data.resolution", "data.batch_size", "model.hidden_size", "model.depth",
        "model.patch_size", "run.trainers"},
       [have = machine.memory_bytes](const run_config& c) -> std::optional<std::string> {
         if (c.run.mode == "router" || uses_unet(c))
           return std::nullopt;  // the router is a fraction of the DiT's size; a UNet not a DiT
         const auto need = estimate_training_memory(c);
         // Every trainer of the peer holds a whole replica and its own batch's activations.
         const auto total = need.total_bytes() * c.run.trainers;
         if (total <= have)
           return std::nullopt;
         const auto replicas =
           c.run.trainers == 1 ? std::string() : render(c.run.trainers) + " trainers, each ";
         return "training this model needs about " + format_bytes(total) + " of memory (" +
                replicas + format_bytes(need.state_bytes) + " for " +
                shortest_number(need.parameters / 1e6) + "M parameters with their gradients, "
                "optimizer state and EMA; " + format_bytes(need.activation_bytes) +
                " of activations for a batch of " + render(c.data.batch_size) + " at " +
                render(c.data.resolution) + "x" + render(c.data.resolution) +
                "), more than the " + format_bytes(have) +
                " this machine has: lower data.batch_size, data.resolution, model.hidden_size "
                "or model.depth (or raise model.patch_size)";
       }},
  };
}

/// The origin to name for a broken rule: its first key the user set explicitly, else the first
/// one set at all (by a preset or a source default), else none.
const value_origin* blamed_origin(const cross_key_rule& rule, const origin_map& origins) {
  const value_origin* fallback = nullptr;
  for (const auto& key : rule.keys) {
    const auto found = origins.find(key);
    if (found == origins.end())
      continue;
    if (found->second.key == key)
      return &found->second;
    if (!fallback)
      fallback = &found->second;
  }
  return fallback;
}

void check_cross_key_rules(const run_config& config, const origin_map& origins,
                           const machine_limits& machine) {
  auto rules = cross_key_rules();
  for (auto& rule : machine_rules(machine))
    rules.push_back(std::move(rule));
  for (const auto& rule : rules) {
    const auto problem = rule.problem(config);
    if (!problem)
      continue;
    if (const auto* blamed = blamed_origin(rule, origins))
      fail(*blamed, *problem);
    fail({config.source_file.string(), 0, 0, rule.keys.front()}, *problem);
  }
}

} // namespace

// --- Public functions ----------------------------------------------------------------------------

machine_limits machine_limits::of_this_machine() {
  return {physical_memory_bytes()};
}

run_config parse_run_config(std::string_view toml_text, const std::filesystem::path& source_name,
                            const std::vector<std::string>& overrides,
                            const machine_limits& machine) {
  const std::string source = source_name.string();
  toml::table document;
  try {
    document = toml::parse(toml_text, std::string_view(source));
  } catch (const toml::parse_error& error) {
    throw config_error(source, static_cast<int>(error.source().begin.line),
                       static_cast<int>(error.source().begin.column), "",
                       std::string(error.description()));
  }

  run_config config;
  config.source_file = source_name;
  origin_map origins;
  for (auto& entry : entries_in_file_order(document, source)) {
    if (!entry.binding)
      fail(entry.at, entry.problem);
    assign(config, origins, *entry.binding, *entry.value, std::move(entry.at));
  }
  for (const auto& text : overrides)
    apply_override(text, config, origins);

  apply_source_defaults(config, origins);
  apply_preset(config, origins);
  check_cross_key_rules(config, origins, machine);
  // run.devices names the trainers: one per device.
  if (!config.run.devices.empty())
    config.run.trainers = static_cast<int>(config.run.devices.size());
  return config;
}

run_config load_run_config(const std::filesystem::path& file,
                           const std::vector<std::string>& overrides,
                           const machine_limits& machine) {
  // A run file is a page of text; anything far larger is a mistake (a data file passed by hand).
  constexpr size_t max_file_bytes = 16u << 20;
  const std::string name = file.string();
  std::error_code error;
  const auto status = std::filesystem::status(file, error);
  if (!std::filesystem::exists(status))
    throw config_error(name, 0, 0, "", "config file not found");
  if (error)
    throw config_error(name, 0, 0, "", "cannot read config file: " + error.message());
  if (std::filesystem::is_directory(status))
    throw config_error(name, 0, 0, "", "is a directory, not a config file");
  std::ifstream in(file, std::ios::binary);
  if (!in)
    throw config_error(name, 0, 0, "", "cannot open config file");
  std::string text;
  char chunk[1 << 16];
  while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
    text.append(chunk, static_cast<size_t>(in.gcount()));
    if (text.size() > max_file_bytes)
      throw config_error(name, 0, 0, "", "config file is larger than 16 MiB");
  }
  if (in.bad())
    throw config_error(name, 0, 0, "", "cannot read config file");
  return parse_run_config(text, file, overrides, machine);
}

std::string describe_config(const run_config& config) {
  std::string out = "# Effective ddactor configuration";
  if (!config.source_file.empty())
    out += ", read from " + toml_string(config.source_file.string());
  out += ".\n";
  for (const auto& section : config_schema()) {
    out += "\n[" + section.name + "]\n";
    for (const auto& binding : section.keys)
      out += binding.key + " = " + binding.render(config) + "\n";
  }
  return out;
}

std::vector<std::string> known_config_keys() {
  std::vector<std::string> keys;
  for (const auto& section : config_schema())
    for (const auto& binding : section.keys)
      keys.push_back(binding.full_name());
  return keys;
}

} // namespace ddactor
