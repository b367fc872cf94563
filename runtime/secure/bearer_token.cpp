// Bearer tokens for the HTTP API; see bearer_token.hpp.
#include "runtime/secure/bearer_token.hpp"

#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <fstream>

#include "runtime/secure/private_file.hpp"

namespace ddactor {

namespace {

constexpr std::size_t min_token = 16;
constexpr std::size_t max_token = 256;

bool valid_token(std::string_view text) {
  return text.size() >= min_token && text.size() <= max_token &&
         std::all_of(text.begin(), text.end(), [](char c) { return c > ' ' && c < 127; });
}

} // namespace

bearer_token::bearer_token(std::string secret) : secret_(std::move(secret)) {
  if (!valid_token(secret_))
    throw bearer_token_error("a bearer token is 16 to 256 printable characters without spaces");
}

std::optional<bearer_token> bearer_token::load(const std::filesystem::path& file,
                                               const char* environment) {
  if (file.empty()) {
    if (environment == nullptr || *environment == '\0')
      return std::nullopt;
    if (!valid_token(environment))
      throw bearer_token_error("DDACTOR_SERVE_TOKEN must be 16 to 256 printable characters "
                               "without spaces");
    return bearer_token(environment);
  }
  std::ifstream in(file);
  if (!in)
    throw bearer_token_error("cannot read the token file " + file.string() +
                             " (serve.token_file)");
  if (readable_by_others(file))
    throw bearer_token_error("token file " + file.string() +
                             " can be read by other users: run chmod 600 on it");
  std::string line;
  std::getline(in, line);
  if (!line.empty() && line.back() == '\r')
    line.pop_back();
  if (!valid_token(line))
    throw bearer_token_error("token file " + file.string() +
                             " must hold one line of 16 to 256 printable characters without "
                             "spaces (serve.token_file)");
  return bearer_token(std::move(line));
}

bool bearer_token::admits(std::string_view authorization) const {
  constexpr std::string_view scheme = "Bearer ";
  if (authorization.size() != scheme.size() + secret_.size() ||
      !std::equal(scheme.begin(), scheme.end(), authorization.begin(),
                  [](char a, char b) {
                    return std::tolower(static_cast<unsigned char>(a)) ==
                           std::tolower(static_cast<unsigned char>(b));
                  }))
    return false;
  // The length is no secret (it is bounded and logged nowhere); the bytes are compared in
  // constant time.
  return sodium_memcmp(authorization.data() + scheme.size(), secret_.data(), secret_.size()) == 0;
}

} // namespace ddactor
