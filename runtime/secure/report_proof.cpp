// Signed progress reports; see report_proof.hpp.
#include "runtime/secure/report_proof.hpp"

#include <bit>
#include <string>

#include "runtime/secure/signed_claim.hpp"

namespace ddactor {

namespace {

// Every field a receiver acts on; the rate by its bits, so that signing and checking never
// disagree on a rounding.
std::string signed_content(const progress_report& r) {
  return signed_text("ddactor progress v2",
                     {r.peer_id, r.swarm_id, std::to_string(r.epoch), std::to_string(r.samples),
                      std::to_string(std::bit_cast<uint64_t>(r.samples_per_second)),
                      std::to_string(r.ready ? 1 : 0), std::to_string(r.state_digest),
                      std::to_string(r.resyncing ? 1 : 0), std::to_string(r.may_lead ? 1 : 0),
                      std::to_string(r.sequence),
                      std::to_string(std::bit_cast<uint64_t>(r.link_rate))});
}

} // namespace

void sign_report(progress_report& report, const peer_key& key) {
  sign_claim(key, signed_content(report), report.public_key, report.signature);
}

bool report_proven(const progress_report& report) {
  return claim_proven(report.public_key, report.signature, report.peer_id,
                      signed_content(report));
}

} // namespace ddactor
