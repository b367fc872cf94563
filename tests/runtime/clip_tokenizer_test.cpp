// Tests of the CLIP tokenizer: every case of the transformers reference fixtures
// (clip_tokenizer/tokenizer_cases.json: cleaned text, words, tokens, ids unpadded, padded to 77
// with eos and with SD 2.x's "!", attention masks, decoded text), then folders written here:
// settings read from tokenizer_config.json / special_tokens_map.json, special-token cutting, the
// word cache under threads, and one clear error per missing or malformed file.
#include "runtime/clip_tokenizer.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <fstream>
#include <iostream>
#include <thread>

#include "runtime/clip_pre_tokenizer.hpp"
#include "runtime/utf8.hpp"
#include "tests/temporary_folder.hpp"

namespace ddactor {
namespace {

const std::filesystem::path fixture_folder =
    std::filesystem::path(DDACTOR_SD1_FIXTURES) / "clip_tokenizer";

nlohmann::json read_cases() {
  std::ifstream in(fixture_folder / "tokenizer_cases.json");
  return nlohmann::json::parse(in);
}

#define SKIP_WITHOUT_FIXTURES()                                                              \
  if (!std::filesystem::exists(fixture_folder / "tokenizer_cases.json"))                     \
  GTEST_SKIP() << "SD fixtures not found at " << fixture_folder

std::vector<std::string> byte_level_words(std::string_view cleaned) {
  std::vector<std::string> words;
  for (const auto& word : split_clip_words(cleaned)) words.push_back(to_byte_level(word));
  return words;
}

TEST(clip_tokenizer, fixture_settings_and_special_ids) {
  SKIP_WITHOUT_FIXTURES();
  const auto cases = read_cases();
  const auto tokenizer = clip_tokenizer::load(fixture_folder);
  EXPECT_EQ(tokenizer.vocab_size(), cases["vocab_size"].get<int64_t>());
  const auto& special = cases["special_tokens"];
  EXPECT_EQ(tokenizer.settings().bos_token, special["bos_token"][0].get<std::string>());
  EXPECT_EQ(tokenizer.bos_id(), special["bos_token"][1]);
  EXPECT_EQ(tokenizer.eos_id(), special["eos_token"][1]);
  EXPECT_EQ(tokenizer.pad_id(), special["pad_token"][1]);
  EXPECT_EQ(tokenizer.unk_id(), special["unk_token"][1]);
  EXPECT_EQ(tokenizer.model_max_length(), 77);
}

// Every field of every case, for the SD 1.x settings (pad = eos) and SD 2.x's (pad = "!").
TEST(clip_tokenizer, all_fixture_cases_match_transformers_exactly) {
  SKIP_WITHOUT_FIXTURES();
  const auto cases = read_cases();
  const auto sd1 = clip_tokenizer::load(fixture_folder);
  auto sd2_settings = read_clip_tokenizer_settings(fixture_folder);
  sd2_settings.pad_token = cases["special_tokens"]["pad_token_sd2_variant"][0];
  const auto sd2 = clip_tokenizer::load(fixture_folder, sd2_settings);
  ASSERT_EQ(sd2.pad_id(), cases["special_tokens"]["pad_token_sd2_variant"][1]);

  int matched = 0;
  for (const auto& c : cases["cases"]) {
    const std::string text = c["text"];
    SCOPED_TRACE("case " + c["name"].get<std::string>());
    bool all_fields_match = true;
    auto check = [&](const auto& actual, const auto& expected, const char* field) {
      EXPECT_EQ(actual, expected) << field;
      all_fields_match = all_fields_match && actual == expected;
    };
    const std::string cleaned = clean_clip_text(text);
    check(cleaned, c["cleaned_text"].get<std::string>(), "cleaned_text");
    check(byte_level_words(cleaned), c["pretokens_byte_level"].get<std::vector<std::string>>(),
          "pretokens_byte_level");
    check(sd1.tokenize(text), c["tokens"].get<std::vector<std::string>>(), "tokens");
    const auto ids = sd1.encode(text);
    check(ids, c["input_ids"].get<std::vector<int64_t>>(), "input_ids");
    check(static_cast<int64_t>(ids.size()), c["num_ids"].get<int64_t>(), "num_ids");
    check(ids.size() > 77, c["truncated"].get<bool>(), "truncated");
    const auto padded = sd1.encode_padded(text);
    check(padded.input_ids, c["input_ids_max_length_77"].get<std::vector<int64_t>>(),
          "input_ids_max_length_77");
    check(padded.attention_mask, c["attention_mask_max_length_77"].get<std::vector<int64_t>>(),
          "attention_mask_max_length_77");
    check(sd2.encode_padded(text, 77).input_ids,
          c["input_ids_max_length_77_pad_bang"].get<std::vector<int64_t>>(),
          "input_ids_max_length_77_pad_bang");
    check(sd1.decode(ids), c["decoded"].get<std::string>(), "decoded");
    if (all_fields_match) ++matched;
  }
  EXPECT_EQ(matched, 46);
  std::cout << "[ clip_tokenizer ] " << matched << " of " << cases["cases"].size()
            << " fixture cases match in every field\n";
}

// --- folders written by the tests ---------------------------------------------------------

// A folder of its own per test, removed at the end.
class tokenizer_folder {
public:
  explicit tokenizer_folder(const std::string& name) : folder_("ddactor_clip_tokenizer_" + name) {}

  const std::filesystem::path& path() const { return folder_.path(); }
  void write(const std::string& file, const std::string& content) const {
    std::ofstream(folder_ / file, std::ios::binary) << content;
  }

  // A small valid tokenizer: the 512 byte symbols (ids in byte order: 0-255, then 256-511 with
  // "</w>"), merges "h i</w>" then "t h" (512 "hi</w>", 513 "th"), bos 514 and eos 515.
  void write_minimal() const {
    nlohmann::json vocab = nlohmann::json::object();
    int64_t id = 0;
    for (int b = 0; b < 256; ++b) vocab[to_byte_level(std::string(1, static_cast<char>(b)))] = id++;
    for (int b = 0; b < 256; ++b)
      vocab[to_byte_level(std::string(1, static_cast<char>(b))) + "</w>"] = id++;
    vocab["hi</w>"] = id++;
    vocab["th"] = id++;
    vocab["<|startoftext|>"] = id++;
    vocab["<|endoftext|>"] = id++;
    write("vocab.json", vocab.dump());
    write("merges.txt", "#version: 0.2\nh i</w>\nt h\n");
  }

private:
  testing::temporary_folder folder_;
};

// The message of the clip_tokenizer_error that `f` throws ("" if it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const clip_tokenizer_error& e) {
    return e.what();
  }
  return "";
}

TEST(clip_tokenizer, minimal_folder_merges_by_rank_and_pads) {
  tokenizer_folder folder("minimal");
  folder.write_minimal();
  const auto tokenizer = clip_tokenizer::load(folder.path());
  EXPECT_EQ(tokenizer.vocab_size(), 516);
  EXPECT_EQ(tokenizer.tokenize("Hi thin"),
            (std::vector<std::string>{"hi</w>", "th", "i", "n</w>"}));
  EXPECT_EQ(tokenizer.encode("hi"), (std::vector<int64_t>{514, 512, 515}));
  const auto padded = tokenizer.encode_padded("hi hi hi", 4);
  EXPECT_EQ(padded.input_ids, (std::vector<int64_t>{514, 512, 512, 515}));
  EXPECT_EQ(padded.attention_mask, (std::vector<int64_t>{1, 1, 1, 1}));
  EXPECT_EQ(tokenizer.encode_padded("", 3).input_ids, (std::vector<int64_t>{514, 515, 515}));
  EXPECT_EQ(tokenizer.encode_padded("", 3).attention_mask, (std::vector<int64_t>{1, 1, 0}));
  EXPECT_THROW(tokenizer.encode_padded("hi", 1), std::invalid_argument);
  EXPECT_EQ(tokenizer.decode(std::vector<int64_t>{514, 512, 512, 515}), "hi hi");
  EXPECT_EQ(tokenizer.decode(std::vector<int64_t>{514, 512, 515}, false),
            "<|startoftext|>hi <|endoftext|>");
  EXPECT_THROW(tokenizer.decode(std::vector<int64_t>{9999}), std::out_of_range);
  EXPECT_THROW(tokenizer.tokenize("bad \xff byte"), utf8_error);
}

TEST(clip_tokenizer, special_tokens_are_cut_out_as_written_and_recognised_in_other_case) {
  tokenizer_folder folder("special");
  folder.write_minimal();
  const auto tokenizer = clip_tokenizer::load(folder.path());
  // Exactly spelt: cut out before cleaning, even inside a word.
  EXPECT_EQ(tokenizer.tokenize("hi<|endoftext|>hi"),
            (std::vector<std::string>{"hi</w>", "<|endoftext|>", "hi</w>"}));
  // In another case: cleaning lower-cases it, and CLIP's pattern and word cache keep it whole.
  EXPECT_EQ(tokenizer.encode("<|EndOfText|>"), (std::vector<int64_t>{514, 515, 515}));
}

TEST(clip_tokenizer, settings_come_from_tokenizer_config_then_special_tokens_map) {
  tokenizer_folder folder("settings");
  folder.write_minimal();
  EXPECT_EQ(read_clip_tokenizer_settings(folder.path()).pad_token, "<|endoftext|>");
  // SD 2.x: pad "!" as an AddedToken object, a shorter sequence length.
  folder.write("tokenizer_config.json",
               R"({"pad_token": {"__type": "AddedToken", "content": "!", "lstrip": false},
                   "model_max_length": 5, "do_lower_case": true, "errors": "replace"})");
  auto tokenizer = clip_tokenizer::load(folder.path());
  const int64_t bang = '!';  // this vocabulary numbers the byte symbols by byte value
  EXPECT_EQ(tokenizer.pad_id(), bang);
  EXPECT_EQ(tokenizer.model_max_length(), 5);
  EXPECT_EQ(tokenizer.encode_padded("hi").input_ids,
            (std::vector<int64_t>{514, 512, 515, bang, bang}));
  // The pad token is cut out of text like the other special tokens.
  EXPECT_EQ(tokenizer.tokenize("hi!"), (std::vector<std::string>{"hi</w>", "!"}));
  folder.write("special_tokens_map.json", R"({"pad_token": "<|endoftext|>"})");
  EXPECT_EQ(clip_tokenizer::load(folder.path()).pad_id(), 515);
}

TEST(clip_tokenizer, missing_and_malformed_files_are_named) {
  tokenizer_folder folder("errors");
  const std::string vocab = (folder.path() / "vocab.json").string();
  const std::string merges = (folder.path() / "merges.txt").string();
  auto load = [&] { clip_tokenizer::load(folder.path()); };

  EXPECT_NE(error_of(load).find(vocab + ": cannot be read"), std::string::npos) << error_of(load);
  folder.write_minimal();
  std::filesystem::remove(folder.path() / "merges.txt");
  EXPECT_NE(error_of(load).find(merges + ": cannot be read"), std::string::npos);

  folder.write_minimal();
  folder.write("vocab.json", "{\"a\": 1,");
  EXPECT_NE(error_of(load).find(vocab + ": not valid JSON"), std::string::npos);
  folder.write("vocab.json", R"({"a": "one"})");
  EXPECT_NE(error_of(load).find("the id of \"a\" is not a non-negative integer"),
            std::string::npos);
  folder.write("vocab.json", R"({"a": 1, "b": 1})");
  EXPECT_NE(error_of(load).find("have the same id 1"), std::string::npos);
  folder.write("vocab.json", R"({"a": 0, "<|endoftext|>": 1})");
  EXPECT_NE(error_of(load).find(vocab + ": has no entry for the bos_token \"<|startoftext|>\""),
            std::string::npos);

  folder.write_minimal();
  folder.write("merges.txt", "h i</w>\nt h\n");
  EXPECT_NE(error_of(load).find(merges + ": the first line must be the \"#version\" header"),
            std::string::npos);
  folder.write("merges.txt", "#version: 0.2\nh i</w>\nt h e\n");
  EXPECT_NE(error_of(load).find(merges + ": line 3 should hold two symbols, it holds 3"),
            std::string::npos);
  folder.write("merges.txt", "#version: 0.2\n\xff\xfe\n");
  EXPECT_NE(error_of(load).find(merges + ": not UTF-8"), std::string::npos);
}

TEST(clip_tokenizer, unsupported_settings_are_refused_with_the_key) {
  tokenizer_folder folder("unsupported");
  folder.write_minimal();
  const std::string config = (folder.path() / "tokenizer_config.json").string();
  auto load = [&] { clip_tokenizer::load(folder.path()); };

  folder.write("tokenizer_config.json", R"({"errors": "strict"})");
  EXPECT_NE(error_of(load).find(config + ": \"errors\" \"strict\" is not supported"),
            std::string::npos);
  folder.write("tokenizer_config.json", R"({"model_max_length": 1e30})");
  EXPECT_NE(error_of(load).find("\"model_max_length\" must be an integer"), std::string::npos);
  folder.write("tokenizer_config.json", R"({"pad_token": 7})");
  EXPECT_NE(error_of(load).find("\"pad_token\" must be a string"), std::string::npos);
  folder.write("tokenizer_config.json", R"({"additional_special_tokens": ["<cat>"]})");
  EXPECT_NE(error_of(load).find("\"additional_special_tokens\" is not supported"),
            std::string::npos);
  folder.write("tokenizer_config.json",
               R"({"added_tokens_decoder": {"514": {"content": "<|startoftext|>"},
                                            "516": {"content": "<cat-toy>"}}})");
  EXPECT_NE(error_of(load).find("added token \"<cat-toy>\" is not supported"), std::string::npos);
  folder.write("tokenizer_config.json", "{}");
  folder.write("added_tokens.json", R"({"<cat-toy>": 516})");
  EXPECT_NE(error_of(load).find("added_tokens.json: added tokens"), std::string::npos);
}

TEST(clip_tokenizer, threads_share_the_word_cache_and_agree) {
  SKIP_WITHOUT_FIXTURES();
  const auto tokenizer = clip_tokenizer::load(fixture_folder);
  const auto cases = read_cases();
  std::vector<std::string> texts;
  for (const auto& c : cases["cases"]) texts.push_back(c["text"]);
  std::vector<std::vector<int64_t>> expected;
  for (const auto& text : texts) expected.push_back(tokenizer.encode(text));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round)
        for (size_t i = 0; i < texts.size(); ++i) {
          const size_t k = (i + t * 7 + round) % texts.size();
          if (tokenizer.encode(texts[k]) != expected[k]) ++mismatches;
        }
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches, 0);
}

} // namespace
} // namespace ddactor
