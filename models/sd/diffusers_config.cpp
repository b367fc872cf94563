// Typed reading of diffusers config.json files; see diffusers_config.hpp.
#include "models/sd/diffusers_config.hpp"

#include <fstream>
#include <sstream>

namespace ddactor {

namespace {

// Values in error messages are cut to this many characters: a config may hold long lists.
constexpr size_t quoted_value_chars = 120;

std::string quoted(const nlohmann::json& value) {
  auto text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text.size() > quoted_value_chars)
    text = text.substr(0, quoted_value_chars) + "...";
  return text;
}

} // namespace

void throw_if_problems(std::string_view what, const std::vector<config_problem>& problems) {
  if (problems.empty())
    return;
  std::ostringstream text;
  text << what << ":";
  for (size_t i = 0; i < problems.size(); ++i)
    text << (i ? "; " : " ") << problems[i].key << ": " << problems[i].reason;
  throw std::invalid_argument(text.str());
}

diffusers_config diffusers_config::from_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw diffusers_config_error(path.string() + ": cannot open the config file");
  std::ostringstream text;
  text << in.rdbuf();
  nlohmann::json object;
  try {
    object = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::parse_error& e) {
    throw diffusers_config_error(path.string() + ": not valid JSON: " + e.what());
  }
  if (!object.is_object())
    throw diffusers_config_error(path.string() + ": the config is not a JSON object");
  return diffusers_config(std::move(object), path.string());
}

diffusers_config::diffusers_config(nlohmann::json object, std::string source)
  : object_(std::move(object)), source_(std::move(source)) {
  if (!object_.is_object())
    throw diffusers_config_error(source_ + ": the config is not a JSON object");
}

const nlohmann::json* diffusers_config::find(std::string_view key) const {
  auto it = object_.find(key);
  if (it == object_.end() || it->is_null())
    return nullptr;
  return &*it;
}

void diffusers_config::refuse(std::string_view key, std::string_view reason) const {
  std::string value = "(absent)";
  if (auto it = object_.find(key); it != object_.end())
    value = quoted(*it);
  throw diffusers_config_error(source_ + ": \"" + std::string(key) + "\" = " + value + ": " +
                               std::string(reason));
}

void diffusers_config::refuse_any(const std::vector<config_problem>& problems) const {
  if (!problems.empty())
    refuse(problems.front().key, problems.front().reason);
}

bool diffusers_config::has(std::string_view key) const { return find(key) != nullptr; }

bool diffusers_config::holds_null(std::string_view key) const {
  auto it = object_.find(key);
  return it != object_.end() && it->is_null();
}

int64_t diffusers_config::integer(std::string_view key, int64_t fallback) const {
  return optional_integer(key).value_or(fallback);
}

std::optional<int64_t> diffusers_config::optional_integer(std::string_view key) const {
  const auto* value = find(key);
  if (value == nullptr)
    return std::nullopt;
  if (!value->is_number_integer())
    refuse(key, "expected an integer");
  return value->get<int64_t>();
}

double diffusers_config::number(std::string_view key, double fallback) const {
  const auto* value = find(key);
  if (value == nullptr)
    return fallback;
  if (!value->is_number())
    refuse(key, "expected a number");
  return value->get<double>();
}

bool diffusers_config::boolean(std::string_view key, bool fallback) const {
  const auto* value = find(key);
  if (value == nullptr)
    return fallback;
  if (!value->is_boolean())
    refuse(key, "expected true or false");
  return value->get<bool>();
}

std::string diffusers_config::text(std::string_view key, const std::string& fallback) const {
  return optional_text(key).value_or(fallback);
}

std::optional<std::string> diffusers_config::optional_text(std::string_view key) const {
  const auto* value = find(key);
  if (value == nullptr)
    return std::nullopt;
  if (!value->is_string())
    refuse(key, "expected a string");
  return value->get<std::string>();
}

std::vector<int64_t> diffusers_config::integers(std::string_view key,
                                                const std::vector<int64_t>& fallback) const {
  const auto* value = find(key);
  if (value == nullptr)
    return fallback;
  if (!value->is_array())
    refuse(key, "expected a list of integers");
  std::vector<int64_t> out;
  for (const auto& item : *value) {
    if (!item.is_number_integer())
      refuse(key, "expected a list of integers");
    out.push_back(item.get<int64_t>());
  }
  return out;
}

std::vector<std::string> diffusers_config::texts(std::string_view key,
                                                 const std::vector<std::string>& fallback) const {
  const auto* value = find(key);
  if (value == nullptr)
    return fallback;
  if (!value->is_array())
    refuse(key, "expected a list of strings");
  std::vector<std::string> out;
  for (const auto& item : *value) {
    if (!item.is_string())
      refuse(key, "expected a list of strings");
    out.push_back(item.get<std::string>());
  }
  return out;
}

std::vector<int64_t> diffusers_config::per_block_integers(std::string_view key, size_t blocks,
                                                          int64_t fallback) const {
  const auto* value = find(key);
  if (value == nullptr)
    return std::vector<int64_t>(blocks, fallback);
  if (value->is_number_integer())
    return std::vector<int64_t>(blocks, value->get<int64_t>());
  auto out = integers(key, {});
  if (out.size() != blocks)
    refuse(key, "expected one integer or a list of " + std::to_string(blocks) +
                  " (one per down block)");
  return out;
}

std::vector<bool> diffusers_config::per_block_booleans(std::string_view key, size_t blocks,
                                                      bool fallback) const {
  const auto* value = find(key);
  if (value == nullptr)
    return std::vector<bool>(blocks, fallback);
  if (value->is_boolean())
    return std::vector<bool>(blocks, value->get<bool>());
  if (!value->is_array() || value->size() != blocks)
    refuse(key, "expected true, false or a list of " + std::to_string(blocks) +
                  " (one per down block)");
  std::vector<bool> out;
  for (const auto& item : *value) {
    if (!item.is_boolean())
      refuse(key, "expected true, false or a list of booleans");
    out.push_back(item.get<bool>());
  }
  return out;
}

void diffusers_config::require_default(std::string_view key, const nlohmann::json& supported,
                                       std::string_view feature) const {
  const auto* value = find(key);
  if (value == nullptr || *value == supported)
    return;
  refuse(key, std::string(feature) + " is not supported by ddactor's port (supported: " +
                (supported.is_null() ? std::string("null") : quoted(supported)) + ")");
}

void diffusers_config::require_class(std::string_view expected) const {
  auto name = optional_text("_class_name");
  if (name && *name != expected)
    refuse("_class_name", "this is not a " + std::string(expected) + " config");
}

} // namespace ddactor
