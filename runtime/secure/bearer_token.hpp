#pragma once
// The secret an HTTP client presents as "Authorization: Bearer <token>" to use an API that
// costs compute (POST /v1/generate of `ddactor serve`). It comes from a file only its owner can
// read (serve.token_file) or from the environment (DDACTOR_SERVE_TOKEN), never from the run
// file itself, and is compared in constant time.

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ddactor {

class bearer_token_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class bearer_token {
 public:
  /// From `file` (its first line; refused if other users can read the file) or, where `file` is
  /// empty, from `environment` (may be null or empty): nullopt when neither holds one. A token
  /// is 16 to 256 printable ASCII characters without spaces; throws bearer_token_error naming
  /// where it came from otherwise.
  static std::optional<bearer_token> load(const std::filesystem::path& file,
                                          const char* environment);
  explicit bearer_token(std::string secret);

  /// Whether an Authorization header's value presents this token ("Bearer <token>").
  bool admits(std::string_view authorization) const;

 private:
  std::string secret_;
};

} // namespace ddactor
