// Tests of the run-file loader: defaults, presets, source-dependent defaults, --set overrides,
// every kind of error with its exact position and key, the documentation in config/example.toml,
// and the describe_config round trip.

#include "config/config_loader.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/temporary_folder.hpp"

namespace ddactor {
namespace {

const std::filesystem::path source_dir = DDACTOR_SOURCE_DIR;

/// The config_error that parsing `text` throws; nothing (and a test failure) when it throws none.
std::optional<config_error> error_of(const std::string& text,
                                     const std::vector<std::string>& overrides = {}) {
  try {
    parse_run_config(text, "run.toml", overrides);
  } catch (const config_error& error) {
    return error;
  }
  ADD_FAILURE() << "no config_error for:\n" << text;
  return std::nullopt;
}

run_config defaults_from(const std::filesystem::path& source) {
  run_config config;
  config.source_file = source;
  return config;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// --- Defaults ------------------------------------------------------------------------------------

TEST(config_loader, empty_file_gives_the_struct_defaults) {
  const run_config config = parse_run_config("", "empty.toml");
  EXPECT_EQ(config, defaults_from("empty.toml"));
  EXPECT_EQ(config.data.source, "fashion-mnist");
  EXPECT_EQ(config.data.resolution, 28);
  EXPECT_EQ(config.data.channels, 1);
  EXPECT_EQ(config.model.conditioning, "class");
  EXPECT_EQ(config.model.num_classes, 10);
  EXPECT_EQ(config.train.lr, 3e-4);
}

TEST(config_loader, run_dir_is_run_dir_or_runs_slash_name) {
  run_config config = parse_run_config("[run]\nname = \"alpha\"\n", "a.toml");
  EXPECT_EQ(config.run_dir(), std::filesystem::path("runs") / "alpha");
  config = parse_run_config("[run]\nname = \"alpha\"\ndir = \"/data/alpha-run\"\n", "a.toml");
  EXPECT_EQ(config.run_dir(), std::filesystem::path("/data/alpha-run"));
}

TEST(config_loader, integers_are_accepted_where_a_float_is_expected) {
  const run_config config = parse_run_config("[train]\nlr = 1\nmax_seconds = 60\n", "a.toml");
  EXPECT_EQ(config.train.lr, 1.0);
  EXPECT_EQ(config.train.max_seconds, 60.0);
}

TEST(config_loader, inline_tables_and_dotted_keys_are_sections_too) {
  const run_config config =
      parse_run_config("train = { lr = 0.5, steps = 7 }\nsample.steps = 3\n", "a.toml");
  EXPECT_EQ(config.train.lr, 0.5);
  EXPECT_EQ(config.train.steps, 7);
  EXPECT_EQ(config.sample.steps, 3);
}

// --- Presets -------------------------------------------------------------------------------------

struct preset_case {
  std::string size;
  int patch_size;
};

class config_loader_preset : public ::testing::TestWithParam<preset_case> {};

TEST_P(config_loader_preset, fills_the_size_keys) {
  const auto& [size, patch] = GetParam();
  const std::string name = size + "/" + std::to_string(patch);
  const run_config config = parse_run_config(
      "[data]\nresolution = 32\n[model]\npreset = \"" + name + "\"\n", "preset.toml");
  // Peebles & Xie, Table 1.
  const std::map<std::string, std::array<int, 3>> dims = {
      {"S", {384, 12, 6}}, {"B", {768, 12, 12}}, {"L", {1024, 24, 16}}, {"XL", {1152, 28, 16}}};
  EXPECT_EQ(config.model.preset, name);
  EXPECT_EQ(config.model.hidden_size, dims.at(size)[0]);
  EXPECT_EQ(config.model.depth, dims.at(size)[1]);
  EXPECT_EQ(config.model.num_heads, dims.at(size)[2]);
  EXPECT_EQ(config.model.patch_size, patch);
}

INSTANTIATE_TEST_SUITE_P(all_sizes, config_loader_preset,
                         ::testing::Values(preset_case{"S", 2}, preset_case{"S", 4},
                                           preset_case{"S", 8}, preset_case{"B", 2},
                                           preset_case{"B", 4}, preset_case{"B", 8},
                                           preset_case{"L", 2}, preset_case{"L", 4},
                                           preset_case{"L", 8}, preset_case{"XL", 2},
                                           preset_case{"XL", 4}, preset_case{"XL", 8}),
                         [](const auto& info) {
                           return info.param.size + "_" + std::to_string(info.param.patch_size);
                         });

TEST(config_loader, keys_set_in_the_file_win_over_the_preset) {
  // Before and after the preset in the file: position does not matter.
  const run_config config = parse_run_config(
      "[model]\ndepth = 6\npreset = \"B/4\"\nnum_heads = 8\n", "preset.toml");
  EXPECT_EQ(config.model.hidden_size, 768);
  EXPECT_EQ(config.model.depth, 6);
  EXPECT_EQ(config.model.num_heads, 8);
  EXPECT_EQ(config.model.patch_size, 4);
}

TEST(config_loader, custom_preset_keeps_the_size_keys) {
  const run_config config =
      parse_run_config("[model]\npreset = \"custom\"\nhidden_size = 64\n", "a.toml");
  EXPECT_EQ(config.model.hidden_size, 64);
  EXPECT_EQ(config.model.depth, 4);
}

class config_loader_bad_preset : public ::testing::TestWithParam<std::string> {};

TEST_P(config_loader_bad_preset, is_rejected_with_the_allowed_names) {
  const auto error = error_of("[model]\npreset = \"" + GetParam() + "\"\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "model.preset");
  EXPECT_EQ(error->line(), 2);
  EXPECT_EQ(error->column(), 10);
  EXPECT_TRUE(contains(error->problem(), "S, B, L or XL followed by /2, /4 or /8"))
      << error->what();
}

INSTANTIATE_TEST_SUITE_P(names, config_loader_bad_preset,
                         ::testing::Values("M/4", "S/3", "S4", "s/4", "S/", "/4", "XL/16", "",
                                           "S/4/2"));

TEST(config_loader, preset_patch_that_does_not_divide_the_resolution_names_the_preset) {
  const auto error = error_of("[model]\npreset = \"S/8\"\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(std::string(error->what()),
            "run.toml:2:10: key 'model.preset': data.resolution (28) must be divisible by "
            "model.patch_size (8)");
}

// --- Source-dependent defaults -------------------------------------------------------------------

TEST(config_loader, folder_source_defaults_to_rgb_32_and_captions) {
  const run_config config =
      parse_run_config("[data]\nsource = \"folder\"\npath = \"/srv/images\"\n", "folder.toml");
  EXPECT_EQ(config.data.channels, 3);
  EXPECT_EQ(config.data.resolution, 32);
  EXPECT_EQ(config.model.conditioning, "caption");
  EXPECT_EQ(config.data.path, std::filesystem::path("/srv/images"));
}

TEST(config_loader, folder_source_keeps_keys_set_in_the_file) {
  const run_config config = parse_run_config(
      "[model]\nconditioning = \"none\"\n[data]\nsource = \"folder\"\nchannels = 1\n"
      "resolution = 64\n",
      "folder.toml");
  EXPECT_EQ(config.data.channels, 1);
  EXPECT_EQ(config.data.resolution, 64);
  EXPECT_EQ(config.model.conditioning, "none");
}

TEST(config_loader, fashion_mnist_keeps_the_struct_defaults) {
  const run_config config =
      parse_run_config("[data]\nsource = \"fashion-mnist\"\n", "fashion.toml");
  EXPECT_EQ(config.data.channels, 1);
  EXPECT_EQ(config.data.resolution, 28);
  EXPECT_EQ(config.model.conditioning, "class");
  EXPECT_EQ(config.model.num_classes, 10);
}

// --- Unknown keys and sections -------------------------------------------------------------------

TEST(config_loader, unknown_key_names_the_closest_known_key) {
  const auto error = error_of("[train]\nlr = 1e-3\nwieght_decay = 0.1\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(std::string(error->what()),
            "run.toml:3:1: key 'train.wieght_decay': unknown key; did you mean "
            "'train.weight_decay'?");
  EXPECT_EQ(error->file(), "run.toml");
  EXPECT_EQ(error->line(), 3);
  EXPECT_EQ(error->column(), 1);
  EXPECT_EQ(error->key(), "train.wieght_decay");
}

TEST(config_loader, short_typo_is_suggested) {
  const auto error = error_of("[train]\n  lt = 1e-3\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->line(), 2);
  EXPECT_EQ(error->column(), 3);
  EXPECT_TRUE(contains(error->what(), "did you mean 'train.lr'?")) << error->what();
}

TEST(config_loader, key_under_the_wrong_section_suggests_its_section) {
  const auto error = error_of("[model]\nbatch_size = 32\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "model.batch_size");
  EXPECT_TRUE(contains(error->what(), "did you mean 'data.batch_size'?")) << error->what();
}

TEST(config_loader, unknown_key_far_from_any_known_key_has_no_suggestion) {
  const auto error = error_of("[run]\nname = \"x\"\nfrobnicate = true\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->line(), 3);
  EXPECT_EQ(error->key(), "run.frobnicate");
  EXPECT_TRUE(contains(error->problem(), "unknown key")) << error->what();
  EXPECT_FALSE(contains(error->problem(), "did you mean")) << error->what();
}

TEST(config_loader, unknown_section_names_the_closest_section) {
  const auto error = error_of("[run]\nname = \"x\"\n\n[trian]\nlr = 1\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(std::string(error->what()),
            "run.toml:4:2: key 'trian': unknown section; did you mean 'train'?");
}

TEST(config_loader, unknown_section_far_from_any_lists_the_sections) {
  const auto error = error_of("[gossip]\nlisten = \"0.0.0.0:1\"\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "gossip");
  EXPECT_TRUE(contains(error->problem(), "known sections: run, model, data, train, sample, eval, "
                                         "network, averaging, monitoring, ddm, serve, debug"))
      << error->what();
}

TEST(config_loader, top_level_key_belongs_in_a_section) {
  const auto error = error_of("steps = 10\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(std::string(error->what()),
            "run.toml:1:1: key 'steps': keys belong in a [section]; did you mean 'train.steps'?");
}

TEST(config_loader, subtable_inside_a_section_is_an_unknown_key) {
  const auto error = error_of("[train.schedule]\nkind = \"cosine\"\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "train.schedule");
  EXPECT_EQ(error->line(), 1);
  EXPECT_EQ(error->column(), 8);
}

TEST(config_loader, section_written_as_a_value_is_a_type_error) {
  const auto error = error_of("train = 5\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(std::string(error->what()),
            "run.toml:1:1: key 'train': expected a table ([train]), got an integer (5)");
  const auto array_error = error_of("[[train]]\nlr = 1\n");
  ASSERT_TRUE(array_error);
  EXPECT_EQ(array_error->key(), "train");
  EXPECT_TRUE(contains(array_error->problem(), "got an array")) << array_error->what();
}

// A model and batch too large for the machine are refused when the file is read, with an
// estimate and what to lower, not after minutes of starting with a bare std::bad_alloc.
TEST(config_loader, a_model_too_large_for_this_machine_is_refused_with_an_estimate) {
  const machine_limits machine{24.0 * (1 << 30)};
  std::optional<config_error> error;
  try {
    parse_run_config("[data]\nresolution = 4096\n", "run.toml", {}, machine);
  } catch (const config_error& e) {
    error = e;
  }
  ASSERT_TRUE(error);
  EXPECT_EQ(error->line(), 2);
  EXPECT_EQ(error->key(), "data.resolution");
  EXPECT_TRUE(contains(error->problem(), "training this model needs about")) << error->what();
  EXPECT_TRUE(contains(error->problem(), "this machine has: lower data.batch_size"))
    << error->what();
  EXPECT_TRUE(contains(error->problem(), "more than the 24 GiB")) << error->what();
  // Without a machine to check against, only the file's own rules apply; the quickstart fits.
  EXPECT_NO_THROW(parse_run_config("[data]\nresolution = 4096\n", "run.toml"));
  EXPECT_NO_THROW(load_run_config(source_dir / "config/quickstart.toml", {}, machine));
}

TEST(config_loader, first_mistake_in_file_order_is_reported) {
  // toml++ sorts keys by name: "model" < "train", but train's mistake comes first in the file.
  const auto error = error_of("[train]\nsteps = -1\n[model]\nfrobnicate = 1\ndepth = 0\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "train.steps");
  EXPECT_EQ(error->line(), 2);
}

// --- Wrong types ---------------------------------------------------------------------------------

struct type_case {
  std::string text;
  std::string key;
  int line;
  int column;
  std::string problem;
};

class config_loader_wrong_type : public ::testing::TestWithParam<type_case> {};

TEST_P(config_loader_wrong_type, names_the_expected_type_and_position) {
  const auto& expected = GetParam();
  const auto error = error_of(expected.text);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), expected.key);
  EXPECT_EQ(error->line(), expected.line);
  EXPECT_EQ(error->column(), expected.column);
  EXPECT_EQ(error->problem(), expected.problem);
}

INSTANTIATE_TEST_SUITE_P(
    cases, config_loader_wrong_type,
    ::testing::Values(
        type_case{"[train]\nlr = \"fast\"\n", "train.lr", 2, 6,
                  "expected a float, got a string (\"fast\")"},
        type_case{"[train]\nsteps = 1.5\n", "train.steps", 2, 9,
                  "expected an integer, got a float (1.5)"},
        type_case{"[train]\nsteps = 1e3\n", "train.steps", 2, 9,
                  "expected an integer, got a float (1000.0)"},
        type_case{"[run]\nname = 3\n", "run.name", 2, 8, "expected a string, got an integer (3)"},
        type_case{"[data]\nbatch_size = [1]\n", "data.batch_size", 2, 14,
                  "expected an integer, got an array"},
        type_case{"[sample]\nsampler = true\n", "sample.sampler", 2, 11,
                  "expected a string, got a boolean (true)"},
        type_case{"[data]\npath = 1979-05-27\n", "data.path", 2, 8,
                  "expected a string, got a date"},
        type_case{"[train]\nlr = { value = 1 }\n", "train.lr", 2, 6,
                  "expected a float, got a table"},
        type_case{"[train]\nlr = inf\n", "train.lr", 2, 6, "must be a finite number, got inf"},
        type_case{"[train]\nlogit_normal_mean = nan\n", "train.logit_normal_mean", 2, 21,
                  "must be a finite number, got nan"},
        type_case{"[run]\nseed = -1\n", "run.seed", 2, 8, "must be >= 0, got -1"},
        type_case{"[data]\nbatch_size = 3000000000\n", "data.batch_size", 2, 14,
                  "must be in [-2147483648, 2147483647], got 3000000000"},
        type_case{"[averaging]\noverlap = \"yes\"\n", "averaging.overlap", 2, 11,
                  "expected true, false or \"auto\", got a string (\"yes\")"},
        type_case{"[averaging]\noverlap = 1\n", "averaging.overlap", 2, 11,
                  "expected true, false or \"auto\", got an integer (1)"}));

// averaging.overlap: a boolean as before, or "auto" (the default: on in DiLoCo mode only).
TEST(config_loader, overlap_takes_a_boolean_or_auto_in_the_file_and_in_overrides) {
  EXPECT_EQ(parse_run_config("", "a.toml").averaging.overlap, overlap_policy::automatic);
  EXPECT_EQ(parse_run_config("[averaging]\noverlap = true\n", "a.toml").averaging.overlap,
            overlap_policy::on);
  EXPECT_EQ(parse_run_config("[averaging]\noverlap = false\n", "a.toml").averaging.overlap,
            overlap_policy::off);
  EXPECT_EQ(parse_run_config("[averaging]\noverlap = \"auto\"\n", "a.toml").averaging.overlap,
            overlap_policy::automatic);
  EXPECT_EQ(parse_run_config("", "a.toml", {"averaging.overlap=true"}).averaging.overlap,
            overlap_policy::on);
  EXPECT_EQ(parse_run_config("", "a.toml", {"averaging.overlap=\"auto\""}).averaging.overlap,
            overlap_policy::automatic);
}

// --- Impossible values ---------------------------------------------------------------------------

struct range_case {
  std::string key;   // section.key
  std::string good;  // a value on the edge of what is allowed
  std::string bad;   // the nearest value that is not
  std::string problem;
};

std::string assignment(const std::string& full_key, const std::string& value) {
  const auto dot = full_key.find('.');
  return "[" + full_key.substr(0, dot) + "]\n" + full_key.substr(dot + 1) + " = " + value + "\n";
}

class config_loader_range : public ::testing::TestWithParam<range_case> {};

TEST_P(config_loader_range, edge_value_passes_and_the_next_fails_at_its_position) {
  const auto& expected = GetParam();
  EXPECT_NO_THROW(parse_run_config(assignment(expected.key, expected.good), "run.toml"))
      << expected.key << " = " << expected.good;
  const auto error = error_of(assignment(expected.key, expected.bad));
  ASSERT_TRUE(error);
  const std::string key_part = expected.key.substr(expected.key.find('.') + 1);
  EXPECT_EQ(error->key(), expected.key);
  EXPECT_EQ(error->line(), 2);
  EXPECT_EQ(error->column(), static_cast<int>(key_part.size()) + 4);
  EXPECT_EQ(error->problem(), expected.problem);
}

INSTANTIATE_TEST_SUITE_P(
    every_rule, config_loader_range,
    ::testing::Values(
        range_case{"run.name", "\"a\"", "\"\"",
                   "must be a plain name of letters, digits, '-', '_' and '.' (up to 128; it becomes the folder runs/<name>; use run.dir for another place), got \"\""},
        range_case{"run.name", "\"a.b-c_1\"", "\"../../evil\"",
                   "must be a plain name of letters, digits, '-', '_' and '.' (up to 128; it becomes the folder runs/<name>; use run.dir for another place), got \"../../evil\""},
        range_case{"run.name", "\"x\"", "\"..\"",
                   "must be a plain name of letters, digits, '-', '_' and '.' (up to 128; it becomes the folder runs/<name>; use run.dir for another place), got \"..\""},
        range_case{"run.mode", "\"router\"", "\"serve\"",
                   "must be one of \"train\", \"router\", got \"serve\""},
        range_case{"run.threads", "0", "-1", "must be in [0, 1024], got -1"},
        range_case{"run.threads", "1024", "100000", "must be in [0, 1024], got 100000"},
        range_case{"run.trainers", "64", "0", "must be in [1, 64], got 0"},
        range_case{"run.trainers", "2", "65", "must be in [1, 64], got 65"},
        range_case{"run.device", "\"cuda:12\"", "\"gpu\"",
                   "must be \"cpu\", \"cuda\" or \"cuda:N\" (N a device index), got \"gpu\""},
        range_case{"run.device", "\"cuda\"", "\"cuda:\"",
                   "must be \"cpu\", \"cuda\" or \"cuda:N\" (N a device index), got \"cuda:\""},
        range_case{"run.device", "\"cpu\"", "\"cuda:-1\"",
                   "must be \"cpu\", \"cuda\" or \"cuda:N\" (N a device index), got \"cuda:-1\""},
        range_case{"model.hidden_size", "4", "0", "must be in [1, 16384], got 0"},
        range_case{"model.hidden_size", "4", "1000000", "must be in [1, 16384], got 1000000"},
        range_case{"model.depth", "1", "0", "must be in [1, 256], got 0"},
        range_case{"model.num_heads", "1", "0", "must be in [1, 256], got 0"},
        range_case{"model.patch_size", "1", "0", "must be in [1, 64], got 0"},
        range_case{"model.mlp_ratio", "0.01", "0", "must be in (0, 16], got 0.0"},
        range_case{"model.conditioning", "\"none\"", "\"text\"",
                   "must be one of \"class\", \"caption\", \"none\", got \"text\""},
        range_case{"model.num_classes", "1", "-1", "must be >= 0, got -1"},
        range_case{"model.condition_dropout", "0", "1", "must be in [0, 1), got 1.0"},
        range_case{"model.condition_dropout", "0.99", "-0.01", "must be in [0, 1), got -0.01"},
        range_case{"model.text_layers", "0", "-1", "must be >= 0, got -1"},
        range_case{"model.text_max_bytes", "4096", "4097", "must be in [1, 4096], got 4097"},
        range_case{"model.text_max_bytes", "1", "0", "must be in [1, 4096], got 0"},
        range_case{"data.source", "\"folder\"", "\"imagenet\"",
                   "must be one of \"fashion-mnist\", \"folder\", got \"imagenet\""},
        range_case{"data.resolution", "4", "3", "must be in [4, 4096], got 3"},
        range_case{"data.resolution", "4096", "4097", "must be in [4, 4096], got 4097"},
        range_case{"data.channels", "1", "2", "must be 1 (grey) or 3 (RGB), got 2"},
        range_case{"data.batch_size", "1", "0", "must be in [1, 65536], got 0"},
        range_case{"data.batch_size", "1024", "2000000000",
                   "must be in [1, 65536], got 2000000000"},
        range_case{"data.prefetch", "1", "0", "must be in [1, 1024], got 0"},
        range_case{"data.holdout_fraction", "0.5", "0.51", "must be in [0, 0.5], got 0.51"},
        range_case{"data.holdout_fraction", "0", "-0.1", "must be in [0, 0.5], got -0.1"},
        range_case{"train.steps", "0", "-1", "must be >= 0, got -1"},
        range_case{"train.max_seconds", "0", "-0.5", "must be >= 0, got -0.5"},
        range_case{"train.lr", "1e-9", "0", "must be in (0, 1], got 0.0"},
        range_case{"train.lr", "1", "1e300", "must be in (0, 1], got 1e+300"},
        range_case{"train.weight_decay", "0", "-1", "must be >= 0, got -1.0"},
        range_case{"train.adam_beta1", "0", "1", "must be in [0, 1), got 1.0"},
        range_case{"train.adam_beta2", "0.9999", "1.0", "must be in [0, 1), got 1.0"},
        range_case{"train.adam_eps", "1e-12", "0", "must be > 0, got 0.0"},
        range_case{"train.warmup_steps", "0", "-1", "must be >= 0, got -1"},
        range_case{"train.grad_clip", "0", "-1", "must be >= 0, got -1.0"},
        range_case{"train.ema_decay", "0.9999", "1", "must be in [0, 1), got 1.0"},
        range_case{"train.logit_normal_std", "0.1", "0", "must be > 0, got 0.0"},
        range_case{"train.log_every", "1", "0", "must be >= 1, got 0"},
        range_case{"train.checkpoint_every", "1", "0", "must be >= 1, got 0"},
        range_case{"train.keep_checkpoints", "1", "0", "must be >= 1, got 0"},
        range_case{"train.sample_every", "0", "-1", "must be >= 0, got -1"},
        range_case{"train.lora_rank", "0", "-1", "must be in [0, 1024], got -1"},
        range_case{"train.lora_alpha", "0.5", "0", "must be > 0, got 0.0"},
        range_case{"train.offset_noise", "1", "1.5", "must be in [0, 1], got 1.5"},
        range_case{"averaging.bandwidth", "0", "-0.5", "must be in [0, 1000000], got -0.5"},
        range_case{"averaging.audit_probability", "1", "1.5", "must be in [0, 1], got 1.5"},
        range_case{"network.ban_time", "60", "0", "must be in [1, 10000000], got 0.0"},
        range_case{"train.min_snr_gamma", "0", "-1", "must be >= 0, got -1.0"},
        range_case{"train.caption_dropout", "0.99", "1", "must be in [0, 1), got 1.0"},
        range_case{"sample.steps", "1", "0", "must be >= 1, got 0"},
        range_case{"sample.sampler", "\"euler\"", "\"rk4\"",
                   "must be one of \"euler\", \"heun\", \"ddim\", \"dpm++2m\", got \"rk4\""},
        range_case{"sample.cfg_scale", "0", "-1", "must be >= 0, got -1.0"},
        range_case{"sample.per_class", "1", "0", "must be >= 1, got 0"},
        range_case{"eval.num_samples", "1", "0", "must be >= 1, got 0"},
        range_case{"eval.steps", "1", "0", "must be >= 1, got 0"},
        range_case{"eval.sampler", "\"heun\"", "\"ddim\"",
                   "must be one of \"euler\", \"heun\", got \"ddim\""},
        range_case{"eval.cfg_scale", "0", "-0.5", "must be >= 0, got -0.5"},
        range_case{"eval.batch_size", "1", "0", "must be >= 1, got 0"},
        range_case{"debug.crash_trainer_at_step", "0", "-1", "must be >= 0, got -1"},
        range_case{"debug.crash_loader_after_batches", "0", "-1", "must be >= 0, got -1"}),
    [](const auto& info) {
      std::string name = info.param.key + "_" + std::to_string(info.index);
      std::replace(name.begin(), name.end(), '.', '_');
      return name;
    });

// --- Rules across keys ---------------------------------------------------------------------------

TEST(config_loader, hidden_size_not_divisible_by_heads) {
  const auto error = error_of("[model]\nhidden_size = 130\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(std::string(error->what()),
            "run.toml:2:15: key 'model.hidden_size': model.hidden_size (130) must be divisible by "
            "model.num_heads (4)");
}

TEST(config_loader, cross_key_error_names_the_key_set_in_the_file_not_the_preset) {
  const auto error = error_of("[model]\npreset = \"S/4\"\nnum_heads = 5\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "model.num_heads");
  EXPECT_EQ(error->line(), 3);
  EXPECT_EQ(error->column(), 13);
  EXPECT_EQ(error->problem(), "model.hidden_size (384) must be divisible by model.num_heads (5)");
}

TEST(config_loader, patch_size_must_divide_the_resolution) {
  auto error = error_of("[model]\npatch_size = 3\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(std::string(error->what()),
            "run.toml:2:14: key 'model.patch_size': data.resolution (28) must be divisible by "
            "model.patch_size (3)");
  // Only the resolution was set: it is the one named.
  error = error_of("[data]\nresolution = 30\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "data.resolution");
  EXPECT_EQ(error->column(), 14);
  // A folder's default resolution (32) with a patch size that does not divide it.
  error = error_of("[data]\nsource = \"folder\"\n[model]\npatch_size = 3\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "model.patch_size");
  EXPECT_EQ(error->problem(), "data.resolution (32) must be divisible by model.patch_size (3)");
}

TEST(config_loader, several_trainers_train_any_model_on_the_cpu_alone_or_in_any_swarm_mode) {
  EXPECT_EQ(parse_run_config("[run]\ntrainers = 3\n", "run.toml").run.trainers, 3);
  for (const std::string mode : {"gradients", "parameters", "diloco"})
    EXPECT_EQ(parse_run_config("[run]\ntrainers = 2\n[network]\nlisten = \"127.0.0.1:0\"\n"
                               "[train]\ntarget_batch_size = 64\naveraging = \"" +
                                 mode + "\"\n",
                               "run.toml")
                .run.trainers,
              2)
      << mode;
  EXPECT_EQ(
    parse_run_config("[run]\ntrainers = 2\nmode = \"router\"\n", "run.toml").run.trainers, 2);
  auto error = error_of("[run]\ntrainers = 2\ndevice = \"cuda:0\"\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "run.trainers");
  EXPECT_EQ(
    parse_run_config("[run]\ntrainers = 1\n[network]\nlisten = \"127.0.0.1:7000\"\n"
                     "[train]\ntarget_batch_size = 64\n",
                     "run.toml")
      .run.trainers,
    1);
}

// run.devices: one trainer per GPU; the list names the trainers. A CPU in it, a device twice,
// or a run.trainers that disagrees is refused with the key; several trainers on one GPU point
// to run.devices.
TEST(config_loader, run_devices_name_one_trainer_per_gpu) {
  const auto config = parse_run_config("[run]\ndevices = [\"cuda:0\", \"cuda:3\"]\n", "run.toml");
  EXPECT_EQ(config.run.trainers, 2);
  EXPECT_EQ(config.run.device_of_rank(0), "cuda:0");
  EXPECT_EQ(config.run.device_of_rank(1), "cuda:3");
  EXPECT_EQ(config.run.device_of_rank(2), "cpu");  // past the list (an attached trainer)
  EXPECT_EQ(parse_run_config("[run]\ndevices = [\"cuda:1\"]\ntrainers = 1\n", "run.toml")
              .run.device_of_rank(0),
            "cuda:1");
  for (const std::string list : {"[\"cpu\", \"cuda:0\"]", "[\"cuda:0\", \"cuda:0\"]",
                                 "[\"cuda\"]", "[\"gpu1\"]"}) {
    const auto error = error_of("[run]\ndevices = " + list + "\n");
    ASSERT_TRUE(error) << list;
    EXPECT_EQ(error->key(), "run.devices") << list;
  }
  const auto mismatch = error_of("[run]\ndevices = [\"cuda:0\", \"cuda:1\"]\ntrainers = 3\n");
  ASSERT_TRUE(mismatch);
  EXPECT_NE(std::string(mismatch->what()).find("one trainer per device"), std::string::npos)
    << mismatch->what();
  const auto one_gpu = error_of("[run]\ntrainers = 2\ndevice = \"cuda:0\"\n");
  ASSERT_TRUE(one_gpu);
  EXPECT_NE(std::string(one_gpu->what()).find("run.devices"), std::string::npos)
    << one_gpu->what();
  // fp16 on listed GPUs is no CPU run.
  EXPECT_NO_THROW(parse_run_config(
    "[run]\ndevices = [\"cuda:0\"]\n[train]\nprecision = \"fp16\"\n", "run.toml"));
}

TEST(config_loader, class_conditioning_needs_classes) {
  const auto error = error_of("[model]\nnum_classes = 0\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(std::string(error->what()),
            "run.toml:2:15: key 'model.num_classes': model.num_classes must be >= 1 when "
            "model.conditioning is \"class\", got 0");
  EXPECT_NO_THROW(
      parse_run_config("[model]\nnum_classes = 0\nconditioning = \"none\"\n", "run.toml"));
}

TEST(config_loader, a_latent_dit_takes_captions_or_nothing_and_no_router) {
  const std::string latent =
      "[model]\npretrained = \"/models/sd\"\nlatent = true\n[data]\nsource = \"folder\"\n";
  // A folder defaults to caption conditioning, 256 px for a latent DiT.
  const auto config = parse_run_config(latent, "run.toml");
  EXPECT_EQ(config.model.conditioning, "caption");
  EXPECT_EQ(config.data.resolution, 256);
  auto error = error_of("[model]\npretrained = \"/models/sd\"\nlatent = true\nconditioning = "
                   "\"class\"\n[data]\nsource = \"folder\"\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "model.conditioning");
  EXPECT_EQ(error->line(), 4);
  EXPECT_TRUE(contains(error->problem(), "not on classes")) << error->what();
  error = error_of(latent + "[run]\nmode = \"router\"\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "run.mode");
  EXPECT_TRUE(contains(error->problem(), "does not take model.pretrained")) << error->what();
}

TEST(config_loader, fp16_needs_a_cuda_device) {
  const auto error = error_of("[train]\nprecision = \"fp16\"\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(std::string(error->what()),
            "run.toml:2:13: key 'train.precision': train.precision = \"fp16\" needs a CUDA device "
            "(run.device): LibTorch's CPU autocast computes in bf16 only; use \"bf16\" on a CPU");
  EXPECT_NO_THROW(parse_run_config("[train]\nprecision = \"bf16\"\n", "run.toml"));
  EXPECT_NO_THROW(
    parse_run_config("[run]\ndevice = \"cuda:1\"\n[train]\nprecision = \"fp16\"\n", "run.toml"));
}

TEST(config_loader, fashion_mnist_is_grey) {
  const auto error = error_of("[data]\nchannels = 3\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "data.channels");
  EXPECT_EQ(error->line(), 2);
  EXPECT_EQ(error->column(), 12);
  EXPECT_TRUE(contains(error->problem(), "must be 1 for data.source \"fashion-mnist\""))
      << error->what();
  EXPECT_NO_THROW(parse_run_config("[data]\nsource = \"folder\"\nchannels = 3\n", "run.toml"));
}

// --- Syntax errors and files ---------------------------------------------------------------------

TEST(config_loader, syntax_error_reports_the_parser_position) {
  const auto error = error_of("[train]\nlr = 0.1\nsteps = \n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->file(), "run.toml");
  EXPECT_EQ(error->line(), 3);
  EXPECT_EQ(error->column(), 9);
  EXPECT_EQ(error->key(), "");
  EXPECT_EQ(std::string(error->what()).rfind("run.toml:3:9: ", 0), 0u) << error->what();
  EXPECT_TRUE(contains(error->problem(), "expected value")) << error->what();
}

TEST(config_loader, duplicate_key_is_a_syntax_error) {
  const auto error = error_of("[train]\nlr = 0.1\nlr = 0.2\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->line(), 3);
  EXPECT_TRUE(contains(error->problem(), "redefine")) << error->what();
}

TEST(config_loader, missing_file_names_the_path) {
  const std::filesystem::path missing = "/nonexistent/ddactor/run.toml";
  try {
    load_run_config(missing);
    FAIL() << "no error";
  } catch (const config_error& error) {
    EXPECT_EQ(error.file(), missing.string());
    EXPECT_EQ(error.line(), 0);
    EXPECT_EQ(std::string(error.what()), "/nonexistent/ddactor/run.toml: config file not found");
  }
}

TEST(config_loader, directory_is_not_a_config_file) {
  const auto dir = std::filesystem::temp_directory_path();
  try {
    load_run_config(dir);
    FAIL() << "no error";
  } catch (const config_error& error) {
    EXPECT_EQ(error.file(), dir.string());
    EXPECT_TRUE(contains(error.what(), "is a directory")) << error.what();
  }
}

class config_loader_file : public ::testing::Test {
protected:
  std::filesystem::path write(const std::string& name, const std::string& text) {
    const auto path = dir_ / name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

  testing::temporary_folder dir_{"ddactor_config_test"};
};

TEST_F(config_loader_file, loads_a_file_and_names_it_in_errors) {
  const auto good = write("good.toml", "[train]\nsteps = 12\n");
  const run_config config = load_run_config(good);
  EXPECT_EQ(config.source_file, good);
  EXPECT_EQ(config.train.steps, 12);

  const auto bad = write("bad.toml", "[train]\nsteps = -12\n");
  try {
    load_run_config(bad);
    FAIL() << "no error";
  } catch (const config_error& error) {
    EXPECT_EQ(std::string(error.what()),
              bad.string() + ":2:9: key 'train.steps': must be >= 0, got -12");
  }
}

TEST_F(config_loader_file, oversized_file_is_rejected_before_parsing) {
  const auto huge = write("huge.toml", std::string((16u << 20) + 1, '\n'));
  try {
    load_run_config(huge);
    FAIL() << "no error";
  } catch (const config_error& error) {
    EXPECT_EQ(std::string(error.what()), huge.string() + ": config file is larger than 16 MiB");
  }
}

TEST_F(config_loader_file, empty_file_gives_defaults) {
  const auto empty = write("empty.toml", "");
  EXPECT_EQ(load_run_config(empty), defaults_from(empty));
}

// --- Overrides -----------------------------------------------------------------------------------

TEST(config_loader, overrides_set_typed_values) {
  const run_config config = parse_run_config(
      "[train]\nlr = 0.1\nsteps = 5\n", "run.toml",
      {"train.steps=10", "train.lr=1e-3", "sample.sampler=euler", "network.swarm_id=\"x y\"",
       "run.dir=/tmp/some dir/run", "eval.cache_dir = /cache ", "model.mlp_ratio=2",
       "sample.seed=99"});
  EXPECT_EQ(config.train.steps, 10);
  EXPECT_EQ(config.train.lr, 1e-3);
  EXPECT_EQ(config.sample.sampler, "euler");
  EXPECT_EQ(config.network.swarm_id, "x y");
  EXPECT_EQ(config.run.dir, std::filesystem::path("/tmp/some dir/run"));
  EXPECT_EQ(config.eval.cache_dir, std::filesystem::path("/cache"));
  EXPECT_EQ(config.model.mlp_ratio, 2.0);
  EXPECT_EQ(config.sample.seed, 99u);
}

TEST(config_loader, string_keys_take_the_override_text_as_is) {
  const run_config config =
      parse_run_config("", "run.toml", {"run.name=123", "run.dir=2024-01-01", "run.name=true"});
  EXPECT_EQ(config.run.name, "true");
  EXPECT_EQ(config.run.dir, std::filesystem::path("2024-01-01"));
}

TEST(config_loader, later_overrides_win) {
  const run_config config =
      parse_run_config("", "run.toml", {"train.steps=10", "train.steps=20"});
  EXPECT_EQ(config.train.steps, 20);
}

TEST(config_loader, override_preset_keeps_keys_set_in_the_file) {
  const run_config config =
      parse_run_config("[model]\ndepth = 6\n", "run.toml", {"model.preset=B/4"});
  EXPECT_EQ(config.model.hidden_size, 768);
  EXPECT_EQ(config.model.depth, 6);
}

TEST(config_loader, override_source_brings_the_folder_defaults) {
  const run_config config = parse_run_config("", "run.toml", {"data.source=folder"});
  EXPECT_EQ(config.data.channels, 3);
  EXPECT_EQ(config.data.resolution, 32);
  EXPECT_EQ(config.model.conditioning, "caption");
}

struct override_case {
  std::string override_text;
  std::string message;  // the whole what()
};

class config_loader_bad_override : public ::testing::TestWithParam<override_case> {};

TEST_P(config_loader_bad_override, names_the_override) {
  const auto& expected = GetParam();
  const auto error = error_of("[train]\nsteps = 5\n", {expected.override_text});
  ASSERT_TRUE(error);
  EXPECT_EQ(error->file(), "--set " + expected.override_text);
  EXPECT_EQ(error->line(), 0);
  EXPECT_EQ(std::string(error->what()), expected.message);
}

INSTANTIATE_TEST_SUITE_P(
    cases, config_loader_bad_override,
    ::testing::Values(
        override_case{"train.lr=abc",
                      "--set train.lr=abc: key 'train.lr': expected a float, got a string "
                      "(\"abc\")"},
        override_case{"train.steps=-5", "--set train.steps=-5: key 'train.steps': must be >= 0, "
                                        "got -5"},
        override_case{"train.steps=2.5", "--set train.steps=2.5: key 'train.steps': expected an "
                                         "integer, got a float (2.5)"},
        override_case{"train.lrr=1",
                      "--set train.lrr=1: key 'train.lrr': unknown key; did you mean 'train.lr'?"},
        override_case{"trian.lr=1",
                      "--set trian.lr=1: key 'trian.lr': unknown section; did you mean 'train'?"},
        override_case{"train.lr", "--set train.lr: expected section.key=value"},
        override_case{"lr=1", "--set lr=1: key 'lr': expected section.key=value"},
        override_case{"sample.sampler=rk4",
                      "--set sample.sampler=rk4: key 'sample.sampler': must be one of \"euler\", "
                      "\"heun\", \"ddim\", \"dpm++2m\", got \"rk4\""},
        override_case{"model.patch_size=3",
                      "--set model.patch_size=3: key 'model.patch_size': data.resolution (28) "
                      "must be divisible by model.patch_size (3)"}));

TEST(config_loader, override_that_looks_like_toml_must_be_valid_toml) {
  const auto error = error_of("", {"run.name=\"unterminated"});
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "run.name");
  EXPECT_TRUE(contains(error->problem(), "not a valid TOML value")) << error->what();
}

TEST(config_loader, override_value_must_be_one_line) {
  const auto error = error_of("", {"train.steps=1\nlr = 3"});
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "train.steps");
  EXPECT_TRUE(contains(error->problem(), "one line")) << error->what();
}

// --- The documented example and the quick start --------------------------------------------------

/// "section.key" of every assignment in a simple TOML file (one `key = value` a line), in order.
std::vector<std::string> keys_assigned_in(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::vector<std::string> keys;
  std::string line, section;
  while (std::getline(in, line)) {
    const auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#')
      continue;
    if (line[first] == '[') {
      section = line.substr(first + 1, line.find(']') - first - 1);
      continue;
    }
    std::string key = line.substr(first, line.find('=') - first);
    key.erase(key.find_last_not_of(" \t") + 1);
    keys.push_back(section + "." + key);
  }
  return keys;
}

TEST(config_loader, example_toml_sets_every_known_key_to_its_default) {
  const auto example = source_dir / "config" / "example.toml";
  const run_config config = load_run_config(example);
  EXPECT_EQ(config, defaults_from(example));

  const auto assigned = keys_assigned_in(example);
  const auto known = known_config_keys();
  EXPECT_EQ(std::set<std::string>(assigned.begin(), assigned.end()).size(), assigned.size())
      << "a key is set twice";
  for (const auto& key : known)
    EXPECT_NE(std::find(assigned.begin(), assigned.end(), key), assigned.end())
        << "config/example.toml does not document " << key;
  EXPECT_EQ(assigned, known) << "example.toml should follow the schema's order";
}

TEST(config_loader, known_keys_are_unique_and_qualified) {
  const auto known = known_config_keys();
  EXPECT_EQ(known.size(), 159u);
  EXPECT_EQ(std::set<std::string>(known.begin(), known.end()).size(), known.size());
  for (const auto& key : known)
    EXPECT_EQ(std::count(key.begin(), key.end(), '.'), 1) << key;
  EXPECT_EQ(known.front(), "run.name");
}

TEST(config_loader, swarm_keys_are_checked) {
  auto error = error_of("[network]\nlisten = \"0.0.0.0:7000\"\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "network.listen");
  EXPECT_TRUE(contains(error->problem(), "train.target_batch_size must be > 0")) << error->what();
  error = error_of("[network]\ninitial_peers = [\"10.0.0.1:7000\", \"nohost\"]\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "network.initial_peers");
  EXPECT_EQ(error->line(), 2);
  error = error_of("[averaging]\ngroup_size = 65\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "averaging.group_size");
  error = error_of("[train]\naveraging = \"weights\"\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "train.averaging");
  const run_config ok = parse_run_config(
      "[network]\nlisten = \"127.0.0.1:0\"\ninitial_peers = [\"[::1]:7000\", \"a.b:1\"]\n"
      "[train]\ntarget_batch_size = 256\n",
      "run.toml");
  EXPECT_EQ(ok.network.initial_peers.size(), 2u);
  EXPECT_EQ(ok.train.target_batch_size, 256);
}

// network.listen and network.announce take one address or a list (IPv4 and IPv6); listen
// addresses share one port, and several need the gateway.
TEST(config_loader, listen_and_announce_take_one_address_or_several) {
  const std::string swarm = "[train]\ntarget_batch_size = 64\n[network]\n";
  auto one = parse_run_config(swarm + "listen = \"0.0.0.0:7000\"\nannounce = \"1.2.3.4:7000\"\n",
                              "run.toml");
  EXPECT_EQ(one.network.listen, std::vector<std::string>{"0.0.0.0:7000"});
  EXPECT_EQ(one.network.announce, std::vector<std::string>{"1.2.3.4:7000"});
  auto none = parse_run_config(swarm + "listen = \"\"\n", "run.toml");
  EXPECT_TRUE(none.network.listen.empty());
  auto both = parse_run_config(
    swarm + "listen = [\"0.0.0.0:7000\", \"[::]:7000\"]\n"
            "announce = [\"1.2.3.4:7100\", \"[2001:db8::4]:7000\"]\n",
    "run.toml");
  EXPECT_EQ(both.network.listen, (std::vector<std::string>{"0.0.0.0:7000", "[::]:7000"}));
  EXPECT_EQ(both.network.announce.size(), 2u);
  // The effective config writes lists, and reads back the same.
  EXPECT_EQ(parse_run_config(describe_config(both), "effective.toml").network, both.network);

  auto error = error_of(swarm + "listen = [\"0.0.0.0:7000\", \"[::]:7001\"]\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "network.listen");
  EXPECT_EQ(error->line(), 4);
  EXPECT_TRUE(contains(error->problem(), "one port")) << error->what();
  error = error_of(swarm + "listen = [\"a:1\", \"b:1\", \"c:1\", \"d:1\", \"e:1\"]\n");
  ASSERT_TRUE(error);
  EXPECT_TRUE(contains(error->problem(), "at most 4")) << error->what();
  error = error_of(swarm + "announce = [\"1.2.3.4:7000\", \"::1\"]\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "network.announce");
  error = error_of(swarm + "listen = [\"0.0.0.0:7000\", \"[::]:7000\"]\nencryption = false\n");
  ASSERT_TRUE(error);
  EXPECT_TRUE(contains(error->problem(), "network.encryption = true")) << error->what();
  error = error_of(swarm + "listen = 7000\n");
  ASSERT_TRUE(error);
  EXPECT_TRUE(contains(error->problem(), "a string or an array of strings")) << error->what();
}

TEST(config_loader, ddm_fine_clusters_must_cover_the_experts) {
  const auto error = error_of("[ddm]\nnum_experts = 8\nfine_clusters = 4\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(std::string(error->what()),
            "run.toml:3:17: key 'ddm.fine_clusters': ddm.fine_clusters (4) must be >= "
            "ddm.num_experts (8): the fine clusters are merged into the experts' clusters");
  EXPECT_NO_THROW(parse_run_config("[ddm]\nnum_experts = 8\nfine_clusters = 8\n", "run.toml"));
}

TEST(config_loader, quickstart_toml_loads) {
  const run_config config = load_run_config(source_dir / "config" / "quickstart.toml");
  EXPECT_EQ(config.run.name, "quickstart");
  EXPECT_EQ(config.data.source, "fashion-mnist");
  EXPECT_EQ(config.train.steps, 1500);
  EXPECT_EQ(config.model.preset, "custom");
  EXPECT_EQ(config.model.hidden_size, 128);
  EXPECT_EQ(config.model.depth, 4);
  EXPECT_EQ(config.model.num_heads, 4);
  EXPECT_EQ(config.model.patch_size, 4);
}

// --- describe_config -----------------------------------------------------------------------------

void expect_round_trip(const run_config& config) {
  const std::string text = describe_config(config);
  run_config parsed;
  ASSERT_NO_THROW(parsed = parse_run_config(text, config.source_file)) << text;
  EXPECT_EQ(parsed, config) << text;
  EXPECT_EQ(describe_config(parsed), text);
}

TEST(config_loader, describe_config_round_trips_the_defaults) {
  expect_round_trip(defaults_from("defaults.toml"));
  const std::string text = describe_config(defaults_from("defaults.toml"));
  EXPECT_TRUE(contains(text, "\n[train]\nsteps = 2000\n")) << text;
  EXPECT_TRUE(contains(text, "\nlr = 0.0003\n")) << text;
  EXPECT_TRUE(contains(text, "\nmlp_ratio = 4.0\n")) << text;
  EXPECT_TRUE(contains(text, "\npath = \"/usr/share/datasets/fashion-mnist\"\n")) << text;
}

TEST(config_loader, describe_config_round_trips_every_key_changed) {
  run_config config;
  config.source_file = "/tmp/odd \"name\"\n.toml";
  config.run = {"odd.name_1", "/tmp/we\"ird\\name\n\t\x01 \xc3\xa9", "train",
                UINT64_C(9223372036854775807), 3, 1, "cuda:1"};
  config.model = {"B/4", 96, 3, 6, 8, 2.5, "caption", 0, 0.25, 1, 300, "/models/sd 1.5", false};
  config.data = {"folder", "/srv/images", 64, 3, 7, 5, 2, 0.125, true, false};
  config.train = {123, 45.5, 1.5e-4, 0.01, 0.8, 0.95, 1e-6, 7, 0.5, 0.9, -0.5, 1.2, 3, 40, 1, 0};
  config.train.lora_rank = 16;
  config.train.lora_alpha = 12.5;
  config.train.lora_targets = {"attn2.to_k", "ff.net.2"};
  config.train.offset_noise = 0.05;
  config.train.min_snr_gamma = 5;
  config.train.caption_dropout = 0.25;
  config.run.devices = {"cuda:0", "cuda:2"};
  config.run.trainers = 2;  // run.devices names the trainers
  config.run.attach = true;
  config.train.checkpoint_activations = true;
  config.train.precision = "bf16";
  config.sample = {5, "euler", 0.0, 2, 77};
  config.eval = {10, 6, "euler", 1.0, 5, 0, "/var/cache/x"};
  config.debug = {9, true, 12, 11, 25, 0, "sender", 0, "forged_state", true};
  expect_round_trip(config);
}

TEST(config_loader, describe_config_round_trips_a_parsed_preset_and_folder_config) {
  const run_config config = parse_run_config(
      "[model]\npreset = \"S/2\"\ndepth = 3\n[data]\nsource = \"folder\"\n", "p.toml");
  expect_round_trip(config);
}

// --- Hostile input -------------------------------------------------------------------------------

TEST(config_loader, mangled_files_give_config_errors_and_nothing_else) {
  std::ifstream in(source_dir / "config" / "example.toml", std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string original = buffer.str();
  ASSERT_FALSE(original.empty());

  std::mt19937 random(7);
  int accepted = 0, rejected = 0;
  for (int trial = 0; trial < 1500; ++trial) {
    std::string text = original;
    const int edits = 1 + static_cast<int>(random() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = random() % text.size();
      switch (random() % 4) {
        case 0: text[at] = static_cast<char>(random() % 256); break;
        case 1: text.erase(at, 1 + random() % 8); break;
        case 2: text.insert(at, 1, "[]{}=\"'#.,\n\\"[random() % 12]); break;
        case 3: text.resize(at); break;
      }
      if (text.empty())
        text.push_back('x');
    }
    try {
      parse_run_config(text, "mangled.toml");
      ++accepted;
    } catch (const config_error&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(accepted, 0);
}

TEST(config_loader, deep_nesting_is_rejected) {
  const auto error = error_of("[train]\nlr = " + std::string(100000, '[') + "\n");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->key(), "");
}

} // namespace
} // namespace ddactor
