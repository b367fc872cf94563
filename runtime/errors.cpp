// Names for ddactor's error codes; see errors.hpp.
#include "runtime/errors.hpp"

namespace ddactor {

std::string to_string(errc x) {
  switch (x) {
    case errc::invalid_config: return "invalid_config";
    case errc::invalid_checkpoint: return "invalid_checkpoint";
    case errc::data_unavailable: return "data_unavailable";
    case errc::invalid_message: return "invalid_message";
    case errc::shape_mismatch: return "shape_mismatch";
    case errc::training_failed: return "training_failed";
    case errc::round_timeout: return "round_timeout";
    case errc::round_closed: return "round_closed";
    case errc::peer_unreachable: return "peer_unreachable";
    case errc::shutting_down: return "shutting_down";
    case errc::io_failure: return "io_failure";
    case errc::not_leader: return "not_leader";
    case errc::overloaded: return "overloaded";
    case errc::out_of_memory: return "out_of_memory";
  }
  return "unknown";
}

caf::error make_error(errc code, std::string detail) {
  return caf::make_error(code, std::move(detail));
}

} // namespace ddactor
