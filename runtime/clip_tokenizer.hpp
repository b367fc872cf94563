#pragma once
// CLIP's byte-level BPE tokenizer, the one Stable Diffusion 1.x/2.x feed their text encoders,
// loaded from a diffusers/transformers tokenizer folder (vocab.json, merges.txt and, where
// present, tokenizer_config.json and special_tokens_map.json). It gives the ids the slow
// transformers CLIPTokenizer (4.36, without ftfy) gives, for the calls the SD pipelines make:
//
//   tokenize(text)           tokenizer.tokenize(text)
//   encode(text)             tokenizer(text).input_ids                      (bos + ids + eos)
//   encode_padded(text, n)   tokenizer(text, padding="max_length", max_length=n, truncation=True)
//   decode(ids)              tokenizer.decode(ids, skip_special_tokens=True)
//
// How text becomes tokens:
//   1. the special tokens (bos, eos, pad, unk) are cut out of the raw text wherever they occur,
//      exactly spelt (leftmost, longest first); each becomes its own token. This is why SD 2.x's
//      pad token "!" turns every "!" of a prompt into the pad id;
//   2. every other piece is cleaned, split into words and spelt byte-level
//      (clip_pre_tokenizer.hpp);
//   3. each word is merged by byte-pair encoding: "</w>" marks its last symbol, then the
//      adjacent pair of lowest merge rank is joined everywhere in the word, again and again,
//      until no pair has a rank. Words are cached.
//   4. tokens become vocab ids (unknown ones the unk id); encode adds bos and eos; encode_padded
//      keeps at most n - 2 tokens and pads with the pad id (SD 1.x: eos; SD 2.x: "!", id 0).
//
// Thread-safety: every member function may be called from any number of threads (the word
// cache is guarded by a mutex).

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ddactor {

// A tokenizer folder that cannot be used: a file missing or malformed, a setting unsupported.
// The message names the file.
class clip_tokenizer_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// The special tokens and the sequence length; the defaults are CLIPTokenizer's own (and 77, the
// length of CLIP's position embedding, where transformers would leave the length unlimited).
struct clip_tokenizer_settings {
  std::string bos_token = "<|startoftext|>";
  std::string eos_token = "<|endoftext|>";
  std::string pad_token = "<|endoftext|>";  // SD 2.x's tokenizer_config.json says "!"
  std::string unk_token = "<|endoftext|>";
  int64_t model_max_length = 77;
};

// The settings of a tokenizer folder: the defaults, overridden by tokenizer_config.json, whose
// special tokens special_tokens_map.json overrides in turn (as transformers reads the two files).
// Either file may be absent. A token may be written as a string or as an AddedToken object
// ({"content": ...}). Throws clip_tokenizer_error, naming the file, for malformed JSON, wrong
// types, an "errors" mode other than "replace", and added tokens other than the special ones
// (added_tokens.json, additional_special_tokens, other added_tokens_decoder entries), which this
// tokenizer does not support.
clip_tokenizer_settings read_clip_tokenizer_settings(const std::filesystem::path& folder);

// encode_padded's result: both vectors have the requested length.
struct clip_encoding {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> attention_mask;  // 1 for bos, the tokens and eos; 0 for padding
};

class clip_tokenizer {
public:
  // The folder's vocab.json and merges.txt with read_clip_tokenizer_settings(folder).
  static clip_tokenizer load(const std::filesystem::path& folder);
  // The folder's vocab.json and merges.txt with the given settings (its config files unread).
  static clip_tokenizer load(const std::filesystem::path& folder,
                             const clip_tokenizer_settings& settings);

  clip_tokenizer(clip_tokenizer&&) noexcept;
  clip_tokenizer& operator=(clip_tokenizer&&) noexcept;
  ~clip_tokenizer();

  // The tokens of `text`: byte-level BPE symbols, special tokens as written. Throws utf8_error
  // (runtime/utf8.hpp) for text that is not UTF-8.
  std::vector<std::string> tokenize(std::string_view text) const;

  // bos, the ids of the tokens, eos; no length limit.
  std::vector<int64_t> encode(std::string_view text) const;

  // The first max_length - 2 token ids between bos and eos, padded to max_length with the pad
  // id. Throws std::invalid_argument for max_length < 2.
  clip_encoding encode_padded(std::string_view text, int64_t max_length) const;
  // encode_padded with the model_max_length of the settings.
  clip_encoding encode_padded(std::string_view text) const;

  // The text of the ids: their bytes decoded as UTF-8 (ill-formed bytes become U+FFFD), "</w>"
  // as a space, trimmed, and the spaces before punctuation and English contractions removed as
  // transformers' clean_up_tokenization does (" ," -> ",", " 's" -> "'s", ...). With
  // skip_special_tokens the ids of bos, eos, pad and unk are left out. Throws std::out_of_range
  // for an id not in the vocabulary, std::invalid_argument for a vocabulary entry that is not
  // byte-level text.
  std::string decode(std::span<const int64_t> ids, bool skip_special_tokens = true) const;

  // The vocab id of a token, or the unk id.
  int64_t token_id(std::string_view token) const;

  int64_t vocab_size() const { return static_cast<int64_t>(id_to_token_.size()); }
  int64_t bos_id() const { return bos_id_; }
  int64_t eos_id() const { return eos_id_; }
  int64_t pad_id() const { return pad_id_; }
  int64_t unk_id() const { return unk_id_; }
  int64_t model_max_length() const { return settings_.model_max_length; }
  const clip_tokenizer_settings& settings() const { return settings_; }

private:
  struct word_cache;

  clip_tokenizer(std::unordered_map<std::string, int64_t> vocab,
                 std::unordered_map<std::string, int32_t> merge_ranks,
                 const clip_tokenizer_settings& settings, const std::filesystem::path& vocab_file);

  // The BPE symbols of one byte-level word.
  std::vector<std::string> merge_word(const std::string& word) const;
  std::vector<std::string> merge_word_uncached(const std::string& word) const;
  // The token ids of `text` without bos and eos.
  std::vector<int64_t> token_ids(std::string_view text) const;
  bool is_special_id(int64_t id) const;

  std::unordered_map<std::string, int64_t> vocab_;
  std::unordered_map<int64_t, std::string> id_to_token_;
  // "left right" -> rank (lower merges first). Symbols never contain a space: the byte-level
  // alphabet spells the space byte as U+0120.
  std::unordered_map<std::string, int32_t> merge_ranks_;
  clip_tokenizer_settings settings_;
  std::vector<std::string> special_tokens_;  // distinct contents, cut out of text before cleaning
  int64_t bos_id_ = 0;
  int64_t eos_id_ = 0;
  int64_t pad_id_ = 0;
  int64_t unk_id_ = 0;
  std::unique_ptr<word_cache> cache_;
};

} // namespace ddactor
