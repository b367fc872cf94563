// Python's JSON dialect read with nlohmann; see python_json.hpp.
#include "models/sd/python_json.hpp"

#include <array>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

namespace ddactor {

namespace {

// Each literal is swapped for a JSON string before parsing and swapped back, as a double, by the
// parser callback. The leading NUL (escaped) keeps the stand-ins apart from any string a config
// really holds.
struct python_literal {
  std::string_view literal;
  std::string_view stand_in; // JSON text of a string
  double value;
};
const std::array<python_literal, 3> python_literals = {{
  {"-Infinity", R"("\u0000python-json:-Infinity")", -std::numeric_limits<double>::infinity()},
  {"Infinity", R"("\u0000python-json:Infinity")", std::numeric_limits<double>::infinity()},
  {"NaN", R"("\u0000python-json:NaN")", std::numeric_limits<double>::quiet_NaN()},
}};

// The text with every literal outside strings replaced by its stand-in. Outside strings, strict
// JSON has no letters but those of true, false and null, so a match is always the literal.
std::string with_stand_ins(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) {
        out += text[i + 1];
        i += 2;
        continue;
      }
      in_string = c != '"';
      ++i;
      continue;
    }
    if (c == '"') {
      in_string = true;
      out += c;
      ++i;
      continue;
    }
    bool replaced = false;
    for (const auto& literal : python_literals)
      if (text.substr(i, literal.literal.size()) == literal.literal) {
        out += literal.stand_in;
        i += literal.literal.size();
        replaced = true;
        break;
      }
    if (!replaced) {
      out += c;
      ++i;
    }
  }
  return out;
}

} // namespace

nlohmann::json parse_python_json(std::string_view text) {
  // The stand-ins as the parser hands them over (unescaped).
  std::array<std::string, python_literals.size()> stand_ins;
  for (size_t i = 0; i < python_literals.size(); ++i)
    stand_ins[i] = nlohmann::json::parse(python_literals[i].stand_in).get<std::string>();

  auto restore_literals = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::value && parsed.is_string())
      for (size_t i = 0; i < python_literals.size(); ++i)
        if (parsed.get_ref<const std::string&>() == stand_ins[i]) {
          parsed = python_literals[i].value;
          break;
        }
    return true;
  };
  return nlohmann::json::parse(with_stand_ins(text), restore_literals);
}

nlohmann::json read_python_json_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in)
    throw std::runtime_error("cannot read " + file.string());
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    throw std::runtime_error("cannot read " + file.string());
  try {
    return parse_python_json(text.str());
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error(file.string() + " is not valid JSON: " + e.what());
  }
}

} // namespace ddactor
