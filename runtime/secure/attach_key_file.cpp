// Reading and creating the run's attach key; see attach_key_file.hpp.
#include "runtime/secure/attach_key_file.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "runtime/secure/peer_key.hpp"
#include "runtime/secure/private_file.hpp"

namespace ddactor {

attach_key read_attach_key(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in)
    throw attach_key_error("cannot read the attach key " + file.string() +
                           " (is the peer running with run.attach = true?)");
  if (readable_by_others(file))
    throw attach_key_error("attach key " + file.string() +
                           " can be read by other users: run chmod 600 on it");
  std::string text;
  std::getline(in, text);
  auto key = from_hex<32>(text);
  if (!key)
    throw attach_key_error(file.string() + " does not hold an attach key (64 hex characters)");
  sodium_memzero(text.data(), text.size());
  return *key;
}

attach_key load_or_create_attach_key(const std::filesystem::path& file) {
  require_sodium();
  attach_key key{};
  randombytes_buf(key.data(), key.size());
  auto text = to_hex(key) + "\n";
  // O_EXCL: a key that exists (an earlier run, or a racing writer) is kept and read.
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    const auto written = ::write(fd, text.data(), text.size());
    ::fsync(fd);
    ::close(fd);
    sodium_memzero(text.data(), text.size());
    if (written != static_cast<ssize_t>(text.size()))
      throw attach_key_error("cannot write the attach key " + file.string());
    return key;
  }
  sodium_memzero(text.data(), text.size());
  if (errno != EEXIST)
    throw attach_key_error("cannot create the attach key " + file.string() + ": " +
                           std::strerror(errno));
  return read_attach_key(file);
}

} // namespace ddactor
