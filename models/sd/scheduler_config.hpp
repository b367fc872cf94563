#pragma once
// A diffusers scheduler_config.json, read as diffusers reads it: the JSON object (Python's json
// module writes -Infinity, Infinity and NaN there, which strict JSON forbids, so they are read
// too), the class it names in "_class_name", and typed access to its keys where a missing key
// takes the default of the class being built. That last point is how pipelines swap schedulers
// (`EulerDiscreteScheduler.from_config(ddim.config)`): the keys of the file, the defaults of the
// new class, and keys the new class does not know are ignored.
//
// Errors name the source and the key: a value of the wrong type, a value ddactor does not
// support (diffusers options with no port here), an unknown class.

#include <nlohmann/json.hpp>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ddactor {

class scheduler_config_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

class scheduler_config {
public:
  // Parses the text of a scheduler_config.json; `source` names it in errors.
  static scheduler_config parse(std::string_view json_text, std::string source);
  // Reads `path`, a scheduler_config.json or a folder holding one.
  static scheduler_config load(const std::filesystem::path& path);

  // "_class_name", such as "DDIMScheduler" ("" if the file has none).
  const std::string& class_name() const { return class_name_; }
  const std::string& source() const { return source_; }
  const nlohmann::json& values() const { return values_; }

  // The value of `key`, or `fallback` when the key is absent or null. Throws
  // scheduler_config_error naming the key for a value of another type. Python's bare
  // -Infinity, Infinity and NaN are numbers (models/sd/python_json).
  double number(std::string_view key, double fallback) const;
  int64_t integer(std::string_view key, int64_t fallback) const;
  bool flag(std::string_view key, bool fallback) const;
  std::string text(std::string_view key, const std::string& fallback) const;
  // Whether the key is absent or null (for options whose only supported value is "none").
  bool is_unset(std::string_view key) const;

  // Throws scheduler_config_error: "<source>: <key> = <value>: <why>".
  [[noreturn]] void refuse(std::string_view key, std::string_view why) const;

private:
  scheduler_config(nlohmann::json values, std::string source);
  const nlohmann::json* find(std::string_view key) const;

  nlohmann::json values_;
  std::string class_name_;
  std::string source_;
};

} // namespace ddactor
