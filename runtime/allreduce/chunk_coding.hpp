#pragma once
// Turning a run of floats into the tensor_blob that crosses the wire, and back, for the
// all-reduce: raw float32 (codec none) or a compression codec's self-describing frame. Decoding
// treats the blob as hostile: the checksum, sizes and codec frame are all checked before a value
// is used, and non-finite values are refused.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

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

} // namespace ddactor
