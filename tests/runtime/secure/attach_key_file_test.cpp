// The run's attach key file: created once with mode 0600 and then the same key for every reader
// (peer restarts, trainers), refused when other users may read it or when it holds no key.
#include "runtime/secure/attach_key_file.hpp"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <fstream>

#include "tests/temporary_folder.hpp"

namespace ddactor {
namespace {

class attach_key_file : public ::testing::Test {
 protected:
  testing::temporary_folder dir_{"ddactor_attach_key"};
};

TEST_F(attach_key_file, is_created_once_private_and_read_back_alike) {
  const auto file = dir_ / "attach.key";
  EXPECT_THROW(read_attach_key(file), attach_key_error);
  const auto key = load_or_create_attach_key(file);
  struct stat info {};
  ASSERT_EQ(::stat(file.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  EXPECT_EQ(load_or_create_attach_key(file), key);  // kept across restarts
  EXPECT_EQ(read_attach_key(file), key);
  EXPECT_NE(load_or_create_attach_key(dir_ / "other.key"), key);
}

TEST_F(attach_key_file, a_loose_or_malformed_file_is_refused) {
  const auto file = dir_ / "attach.key";
  load_or_create_attach_key(file);
  std::filesystem::permissions(file, std::filesystem::perms::group_read,
                               std::filesystem::perm_options::add);
  EXPECT_THROW(read_attach_key(file), attach_key_error);
  EXPECT_THROW(load_or_create_attach_key(file), attach_key_error);
  const auto garbage = dir_ / "garbage.key";
  std::ofstream(garbage) << "not a key\n";
  std::filesystem::permissions(garbage, std::filesystem::perms::owner_read |
                                          std::filesystem::perms::owner_write);
  EXPECT_THROW(read_attach_key(garbage), attach_key_error);
}

} // namespace
} // namespace ddactor
