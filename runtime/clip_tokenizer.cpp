// Loading a CLIP tokenizer folder, byte-pair merging with a word cache, and the encode / decode
// calls; see clip_tokenizer.hpp.
#include "runtime/clip_tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>

#include "runtime/clip_pre_tokenizer.hpp"
#include "runtime/unicode_text.hpp"
#include "runtime/utf8.hpp"

namespace ddactor {

namespace {

// CLIP uses the first 49152 - 256 - 2 merges of merges.txt and ignores the rest: its vocabulary
// is 256 byte symbols, 256 byte symbols with "</w>", one entry per merge and two special tokens,
// 49408 in all.
constexpr size_t max_merges = 49152 - 256 - 2;

// A word cache grows with every distinct word seen; a server tokenizing arbitrary prompts for
// weeks must not grow without bound, so the cache starts over when it is this full.
constexpr size_t max_cached_words = 100000;

// The words CLIP's own cache is seeded with: they are returned whole, never merged (the pattern
// lets them through as words when text spells them in another case, such as "<|EndOfText|>").
constexpr std::string_view start_of_text_word = "<|startoftext|>";
constexpr std::string_view end_of_text_word = "<|endoftext|>";

constexpr std::string_view end_of_word = "</w>";

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!std::filesystem::is_regular_file(path) || !in)
    throw clip_tokenizer_error(path.string() + ": cannot be read (missing or not a file)");
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) throw clip_tokenizer_error(path.string() + ": read error");
  return content.str();
}

nlohmann::json parse_json_file(const std::filesystem::path& path) {
  try {
    return nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::parse_error& e) {
    throw clip_tokenizer_error(path.string() + ": not valid JSON: " + e.what());
  }
}

// --- settings ------------------------------------------------------------------------------

// A special token as the config files write it: "text", or an AddedToken object.
void read_token(const nlohmann::json& config, const char* key, const std::filesystem::path& file,
                std::string& token) {
  auto it = config.find(key);
  if (it == config.end()) return;
  if (it->is_string()) {
    token = it->get<std::string>();
    return;
  }
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    token = (*it)["content"].get<std::string>();
    return;
  }
  throw clip_tokenizer_error(file.string() + ": \"" + key +
                             "\" must be a string or an object with a string \"content\"");
}

void refuse_additional_special_tokens(const nlohmann::json& config,
                                      const std::filesystem::path& file) {
  auto it = config.find("additional_special_tokens");
  if (it != config.end() && !(it->is_array() && it->empty()) && !it->is_null())
    throw clip_tokenizer_error(file.string() +
                               ": \"additional_special_tokens\" is not supported (only the bos, "
                               "eos, pad and unk tokens)");
}

void read_tokenizer_config(const std::filesystem::path& file, clip_tokenizer_settings& settings,
                           std::vector<std::string>& declared_added_tokens) {
  const nlohmann::json config = parse_json_file(file);
  if (!config.is_object()) throw clip_tokenizer_error(file.string() + ": not a JSON object");
  read_token(config, "bos_token", file, settings.bos_token);
  read_token(config, "eos_token", file, settings.eos_token);
  read_token(config, "pad_token", file, settings.pad_token);
  read_token(config, "unk_token", file, settings.unk_token);
  refuse_additional_special_tokens(config, file);
  if (auto it = config.find("model_max_length"); it != config.end()) {
    // transformers writes 1e30 for "unlimited"; CLIP's position embedding ends at 77 anyway.
    if (!it->is_number_integer() || it->get<int64_t>() < 2 ||
        it->get<int64_t>() > std::numeric_limits<int32_t>::max())
      throw clip_tokenizer_error(file.string() +
                                 ": \"model_max_length\" must be an integer from 2 to 2^31 - 1");
    settings.model_max_length = it->get<int64_t>();
  }
  if (auto it = config.find("errors"); it != config.end() && *it != "replace")
    throw clip_tokenizer_error(file.string() + ": \"errors\" " + it->dump() +
                               " is not supported (only \"replace\")");
  if (auto it = config.find("added_tokens_decoder"); it != config.end()) {
    if (!it->is_object())
      throw clip_tokenizer_error(file.string() + ": \"added_tokens_decoder\" must be an object");
    for (const auto& [id, token] : it->items()) {
      if (!token.is_object() || !token.contains("content") || !token["content"].is_string())
        throw clip_tokenizer_error(file.string() + ": \"added_tokens_decoder\" entry " + id +
                                   " has no string \"content\"");
      declared_added_tokens.push_back(token["content"].get<std::string>());
    }
  }
}

void read_special_tokens_map(const std::filesystem::path& file,
                             clip_tokenizer_settings& settings) {
  const nlohmann::json map = parse_json_file(file);
  if (!map.is_object()) throw clip_tokenizer_error(file.string() + ": not a JSON object");
  read_token(map, "bos_token", file, settings.bos_token);
  read_token(map, "eos_token", file, settings.eos_token);
  read_token(map, "pad_token", file, settings.pad_token);
  read_token(map, "unk_token", file, settings.unk_token);
  refuse_additional_special_tokens(map, file);
}

// --- vocab.json and merges.txt --------------------------------------------------------------

std::unordered_map<std::string, int64_t> read_vocab(const std::filesystem::path& file) {
  const nlohmann::json vocab = parse_json_file(file);
  if (!vocab.is_object() || vocab.empty())
    throw clip_tokenizer_error(file.string() + ": not a non-empty JSON object of token -> id");
  std::unordered_map<std::string, int64_t> out;
  std::unordered_map<int64_t, std::string> seen_ids;
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0)
      throw clip_tokenizer_error(file.string() + ": the id of \"" + token +
                                 "\" is not a non-negative integer");
    const auto value = id.get<int64_t>();
    if (auto [it, fresh] = seen_ids.emplace(value, token); !fresh)
      throw clip_tokenizer_error(file.string() + ": \"" + it->second + "\" and \"" + token +
                                 "\" have the same id " + std::to_string(value));
    out.emplace(token, value);
  }
  return out;
}

// As CLIPTokenizer reads merges.txt: the whole file stripped, split into lines, the first line
// (the "#version" header) skipped, at most max_merges lines after it, each split on whitespace.
// A pair listed twice takes its later rank, as Python's dict does.
std::unordered_map<std::string, int32_t> read_merges(const std::filesystem::path& file) {
  const std::string content = read_file(file);
  std::u32string text;
  try {
    text = decode_utf8(content);
  } catch (const utf8_error& e) {
    throw clip_tokenizer_error(file.string() + ": " + e.what());
  }
  std::vector<std::u32string_view> lines;
  std::u32string_view rest = python_strip(text);
  while (!rest.empty()) {
    const size_t end = rest.find(U'\n');
    lines.push_back(rest.substr(0, end));
    rest.remove_prefix(end == std::u32string_view::npos ? rest.size() : end + 1);
  }
  if (lines.empty() || !lines[0].starts_with(U"#version"))
    throw clip_tokenizer_error(file.string() +
                               ": the first line must be the \"#version\" header");
  std::unordered_map<std::string, int32_t> ranks;
  const size_t used_lines = std::min(lines.size(), max_merges + 1);
  for (size_t i = 1; i < used_lines; ++i) {
    const auto symbols = python_split(lines[i]);
    if (symbols.empty()) continue;
    if (symbols.size() != 2)
      throw clip_tokenizer_error(file.string() + ": line " + std::to_string(i + 1) +
                                 " should hold two symbols, it holds " +
                                 std::to_string(symbols.size()));
    ranks[encode_utf8(symbols[0]) + ' ' + encode_utf8(symbols[1])] = static_cast<int32_t>(i - 1);
  }
  return ranks;
}

// --- tokenizing ----------------------------------------------------------------------------

// A piece of text: a special token, or text between special tokens.
struct text_piece {
  std::string_view text;
  bool is_special = false;
};

// Cuts the special tokens out of `text`: at each point the earliest occurrence of any of them,
// the longest where several start there (transformers' added-token trie).
std::vector<text_piece> split_special_tokens(std::string_view text,
                                             const std::vector<std::string>& special_tokens) {
  std::vector<text_piece> pieces;
  while (!text.empty()) {
    size_t best_position = std::string_view::npos;
    size_t best_length = 0;
    for (const auto& token : special_tokens) {
      const size_t position = text.find(token);
      if (position == std::string_view::npos) continue;
      if (position < best_position || (position == best_position && token.size() > best_length)) {
        best_position = position;
        best_length = token.size();
      }
    }
    if (best_position == std::string_view::npos) {
      pieces.push_back({text, false});
      break;
    }
    if (best_position > 0) pieces.push_back({text.substr(0, best_position), false});
    pieces.push_back({text.substr(best_position, best_length), true});
    text.remove_prefix(best_position + best_length);
  }
  return pieces;
}

void replace_all(std::string& text, std::string_view from, std::string_view to) {
  std::string out;
  size_t start = 0;
  for (size_t hit = text.find(from); hit != std::string::npos; hit = text.find(from, start)) {
    out.append(text, start, hit - start);
    out.append(to);
    start = hit + from.size();
  }
  out.append(text, start);
  text = std::move(out);
}

// transformers' clean_up_tokenization: the spaces decoding leaves before punctuation and
// English contractions go, in this order.
void clean_up_tokenization_spaces(std::string& text) {
  static constexpr std::pair<std::string_view, std::string_view> replacements[] = {
      {" .", "."},   {" ?", "?"},     {" !", "!"},     {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : replacements) replace_all(text, from, to);
}

} // namespace

struct clip_tokenizer::word_cache {
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<std::string>> symbols;
};

clip_tokenizer_settings read_clip_tokenizer_settings(const std::filesystem::path& folder) {
  clip_tokenizer_settings settings;
  std::vector<std::string> declared_added_tokens;
  const auto config_file = folder / "tokenizer_config.json";
  const auto special_tokens_file = folder / "special_tokens_map.json";
  const auto added_tokens_file = folder / "added_tokens.json";
  if (std::filesystem::exists(config_file))
    read_tokenizer_config(config_file, settings, declared_added_tokens);
  if (std::filesystem::exists(special_tokens_file))
    read_special_tokens_map(special_tokens_file, settings);
  if (std::filesystem::exists(added_tokens_file))
    throw clip_tokenizer_error(added_tokens_file.string() +
                               ": added tokens (such as textual-inversion words) are not "
                               "supported");
  for (const auto& token : declared_added_tokens)
    if (token != settings.bos_token && token != settings.eos_token &&
        token != settings.pad_token && token != settings.unk_token)
      throw clip_tokenizer_error(config_file.string() + ": added token \"" + token +
                                 "\" is not supported (only the bos, eos, pad and unk tokens)");
  return settings;
}

clip_tokenizer clip_tokenizer::load(const std::filesystem::path& folder) {
  return load(folder, read_clip_tokenizer_settings(folder));
}

clip_tokenizer clip_tokenizer::load(const std::filesystem::path& folder,
                                    const clip_tokenizer_settings& settings) {
  const auto vocab_file = folder / "vocab.json";
  auto vocab = read_vocab(vocab_file);
  auto merge_ranks = read_merges(folder / "merges.txt");
  return clip_tokenizer(std::move(vocab), std::move(merge_ranks), settings, vocab_file);
}

clip_tokenizer::clip_tokenizer(std::unordered_map<std::string, int64_t> vocab,
                               std::unordered_map<std::string, int32_t> merge_ranks,
                               const clip_tokenizer_settings& settings,
                               const std::filesystem::path& vocab_file)
  : vocab_(std::move(vocab)),
    merge_ranks_(std::move(merge_ranks)),
    settings_(settings),
    cache_(std::make_unique<word_cache>()) {
  for (const auto& [token, id] : vocab_) id_to_token_.emplace(id, token);
  auto special_id = [&](const std::string& token, const char* role) {
    auto it = vocab_.find(token);
    if (it == vocab_.end())
      throw clip_tokenizer_error(vocab_file.string() + ": has no entry for the " + role + " \"" +
                                 token + "\"");
    if (std::find(special_tokens_.begin(), special_tokens_.end(), token) == special_tokens_.end())
      special_tokens_.push_back(token);
    return it->second;
  };
  bos_id_ = special_id(settings_.bos_token, "bos_token");
  eos_id_ = special_id(settings_.eos_token, "eos_token");
  pad_id_ = special_id(settings_.pad_token, "pad_token");
  unk_id_ = special_id(settings_.unk_token, "unk_token");
  if (settings_.model_max_length < 2)
    throw clip_tokenizer_error("model_max_length must be at least 2 (bos and eos)");
}

clip_tokenizer::clip_tokenizer(clip_tokenizer&&) noexcept = default;
clip_tokenizer& clip_tokenizer::operator=(clip_tokenizer&&) noexcept = default;
clip_tokenizer::~clip_tokenizer() = default;

std::vector<std::string> clip_tokenizer::merge_word_uncached(const std::string& word) const {
  if (word == start_of_text_word || word == end_of_text_word) return {word};
  std::vector<std::string> symbols;
  for (char32_t c : decode_utf8(word)) symbols.push_back(encode_utf8(std::u32string(1, c)));
  if (symbols.empty()) return {};
  symbols.back() += end_of_word;

  while (symbols.size() > 1) {
    // The adjacent pair that merges first.
    int32_t best_rank = std::numeric_limits<int32_t>::max();
    std::string best_first;
    std::string best_second;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      auto it = merge_ranks_.find(symbols[i] + ' ' + symbols[i + 1]);
      if (it != merge_ranks_.end() && it->second < best_rank) {
        best_rank = it->second;
        best_first = symbols[i];
        best_second = symbols[i + 1];
      }
    }
    if (best_rank == std::numeric_limits<int32_t>::max()) break;
    // Every occurrence of it, left to right, without overlaps.
    std::vector<std::string> merged;
    merged.reserve(symbols.size());
    for (size_t i = 0; i < symbols.size();) {
      if (i + 1 < symbols.size() && symbols[i] == best_first && symbols[i + 1] == best_second) {
        merged.push_back(symbols[i] + symbols[i + 1]);
        i += 2;
      } else {
        merged.push_back(std::move(symbols[i]));
        i += 1;
      }
    }
    symbols = std::move(merged);
  }
  return symbols;
}

std::vector<std::string> clip_tokenizer::merge_word(const std::string& word) const {
  {
    std::lock_guard lock(cache_->mutex);
    if (auto it = cache_->symbols.find(word); it != cache_->symbols.end()) return it->second;
  }
  auto symbols = merge_word_uncached(word);
  std::lock_guard lock(cache_->mutex);
  if (cache_->symbols.size() >= max_cached_words) cache_->symbols.clear();
  cache_->symbols.emplace(word, symbols);
  return symbols;
}

std::vector<std::string> clip_tokenizer::tokenize(std::string_view text) const {
  decode_utf8(text);  // refuses text that is not UTF-8 before any piece of it is used
  std::vector<std::string> tokens;
  for (const auto& piece : split_special_tokens(text, special_tokens_)) {
    if (piece.is_special) {
      tokens.emplace_back(piece.text);
      continue;
    }
    for (const auto& word : split_clip_words(clean_clip_text(piece.text)))
      for (auto& symbol : merge_word(to_byte_level(word))) tokens.push_back(std::move(symbol));
  }
  return tokens;
}

int64_t clip_tokenizer::token_id(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  return it != vocab_.end() ? it->second : unk_id_;
}

std::vector<int64_t> clip_tokenizer::token_ids(std::string_view text) const {
  std::vector<int64_t> ids;
  for (const auto& token : tokenize(text)) ids.push_back(token_id(token));
  return ids;
}

std::vector<int64_t> clip_tokenizer::encode(std::string_view text) const {
  std::vector<int64_t> ids{bos_id_};
  for (int64_t id : token_ids(text)) ids.push_back(id);
  ids.push_back(eos_id_);
  return ids;
}

clip_encoding clip_tokenizer::encode_padded(std::string_view text, int64_t max_length) const {
  if (max_length < 2)
    throw std::invalid_argument("encode_padded: max_length must be at least 2 (bos and eos), is " +
                                std::to_string(max_length));
  std::vector<int64_t> tokens = token_ids(text);
  if (static_cast<int64_t>(tokens.size()) > max_length - 2) tokens.resize(max_length - 2);
  clip_encoding out;
  out.input_ids.reserve(max_length);
  out.input_ids.push_back(bos_id_);
  out.input_ids.insert(out.input_ids.end(), tokens.begin(), tokens.end());
  out.input_ids.push_back(eos_id_);
  out.attention_mask.assign(out.input_ids.size(), 1);
  out.input_ids.resize(max_length, pad_id_);
  out.attention_mask.resize(max_length, 0);
  return out;
}

clip_encoding clip_tokenizer::encode_padded(std::string_view text) const {
  return encode_padded(text, settings_.model_max_length);
}

bool clip_tokenizer::is_special_id(int64_t id) const {
  return id == bos_id_ || id == eos_id_ || id == pad_id_ || id == unk_id_;
}

std::string clip_tokenizer::decode(std::span<const int64_t> ids, bool skip_special_tokens) const {
  std::string byte_level_text;
  for (int64_t id : ids) {
    if (skip_special_tokens && is_special_id(id)) continue;
    auto it = id_to_token_.find(id);
    if (it == id_to_token_.end())
      throw std::out_of_range("decode: id " + std::to_string(id) + " is not in the vocabulary");
    byte_level_text += it->second;
  }
  std::string text = encode_utf8(decode_utf8_lossy(from_byte_level(byte_level_text)));
  replace_all(text, end_of_word, " ");
  text = encode_utf8(python_strip(decode_utf8(text)));
  clean_up_tokenization_spaces(text);
  return text;
}

} // namespace ddactor
