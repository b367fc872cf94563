#pragma once
// Reading a run file (TOML) into a run_config, and writing one back. The loader owns the schema:
// which sections and keys exist, their types, their allowed values, the model presets and the
// defaults that depend on the data source. Anything it does not accept stops the program with a
// config_error whose message reads
//
//   <file>:<line>:<column>: key '<section.key>': <what is wrong>
//
// Where a value comes from, in increasing precedence: the struct defaults in run_config.hpp; the
// defaults of the data source (data.source = "folder": 3 channels, 32x32, caption conditioning);
// the model preset (model.preset = "S/4" fills hidden_size, depth, num_heads, patch_size); keys set
// in the file; `--set section.key=value` overrides, in command-line order.
//
// toml++ stays inside config_loader.cpp: this header is cheap to include.

#include "config/run_config.hpp"

#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ddactor {

/// A run file, or a --set override, that cannot be accepted. what() is the whole message.
class config_error : public std::runtime_error {
public:
  config_error(std::string file, int line, int column, std::string key, std::string problem);

  /// The file, or "--set <override>" for an override.
  const std::string& file() const noexcept { return file_; }
  /// 1-based position of the offending value (of the key, for unknown keys); 0 when the error has
  /// no position in a file (a missing file, an override).
  int line() const noexcept { return line_; }
  int column() const noexcept { return column_; }
  /// "section.key"; a bare section name for a section-level error; empty for syntax errors and
  /// unreadable files.
  const std::string& key() const noexcept { return key_; }
  /// The message without its location prefix.
  const std::string& problem() const noexcept { return problem_; }

private:
  std::string file_;
  int line_;
  int column_;
  std::string key_;
  std::string problem_;
};

/// What the machine offers, for the checks that depend on it (a model too large for its memory).
struct machine_limits {
  /// Bytes of memory; 0: not checked.
  double memory_bytes = 0;
  /// This machine's (config/memory_estimate.hpp).
  static machine_limits of_this_machine();
};

/// Reads, parses and validates `file`, then applies `overrides` ("section.key=value": the value is
/// a TOML value; where it is not valid TOML, or the key takes a string, the text itself is used).
/// Also checks the run against `machine` (by default this one). Throws config_error.
run_config load_run_config(const std::filesystem::path& file,
                           const std::vector<std::string>& overrides = {},
                           const machine_limits& machine = machine_limits::of_this_machine());

/// The same for text already in memory; `source_name` names it in messages and becomes
/// run_config::source_file. Empty text gives the defaults. The machine is not checked unless
/// `machine` says what it has.
run_config parse_run_config(std::string_view toml_text, const std::filesystem::path& source_name,
                            const std::vector<std::string>& overrides = {},
                            const machine_limits& machine = {});

/// The effective configuration as a TOML run file that sets every key; parse_run_config of it
/// gives back an equal config (seeds above 2^63-1 excepted: TOML integers are 64-bit signed).
std::string describe_config(const run_config& config);

/// Every key the schema knows, as "section.key", in schema order.
std::vector<std::string> known_config_keys();

} // namespace ddactor
