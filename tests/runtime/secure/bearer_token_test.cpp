// Bearer tokens for `ddactor serve`: from a file only its owner reads, or the environment; only
// "Bearer <the token>" is admitted; bad tokens and loose files are refused naming where.
#include "runtime/secure/bearer_token.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace ddactor {
namespace {

struct token_file {
  std::filesystem::path path =
    std::filesystem::temp_directory_path() / ("ddactor_token_" + std::to_string(::getpid()));
  explicit token_file(const std::string& text,
                      std::filesystem::perms perms = std::filesystem::perms::owner_read |
                                                     std::filesystem::perms::owner_write) {
    std::ofstream(path) << text;
    std::filesystem::permissions(path, perms);
  }
  ~token_file() { std::filesystem::remove(path); }
};

TEST(bearer_token, only_the_exact_token_is_admitted) {
  bearer_token token("s3cret-token-0123456789");
  EXPECT_TRUE(token.admits("Bearer s3cret-token-0123456789"));
  EXPECT_TRUE(token.admits("bearer s3cret-token-0123456789"));  // the scheme is case-blind
  EXPECT_FALSE(token.admits("Bearer s3cret-token-0123456788"));
  EXPECT_FALSE(token.admits("Bearer s3cret-token-012345678"));
  EXPECT_FALSE(token.admits("Bearer s3cret-token-01234567890"));
  EXPECT_FALSE(token.admits("Basic s3cret-token-0123456789"));
  EXPECT_FALSE(token.admits("s3cret-token-0123456789"));
  EXPECT_FALSE(token.admits(""));
}

TEST(bearer_token, comes_from_a_private_file_or_the_environment) {
  EXPECT_FALSE(bearer_token::load("", nullptr));
  EXPECT_FALSE(bearer_token::load("", ""));
  auto from_env = bearer_token::load("", "environment-token-42");
  ASSERT_TRUE(from_env);
  EXPECT_TRUE(from_env->admits("Bearer environment-token-42"));
  EXPECT_THROW(bearer_token::load("", "short"), bearer_token_error);
  {
    token_file file("file-token-abcdefgh\n");
    auto from_file = bearer_token::load(file.path, "environment-token-42");  // the file wins
    ASSERT_TRUE(from_file);
    EXPECT_TRUE(from_file->admits("Bearer file-token-abcdefgh"));
  }
  {
    token_file loose("file-token-abcdefgh\n", std::filesystem::perms::owner_read |
                                                  std::filesystem::perms::group_read);
    try {
      bearer_token::load(loose.path, nullptr);
      ADD_FAILURE() << "a token file others can read was taken";
    } catch (const bearer_token_error& e) {
      EXPECT_NE(std::string(e.what()).find("chmod 600"), std::string::npos) << e.what();
    }
  }
  {
    token_file spaced("two words here for a token\n");
    EXPECT_THROW(bearer_token::load(spaced.path, nullptr), bearer_token_error);
  }
  EXPECT_THROW(bearer_token::load("/nonexistent/ddactor-token", nullptr), bearer_token_error);
}

} // namespace
} // namespace ddactor
