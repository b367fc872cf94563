// The project's actor_system_config; see actor_system_setup.hpp.
#include "runtime/actor_system_setup.hpp"

#include "caf/io/middleman.hpp"

#include "runtime/errors.hpp"
#include "runtime/message_types.hpp"

namespace ddactor {

ddactor_system_config::ddactor_system_config(network_timing timing, bool with_network) {
  add_message_types<caf::id_block::ddactor>();
  // CAF 0.17.6: add_error_category<T>(atom) does not compile with our enum; pass a renderer.
  add_error_category(caf::atom("ddactor"),
                     [](uint8_t code, caf::atom_value, const caf::message& context) {
                       auto text = "ddactor::" + to_string(static_cast<errc>(code));
                       if (context.size() == 1 && context.match_element<std::string>(0))
                         text += ": " + context.get_as<std::string>(0);
                       else if (!context.empty())
                         text += ": " + caf::to_string(context);
                       return text;
                     });
  if (with_network) {
    load<caf::io::middleman>();
    set("middleman.heartbeat-interval", caf::timespan{timing.heartbeat_interval});
    set("middleman.connection-timeout", caf::timespan{timing.connection_timeout});
  }
  // Idle scheduler workers spin (CAF's aggressive polling) on the cores LibTorch computes on;
  // skip straight to the sleeping phases. Actors that need low latency run detached.
  set("work-stealing.aggressive-poll-attempts", 0);
  set("work-stealing.moderate-poll-attempts", 0);
  // ddactor logs with spdlog; CAF's own logger stays quiet unless asked for.
  set("logger.file-verbosity", caf::atom("quiet"));
  set("logger.console-verbosity", caf::atom("quiet"));
}

} // namespace ddactor
