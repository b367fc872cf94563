#pragma once
// Reading a diffusers `config.json` (the file `save_pretrained` writes beside a model's weights):
// typed fields with the library's defaults, and errors that name the file, the key and the value.
// A config that asks for a feature ddactor's port does not have is refused here, by key, rather
// than built into a model whose weights might even load and then compute something else.
//
// Keys this reader is never asked about (`_diffusers_version`, `_name_or_path`, keys a newer
// diffusers added) are ignored, as diffusers itself ignores them.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ddactor {

/// A config that cannot be read or asks for something unsupported; the message names the file,
/// the key and the value.
class diffusers_config_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Something in a config that does not fit, and the key it concerns.
struct config_problem {
  std::string key;
  std::string reason;
};

/// Throws std::invalid_argument listing the problems ("<what>: key: reason; ..."), if any.
void throw_if_problems(std::string_view what, const std::vector<config_problem>& problems);

/// One config object with the name of the file it came from. Getters return the fallback when
/// the key is absent or null, and throw diffusers_config_error when it holds the wrong type.
class diffusers_config {
public:
  /// Parses the file; throws diffusers_config_error naming the path when it cannot be read or is
  /// not a JSON object.
  static diffusers_config from_file(const std::filesystem::path& path);
  /// `source` names the object in errors (usually the file's path).
  diffusers_config(nlohmann::json object, std::string source);

  const std::string& source() const { return source_; }

  /// Present and not null.
  bool has(std::string_view key) const;
  /// Present and null (where diffusers gives null a meaning of its own).
  bool holds_null(std::string_view key) const;
  int64_t integer(std::string_view key, int64_t fallback) const;
  std::optional<int64_t> optional_integer(std::string_view key) const;
  double number(std::string_view key, double fallback) const;
  bool boolean(std::string_view key, bool fallback) const;
  std::string text(std::string_view key, const std::string& fallback) const;
  std::optional<std::string> optional_text(std::string_view key) const;
  std::vector<int64_t> integers(std::string_view key, const std::vector<int64_t>& fallback) const;
  std::vector<std::string> texts(std::string_view key,
                                 const std::vector<std::string>& fallback) const;
  /// diffusers' `Union[int, Tuple[int]]` fields: one integer for every block, or a list of exactly
  /// `blocks` integers.
  std::vector<int64_t> per_block_integers(std::string_view key, size_t blocks,
                                          int64_t fallback) const;
  /// The same for `Union[bool, Tuple[bool]]` fields.
  std::vector<bool> per_block_booleans(std::string_view key, size_t blocks, bool fallback) const;

  /// Refuses the key unless it is absent, null, or equal to `supported`: for features the port
  /// does not implement. `feature` says what the key would switch on.
  void require_default(std::string_view key, const nlohmann::json& supported,
                       std::string_view feature) const;
  /// Refuses a `_class_name` other than `expected` (its absence is accepted).
  void require_class(std::string_view expected) const;

  /// Throws diffusers_config_error: "<source>: "<key>" = <value>: <reason>".
  [[noreturn]] void refuse(std::string_view key, std::string_view reason) const;
  /// Refuses the first of `problems` (a parsed config's consistency check), if any.
  void refuse_any(const std::vector<config_problem>& problems) const;

private:
  const nlohmann::json* find(std::string_view key) const;

  nlohmann::json object_;
  std::string source_;
};

} // namespace ddactor
