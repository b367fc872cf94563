// `ddactor keys`: a peer's identity for allowlists, and new swarm keys; see commands.hpp.
#include <iostream>

#include "app/commands.hpp"
#include "runtime/peer_identity.hpp"
#include "runtime/secure/swarm_admission.hpp"

namespace ddactor {

int keys_command(const run_config& config) {
  auto file = config.network.identity_file.empty() ? config.run_dir() / "peer" / "peer_key"
                                                   : config.network.identity_file;
  try {
    auto key = load_or_create_peer_key(file);
    std::cout << "peer id     " << peer_id_of(key.public_part()) << "\n"
              << "public key  " << to_hex(key.public_part()) << "\n"
              << "key file    " << file.string() << "\n"
              << "(other peers admit this one with network.allowlist = [\""
              << to_hex(key.public_part()) << "\"])\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "ddactor keys: " << e.what() << "\n";
    return 2;
  }
}

int new_swarm_key_command(const std::filesystem::path& file) {
  try {
    write_new_swarm_key(file);
  } catch (const std::exception& e) {
    std::cerr << "ddactor keys: " << e.what() << "\n";
    return 2;
  }
  std::cout << "wrote a new swarm key to " << file.string() << " (mode 0600)\n"
            << "give it to every peer of the swarm: network.swarm_key_file = \"" << file.string()
            << "\", or its content in DDACTOR_SWARM_KEY\n";
  return 0;
}

} // namespace ddactor
