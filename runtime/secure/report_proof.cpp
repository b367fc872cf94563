// Signed progress reports; see report_proof.hpp.
#include "runtime/secure/report_proof.hpp"

#include <algorithm>
#include <bit>
#include <string>

namespace ddactor {

namespace {

// Every field a receiver acts on, each after a 0 byte (ids hold none: peer ids are hex and
// on_report refuses other lengths; a swarm id with one only fails its own peers); the rate by
// its bits, so that signing and checking never disagree on a rounding.
std::string signed_content(const progress_report& r) {
  std::string text = "ddactor progress v1";
  for (const std::string& field :
       {r.peer_id, r.swarm_id, std::to_string(r.epoch), std::to_string(r.samples),
        std::to_string(std::bit_cast<uint64_t>(r.samples_per_second)),
        std::to_string(r.ready ? 1 : 0), std::to_string(r.state_digest),
        std::to_string(r.resyncing ? 1 : 0), std::to_string(r.may_lead ? 1 : 0),
        std::to_string(r.sequence)}) {
    text.push_back('\0');
    text += field;
  }
  return text;
}

std::span<const uint8_t> bytes_of(const std::string& text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

} // namespace

void sign_report(progress_report& report, const peer_key& key) {
  const auto& pk = key.public_part();
  report.public_key.assign(pk.begin(), pk.end());
  auto sig = key.sign(bytes_of(signed_content(report)));
  report.signature.assign(sig.begin(), sig.end());
}

bool report_proven(const progress_report& report) {
  if (report.public_key.size() != 32 || report.signature.size() != 64)
    return false;
  public_key pk{};
  std::copy(report.public_key.begin(), report.public_key.end(), pk.begin());
  if (peer_id_of(pk) != report.peer_id)
    return false;
  signature sig{};
  std::copy(report.signature.begin(), report.signature.end(), sig.begin());
  return verify_signature(pk, bytes_of(signed_content(report)), sig);
}

} // namespace ddactor
