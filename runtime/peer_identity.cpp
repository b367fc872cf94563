// Loading and creating a peer's identity files; see peer_identity.hpp.
#include "runtime/peer_identity.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <sodium.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <random>

#include "runtime/secure/private_file.hpp"

namespace ddactor {

namespace {

namespace fs = std::filesystem;

// Identity files are a line each; anything longer than this is not ours.
constexpr std::size_t max_identity_file_bytes = 128;

std::string errno_text() { return std::strerror(errno); }

// An advisory lock held for the whole load-or-create, so two processes on one folder serialize.
class identity_lock {
 public:
  explicit identity_lock(const fs::path& path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0)
      throw peer_identity_error("cannot open lock file " + path.string() + ": " + errno_text());
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno == EINTR)
        continue;
      auto text = errno_text();
      ::close(fd_);
      throw peer_identity_error("cannot lock " + path.string() + ": " + text);
    }
  }
  ~identity_lock() {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }
  identity_lock(const identity_lock&) = delete;
  identity_lock& operator=(const identity_lock&) = delete;

 private:
  int fd_ = -1;
};

// The file's content without one trailing newline; nullopt if the file does not exist.
std::optional<std::string> read_small_file(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw peer_identity_error("cannot read " + path.string());
  std::string content(max_identity_file_bytes + 1, '\0');
  in.read(content.data(), static_cast<std::streamsize>(content.size()));
  content.resize(static_cast<std::size_t>(in.gcount()));
  if (in.bad())
    throw peer_identity_error("cannot read " + path.string());
  if (content.size() > max_identity_file_bytes)
    throw peer_identity_error("corrupt identity file " + path.string() + ": longer than " +
                              std::to_string(max_identity_file_bytes) + " bytes");
  if (!content.empty() && content.back() == '\n')
    content.pop_back();
  return content;
}

// The file's whole content (up to the identity limit), or "" when missing or unreadable.
std::string read_small_file_or_empty(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string content(max_identity_file_bytes + 1, '\0');
  in.read(content.data(), static_cast<std::streamsize>(content.size()));
  content.resize(static_cast<std::size_t>(in.gcount()));
  return content;
}

void write_all(int fd, const std::string& content, const fs::path& path) {
  std::size_t done = 0;
  while (done < content.size()) {
    auto n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      throw peer_identity_error("cannot write " + path.string() + ": " + errno_text());
    done += static_cast<std::size_t>(n);
  }
}

// Temporary file, fsync, rename, fsync of the folder: a crash leaves the old or the new content.
void write_file_atomically(const fs::path& path, const std::string& content,
                           mode_t mode = 0644) {
  auto temporary = path;
  temporary += ".tmp." + std::to_string(::getpid());
  ::unlink(temporary.c_str());
  int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0)
    throw peer_identity_error("cannot create " + temporary.string() + ": " + errno_text());
  try {
    write_all(fd, content, temporary);
    if (::fsync(fd) != 0)
      throw peer_identity_error("cannot sync " + temporary.string() + ": " + errno_text());
  } catch (...) {
    ::close(fd);
    ::unlink(temporary.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    auto text = errno_text();
    ::unlink(temporary.c_str());
    throw peer_identity_error("cannot replace " + path.string() + ": " + text);
  }
  int dir_fd = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

std::optional<uint64_t> parse_counter(const std::string& text) {
  if (text.empty() || text.size() > 20)
    return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      return std::nullopt;
    auto digit = static_cast<uint64_t>(c - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10)
      return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

} // namespace

peer_key load_or_create_peer_key(const std::filesystem::path& path) {
  auto stored = read_small_file(path);
  if (!stored) {
    auto key = peer_key::generate();
    fs::create_directories(path.parent_path().empty() ? fs::path(".") : path.parent_path());
    write_file_atomically(path, to_hex(key.seed()) + "\n", 0600);
    return key;
  }
  if (readable_by_others(path))
    throw peer_identity_error("key file " + path.string() +
                              " can be read by other users: run chmod 600 on it");
  auto seed = from_hex<32>(*stored);
  if (!seed)
    throw peer_identity_error("corrupt identity file " + path.string() +
                              ": expected 64 hex characters (an Ed25519 seed)");
  auto key = peer_key::from_seed(*seed);
  sodium_memzero(stored->data(), stored->size());
  return key;
}

bool is_valid_peer_id(std::string_view text) noexcept {
  if (text.size() != peer_id_length)
    return false;
  for (char c : text)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  return true;
}

std::string short_peer_id(std::string_view peer_id) {
  return std::string(peer_id.substr(0, 8));
}

std::string make_random_peer_id() {
  std::array<unsigned char, peer_id_length / 2> bytes{};
  std::size_t filled = 0;
  while (filled < bytes.size()) {
    auto n = ::getrandom(bytes.data() + filled, bytes.size() - filled, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    filled += static_cast<std::size_t>(n);
  }
  if (filled < bytes.size()) {
    // getrandom unavailable (old kernel, seccomp): random_device reads the same kernel source.
    std::random_device device;
    for (auto& b : bytes)
      b = static_cast<unsigned char>(device() & 0xffu);
  }
  static constexpr char digits[] = "0123456789abcdef";
  std::string id;
  id.reserve(peer_id_length);
  for (auto b : bytes) {
    id.push_back(digits[b >> 4]);
    id.push_back(digits[b & 0x0fu]);
  }
  return id;
}

peer_identity load_or_create_identity(const std::filesystem::path& state_dir,
                                      const std::filesystem::path& key_file) {
  std::error_code ec;
  fs::create_directories(state_dir, ec);
  if (ec || !fs::is_directory(state_dir))
    throw peer_identity_error("cannot create state folder " + state_dir.string() +
                              (ec ? ": " + ec.message() : ": not a folder"));
  identity_lock lock(state_dir / "identity.lock");

  peer_identity identity{load_or_create_peer_key(key_file.empty() ? state_dir / "peer_key" : key_file),
                         {}, 0};
  identity.peer_id = peer_id_of(identity.key.public_part());
  // For people and tools (an allowlist entry, `ddactor status`): derived, never read back.
  for (const auto& [name, text] :
       {std::pair{"peer_id", identity.peer_id}, {"public_key", to_hex(identity.key.public_part())}})
    if (read_small_file_or_empty(state_dir / name) != text + "\n")
      write_file_atomically(state_dir / name, text + "\n");

  auto incarnation_path = state_dir / "incarnation";
  uint64_t previous = 0;
  if (auto stored = read_small_file(incarnation_path)) {
    auto parsed = parse_counter(*stored);
    if (!parsed)
      throw peer_identity_error("corrupt identity file " + incarnation_path.string() +
                                ": expected a decimal counter");
    if (*parsed == std::numeric_limits<uint64_t>::max())
      throw peer_identity_error("corrupt identity file " + incarnation_path.string() +
                                ": counter at its maximum");
    previous = *parsed;
  }
  identity.incarnation = previous + 1;
  write_file_atomically(incarnation_path, std::to_string(identity.incarnation) + "\n");
  return identity;
}

} // namespace ddactor
