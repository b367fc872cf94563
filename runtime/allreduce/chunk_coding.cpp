// Encoding and validating all-reduce chunks; see chunk_coding.hpp.
#include "runtime/allreduce/chunk_coding.hpp"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "runtime/compression/codec_factory.hpp"
#include "runtime/finite_values.hpp"

namespace ddactor {

tensor_blob encode_chunk(uint64_t round_id, uint32_t part_index, uint64_t offset,
                         std::span<const float> values, tensor_codec* codec) {
  if (codec == nullptr || codec->id() == codec_id::none)
    return make_float32_blob(round_id, part_index, offset, values);
  auto frame = codec->encode(values);
  tensor_blob blob;
  blob.round_id = round_id;
  blob.part_index = part_index;
  blob.offset = offset;
  blob.shape = {static_cast<int64_t>(values.size())};
  blob.dtype = static_cast<uint8_t>(blob_dtype::float32);
  // The frame names the codec that made it (adaptive picks one per chunk).
  blob.codec = frame.size() > 3 ? static_cast<uint8_t>(frame[3]) : uint8_t{0};
  blob.bytes.resize(frame.size());
  if (!frame.empty())
    std::memcpy(blob.bytes.data(), frame.data(), frame.size());
  seal(blob);
  return blob;
}

std::vector<float> decode_chunk(const tensor_blob& blob, uint64_t round_id, uint32_t part_index,
                                uint64_t part_length) {
  blob_expectations expected;
  expected.round_id = round_id;
  expected.part_index = part_index;
  expected.dtype = static_cast<uint8_t>(blob_dtype::float32);
  expected.part_length = part_length;
  // Raw chunks are checksummed in the pass that reads their values.
  expected.check_checksum = blob.codec != blob_codec_none;
  if (auto problem = validate_blob(blob, expected))
    throw std::runtime_error("invalid chunk: " + *problem);
  auto elements = shape_elements(blob.shape, expected.max_elements);
  if (!elements || *elements == 0)
    throw std::runtime_error("invalid chunk: empty or oversized shape");
  if (blob.codec == blob_codec_none) {
    auto read = read_checked_float32(blob);
    if (!read.checksum_matches)
      throw std::runtime_error("invalid chunk: checksum mismatch (corrupted in transit or never "
                               "sealed)");
    if (!read.all_finite)
      throw std::runtime_error("invalid chunk: non-finite value");
    return std::move(read.values);
  }
  std::vector<float> values;
  values.resize(static_cast<size_t>(*elements));
  try {
    // decode_any checks the frame's sizes and refuses non-finite output.
    decode_any(std::as_bytes(std::span<const char>(blob.bytes)), values);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("invalid chunk: ") + e.what());
  }
  return values;
}

std::vector<float>& chunk_encode_job::own_values() {
  if (values.empty() && !view.empty()) {
    values.assign(view.begin(), view.end());
    view = {};
    owner.reset();
  }
  return values;
}

coded_chunk run_chunk_job(chunk_encode_job job) {
  coded_chunk out;
  try {
    auto codec =
      job.codec.name == "none" ? nullptr : make_codec(job.codec.name, job.codec.settings);
    out.blob = encode_chunk(job.round_id, job.part_index, job.offset, job.input(), codec.get());
    if (job.signer)
      out.proof = sign_chunk(*job.signer, job.round_id, job.member_set, job.sender, out.blob);
    if (!codec && job.decode_back && !job.error_feedback) {
      // Raw float32 decodes to the very same bits: only the receivers' finiteness check remains.
      auto input = job.input();
      if (!all_finite(input))
        throw std::runtime_error("invalid chunk: non-finite value");
      out.values = job.values.empty() ? std::vector<float>(input.begin(), input.end())
                                      : std::move(job.values);
      return out;
    }
    if (job.decode_back || job.error_feedback)
      out.values = decode_chunk(out.blob, job.round_id, job.part_index, job.part_length);
    if (job.error_feedback) {
      out.leftover = std::move(job.values);
      for (size_t i = 0; i < out.leftover.size(); ++i)
        out.leftover[i] -= out.values[i];
    }
    if (!job.decode_back)
      out.values.clear();
  } catch (const std::exception& e) {
    out = {};
    out.error = e.what();
  }
  return out;
}

coded_chunk run_chunk_job(chunk_decode_job job) {
  coded_chunk out;
  try {
    if (!job.signer_id.empty() && !chunk_signed_by(job.proof, job.signer_id, job.round_id,
                                                   job.member_set, job.sender, job.blob))
      throw std::runtime_error("invalid chunk: not signed by its sender");
    out.values = decode_chunk(job.blob, job.round_id, job.part_index, job.part_length);
    if (job.keep_blob) {
      out.blob = std::move(job.blob);
      out.proof = std::move(job.proof);
    }
  } catch (const std::exception& e) {
    out.values.clear();
    out.error = e.what();
  }
  return out;
}

} // namespace ddactor
