// Reading scheduler_config.json with Python's non-finite number literals; see
// scheduler_config.hpp.
#include "models/sd/scheduler_config.hpp"

#include "models/sd/python_json.hpp"

#include <cmath>
#include <fstream>
#include <sstream>

namespace ddactor {

scheduler_config::scheduler_config(nlohmann::json values, std::string source)
  : values_(std::move(values)), source_(std::move(source)) {
  if (!values_.is_object()) throw scheduler_config_error(source_ + ": not a JSON object");
  class_name_ = text("_class_name", "");
}

scheduler_config scheduler_config::parse(std::string_view json_text, std::string source) {
  nlohmann::json values;
  try {
    values = parse_python_json(json_text);
  } catch (const nlohmann::json::parse_error& e) {
    throw scheduler_config_error(source + ": not valid JSON: " + e.what());
  }
  return scheduler_config(std::move(values), std::move(source));
}

scheduler_config scheduler_config::load(const std::filesystem::path& path) {
  const auto file =
      std::filesystem::is_directory(path) ? path / "scheduler_config.json" : path;
  std::ifstream in(file, std::ios::binary);
  if (!std::filesystem::is_regular_file(file) || !in)
    throw scheduler_config_error(file.string() + ": cannot be read (missing or not a file)");
  std::ostringstream content;
  content << in.rdbuf();
  return parse(content.str(), file.string());
}

const nlohmann::json* scheduler_config::find(std::string_view key) const {
  auto it = values_.find(std::string(key));
  if (it == values_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool scheduler_config::is_unset(std::string_view key) const { return find(key) == nullptr; }

void scheduler_config::refuse(std::string_view key, std::string_view why) const {
  const auto* value = find(key);
  throw scheduler_config_error(source_ + ": " + std::string(key) + " = " +
                               (value ? value->dump() : std::string("null")) + ": " +
                               std::string(why));
}

double scheduler_config::number(std::string_view key, double fallback) const {
  const auto* value = find(key);
  if (!value) return fallback;
  if (value->is_number()) return value->get<double>();
  refuse(key, "expected a number");
}

int64_t scheduler_config::integer(std::string_view key, int64_t fallback) const {
  const auto* value = find(key);
  if (!value) return fallback;
  if (!value->is_number_integer()) refuse(key, "expected an integer");
  return value->get<int64_t>();
}

bool scheduler_config::flag(std::string_view key, bool fallback) const {
  const auto* value = find(key);
  if (!value) return fallback;
  if (!value->is_boolean()) refuse(key, "expected true or false");
  return value->get<bool>();
}

std::string scheduler_config::text(std::string_view key, const std::string& fallback) const {
  const auto* value = find(key);
  if (!value) return fallback;
  if (!value->is_string()) refuse(key, "expected a string");
  return value->get<std::string>();
}

} // namespace ddactor
