// Reading the swarm key and allowlist of a run; see swarm_admission.hpp.
#include "runtime/secure/swarm_admission.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "runtime/secure/private_file.hpp"

namespace ddactor {

namespace {

std::optional<symmetric_key> parse_key_text(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
    text.pop_back();
  auto key = from_hex<32>(text);
  sodium_memzero(text.data(), text.size());
  return key;
}

} // namespace

symmetric_key read_swarm_key(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in)
    throw admission_error("cannot read the swarm key file " + file.string() +
                          " (network.swarm_key_file)");
  if (readable_by_others(file))
    throw admission_error("swarm key file " + file.string() +
                          " can be read by other users: run chmod 600 on it");
  std::string text(200, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  auto key = parse_key_text(std::move(text));
  if (!key)
    throw admission_error("swarm key file " + file.string() +
                          " does not hold a swarm key (64 hex characters, as `ddactor keys "
                          "--new-swarm-key FILE` writes it)");
  return *key;
}

void write_new_swarm_key(const std::filesystem::path& file) {
  require_sodium();
  symmetric_key key{};
  randombytes_buf(key.data(), key.size());
  auto text = to_hex(key) + "\n";
  sodium_memzero(key.data(), key.size());
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    throw admission_error("cannot create " + file.string() + ": " + std::strerror(errno));
  auto written = ::write(fd, text.data(), text.size());
  ::fsync(fd);
  ::close(fd);
  sodium_memzero(text.data(), text.size());
  if (written != static_cast<ssize_t>(text.size()))
    throw admission_error("cannot write " + file.string());
}

std::optional<symmetric_key> swarm_key_from(const std::filesystem::path& file,
                                            const char* environment_key) {
  if (!file.empty())
    return read_swarm_key(file);
  if (!environment_key || !*environment_key)
    return std::nullopt;
  auto key = parse_key_text(environment_key);
  if (!key)
    throw admission_error("DDACTOR_SWARM_KEY does not hold a swarm key (64 hex characters)");
  return key;
}

admission_policy admission_of_run(const network_section& network, const char* environment_key) {
  auto swarm_key = swarm_key_from(network.swarm_key_file, environment_key);
  std::set<public_key> allowlist;
  for (const auto& text : network.allowlist)
    if (auto key = from_hex<32>(text))
      allowlist.insert(*key);
  if (!swarm_key && allowlist.empty() && !network.open)
    throw admission_error(
      "network.listen is set but nothing says who may join this swarm: give every peer the same "
      "swarm key (`ddactor keys --new-swarm-key swarm.key`, then network.swarm_key_file = "
      "\"swarm.key\" or DDACTOR_SWARM_KEY), list peers' public keys in network.allowlist, or set "
      "network.open = true for a swarm anyone may join");
  return admission_policy::of_swarm(swarm_key, std::move(allowlist));
}

} // namespace ddactor
