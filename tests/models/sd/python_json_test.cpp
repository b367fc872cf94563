// Python's JSON dialect: NaN, Infinity and -Infinity outside strings become doubles, the same
// words inside strings stay text, anything else that is not JSON is refused, and unreadable files
// are named.
#include "models/sd/python_json.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <fstream>

namespace ddactor {
namespace {

TEST(python_json, non_finite_literals_become_doubles) {
  const auto value =
    parse_python_json(R"({"low": -Infinity, "high": Infinity, "none": NaN, "list": [1, -Infinity]})");
  EXPECT_TRUE(std::isinf(value["low"].get<double>()));
  EXPECT_LT(value["low"].get<double>(), 0);
  EXPECT_TRUE(std::isinf(value["high"].get<double>()));
  EXPECT_GT(value["high"].get<double>(), 0);
  EXPECT_TRUE(std::isnan(value["none"].get<double>()));
  EXPECT_EQ(value["list"][0], 1);
  EXPECT_TRUE(std::isinf(value["list"][1].get<double>()));
}

TEST(python_json, the_same_words_inside_strings_stay_text) {
  const auto value = parse_python_json(R"({"NaN": "Infinity", "quoted": "a \"NaN\" b", "x": null})");
  EXPECT_EQ(value["NaN"], "Infinity");
  EXPECT_EQ(value["quoted"], "a \"NaN\" b");
  EXPECT_TRUE(value["x"].is_null());
}

TEST(python_json, other_non_json_is_refused) {
  EXPECT_THROW(parse_python_json("{\"a\": inf}"), nlohmann::json::parse_error);
  EXPECT_THROW(parse_python_json("{\"a\": 1,}"), nlohmann::json::parse_error);
  EXPECT_THROW(parse_python_json(""), nlohmann::json::parse_error);
}

TEST(python_json, file_errors_name_the_file) {
  const auto missing = std::filesystem::temp_directory_path() / "ddactor_no_such_config.json";
  try {
    read_python_json_file(missing);
    FAIL() << "read a missing file";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(missing.string()), std::string::npos) << e.what();
  }

  const auto broken = std::filesystem::temp_directory_path() /
                      ("ddactor_broken_config_" + std::to_string(::getpid()) + ".json");
  std::ofstream(broken) << "{\"a\": ";
  try {
    read_python_json_file(broken);
    FAIL() << "parsed a truncated file";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(broken.string()), std::string::npos) << e.what();
  }
  std::filesystem::remove(broken);
}

} // namespace
} // namespace ddactor
