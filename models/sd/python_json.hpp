#pragma once
// JSON as Python's `json` module writes it. diffusers and transformers save their configs with
// `json.dumps`, which writes the non-standard literals `NaN`, `Infinity` and `-Infinity` for
// non-finite floats (DPMSolverMultistepScheduler's `"lambda_min_clipped": -Infinity`, for one).
// Strict parsers, nlohmann's included, refuse those files; this reads them, turning the three
// literals into the doubles they stand for. Everything else is plain strict JSON.

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string_view>

namespace ddactor {

/// Parses `text`; throws nlohmann::json::parse_error for anything that is neither JSON nor one
/// of Python's three extra literals.
nlohmann::json parse_python_json(std::string_view text);

/// Reads and parses a file. Throws std::runtime_error naming the file when it cannot be read
/// or is not JSON.
nlohmann::json read_python_json_file(const std::filesystem::path& file);

} // namespace ddactor
