#pragma once
// Turning a run of floats into the tensor_blob that crosses the wire, and back, for the
// all-reduce: raw float32 (codec none) or a compression codec's self-describing frame. Decoding
// treats the blob as hostile: the checksum, sizes and codec frame are all checked before a value
// is used, and non-finite values are refused.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/allreduce/chunk_signature.hpp"
#include "runtime/compression/tensor_codec.hpp"
#include "runtime/tensor_blob.hpp"

namespace ddactor {

/// A sealed blob for `values`, the elements [offset, offset + n) of part `part_index`. With
/// `codec` null the floats go raw; otherwise codec->encode() makes the payload (stateful codecs
/// such as top-k keep their error feedback per codec instance).
tensor_blob encode_chunk(uint64_t round_id, uint32_t part_index, uint64_t offset,
                         std::span<const float> values, tensor_codec* codec);

/// The floats of a blob, after validating it against what the receiver expects: round, part,
/// and that [offset, offset + n) lies inside a part of `part_length` elements. Throws
/// std::runtime_error (with the reason) for anything wrong, including non-finite values.
std::vector<float> decode_chunk(const tensor_blob& blob, uint64_t round_id, uint32_t part_index,
                                uint64_t part_length);

/// The codec a chunk travels with: its name ("none": raw float32) and options.
struct chunk_codec {
  std::string name = "none";
  codec_options settings;
};

/// Work for a compressor (actors/compressor.hpp): encode values [offset, offset + n) of part
/// `part_index` (a part of `part_length` elements) of round `round_id`.
struct chunk_encode_job {
  uint64_t round_id = 0;
  uint32_t part_index = 0;
  uint64_t offset = 0;
  uint64_t part_length = 0;
  std::vector<float> values;
  /// Where `values` is empty: the input as a view of storage that `owner` keeps alive, so that
  /// values only read (raw float32 out) are not copied first.
  std::shared_ptr<const void> owner;
  std::span<const float> view;
  chunk_codec codec;
  /// Also decode the blob into coded_chunk::values: what every receiver will read (a reducer
  /// applies its own result from those very values, so that all members agree bit for bit).
  bool decode_back = false;
  /// Also return values - decoded as coded_chunk::leftover (top-k's error feedback).
  bool error_feedback = false;
  /// Sign the blob as member `sender` of attempt `member_set` (coded_chunk::proof); null: not.
  std::shared_ptr<const peer_key> signer;
  uint64_t member_set = 0;
  uint32_t sender = 0;

  std::span<const float> input() const { return values.empty() ? view : values; }
  /// The input as this job's own copy (made from the view where there is one), to change it.
  std::vector<float>& own_values();
};

/// Work for a compressor: validate and decode a blob that claims to be a chunk of part
/// `part_index` (of `part_length` elements) of round `round_id`.
struct chunk_decode_job {
  tensor_blob blob;
  uint64_t round_id = 0;
  uint32_t part_index = 0;
  uint64_t part_length = 0;
  /// Where not empty: the blob must come with `proof`, peer `signer_id`'s signature as member
  /// `sender` of attempt `member_set` (chunk_signature.hpp), checked before anything is decoded.
  std::string signer_id;
  chunk_proof proof;
  uint64_t member_set = 0;
  uint32_t sender = 0;
  /// Hand the blob and its proof back in coded_chunk (a reducer keeps them for audits).
  bool keep_blob = false;
};

/// What a job produced, or why it failed (`error` not empty: hostile blob, non-finite input).
struct coded_chunk {
  tensor_blob blob;
  chunk_proof proof;
  std::vector<float> values;
  std::vector<float> leftover;
  std::string error;
};

/// Runs a job; never throws (failures land in coded_chunk::error).
coded_chunk run_chunk_job(chunk_encode_job job);
coded_chunk run_chunk_job(chunk_decode_job job);

} // namespace ddactor
