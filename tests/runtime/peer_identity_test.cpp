#include "runtime/peer_identity.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <thread>
#include <vector>

#include "tests/temporary_folder.hpp"

namespace ddactor {
namespace {

namespace fs = std::filesystem;

struct temp_state_dir {
  testing::temporary_folder folder{"ddactor_identity"};
  const fs::path path = folder.path();
  void write(const std::string& name, const std::string& content) const {
    std::ofstream(path / name, std::ios::binary) << content;
  }
  std::string read(const std::string& name) const {
    std::ifstream in(path / name, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
};

TEST(peer_identity, creates_folder_key_and_first_incarnation) {
  temp_state_dir dir;
  auto identity = load_or_create_identity(dir.path / "nested" / "state");
  EXPECT_TRUE(is_valid_peer_id(identity.peer_id)) << identity.peer_id;
  EXPECT_EQ(identity.peer_id, peer_id_of(identity.key.public_part()));
  EXPECT_EQ(identity.incarnation, 1u);
  auto key_file = dir.path / "nested" / "state" / "peer_key";
  std::ifstream in(key_file);
  std::string stored;
  in >> stored;
  EXPECT_EQ(stored, to_hex(identity.key.seed()));
  // Only the owner may read the key.
  EXPECT_EQ(fs::status(key_file).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
}

TEST(peer_identity, the_id_follows_the_key_and_a_key_file_can_be_named) {
  temp_state_dir dir;
  auto seed = from_hex<32>("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
  ASSERT_TRUE(seed);
  dir.write("my.key", to_hex(*seed) + "\n");
  fs::permissions(dir.path / "my.key", fs::perms::owner_read | fs::perms::owner_write);
  auto identity = load_or_create_identity(dir.path / "state", dir.path / "my.key");
  EXPECT_EQ(identity.peer_id, peer_id_of(peer_key::from_seed(*seed).public_part()));
  EXPECT_FALSE(fs::exists(dir.path / "state" / "peer_key"));
  // Signatures made with it verify under its public key, and only there.
  std::vector<uint8_t> message{1, 2, 3};
  auto sig = identity.key.sign(message);
  EXPECT_TRUE(verify_signature(identity.key.public_part(), message, sig));
  EXPECT_FALSE(verify_signature(peer_key::generate().public_part(), message, sig));
  message[0] = 9;
  EXPECT_FALSE(verify_signature(identity.key.public_part(), message, sig));
}

TEST(peer_identity, a_key_others_can_read_is_refused) {
  temp_state_dir dir;
  dir.write("peer_key", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n");
  fs::permissions(dir.path / "peer_key", fs::perms::owner_read | fs::perms::owner_write |
                                           fs::perms::group_read | fs::perms::others_read);
  try {
    load_or_create_identity(dir.path);
    FAIL() << "expected peer_identity_error";
  } catch (const peer_identity_error& e) {
    EXPECT_NE(std::string(e.what()).find("chmod 600"), std::string::npos) << e.what();
  }
}

TEST(peer_identity, id_is_stable_and_incarnation_grows) {
  temp_state_dir dir;
  auto first = load_or_create_identity(dir.path);
  for (uint64_t expected = 2; expected <= 5; ++expected) {
    auto again = load_or_create_identity(dir.path);
    EXPECT_EQ(again.peer_id, first.peer_id);
    EXPECT_EQ(again.incarnation, expected);
  }
  EXPECT_EQ(dir.read("incarnation"), "5\n");
  // No temporary files are left behind.
  for (auto& entry : fs::directory_iterator(dir.path))
    EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos) << entry.path();
}

TEST(peer_identity, keeps_an_existing_counter) {
  temp_state_dir dir;
  dir.write("incarnation", "41");
  auto identity = load_or_create_identity(dir.path);
  EXPECT_EQ(identity.incarnation, 42u);
}

TEST(peer_identity, different_folders_get_different_ids) {
  std::set<std::string> ids;
  for (int i = 0; i < 64; ++i)
    ids.insert(make_random_peer_id());
  EXPECT_EQ(ids.size(), 64u);
  for (auto& id : ids)
    EXPECT_TRUE(is_valid_peer_id(id)) << id;
}

TEST(peer_identity, concurrent_starts_get_distinct_incarnations) {
  temp_state_dir dir;
  load_or_create_identity(dir.path);
  std::vector<uint64_t> seen(8);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < seen.size(); ++i)
    threads.emplace_back([&, i] { seen[i] = load_or_create_identity(dir.path).incarnation; });
  for (auto& t : threads)
    t.join();
  std::set<uint64_t> distinct(seen.begin(), seen.end());
  EXPECT_EQ(distinct.size(), seen.size());
  EXPECT_EQ(*distinct.begin(), 2u);
  EXPECT_EQ(*distinct.rbegin(), 9u);
}

TEST(peer_identity, validates_the_id_form) {
  EXPECT_TRUE(is_valid_peer_id("0123456789abcdef0123456789abcdef"));
  EXPECT_FALSE(is_valid_peer_id(""));
  EXPECT_FALSE(is_valid_peer_id("0123456789abcdef0123456789abcde"));
  EXPECT_FALSE(is_valid_peer_id("0123456789abcdef0123456789abcdef0"));
  EXPECT_FALSE(is_valid_peer_id("0123456789ABCDEF0123456789abcdef"));
  EXPECT_FALSE(is_valid_peer_id("0123456789abcdef0123456789abcdeg"));
  EXPECT_FALSE(is_valid_peer_id(std::string("0123456789abcdef0123456789abcde\0", 32)));
  EXPECT_EQ(short_peer_id("0123456789abcdef0123456789abcdef"), "01234567");
  EXPECT_EQ(short_peer_id("abc"), "abc");
}

struct corrupt_case {
  const char* name;
  const char* file;
  std::string content;
};

class peer_identity_corrupt : public ::testing::TestWithParam<corrupt_case> {};

TEST_P(peer_identity_corrupt, names_the_file) {
  temp_state_dir dir;
  auto param = GetParam();
  dir.write(param.file, param.content);
  fs::permissions(dir.path / param.file, fs::perms::owner_read | fs::perms::owner_write);
  try {
    load_or_create_identity(dir.path);
    FAIL() << "expected peer_identity_error";
  } catch (const peer_identity_error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find((dir.path / param.file).string()), std::string::npos) << message;
    EXPECT_NE(message.find("corrupt"), std::string::npos) << message;
  }
  // A corrupt file is never overwritten: the operator decides.
  EXPECT_EQ(dir.read(param.file), param.content);
}

INSTANTIATE_TEST_SUITE_P(
  files, peer_identity_corrupt,
  ::testing::Values(
    corrupt_case{"empty_key", "peer_key", ""},
    corrupt_case{"short_key", "peer_key", "0123456789abcdef\n"},
    corrupt_case{"key_with_spaces", "peer_key", " aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"},
    corrupt_case{"two_lines", "peer_key", std::string(64, 'a') + "\n\n"},
    corrupt_case{"binary_key", "peer_key", std::string("\0\1\2\3", 4)},
    corrupt_case{"huge_key", "peer_key", std::string(100000, 'a')},
    corrupt_case{"empty_counter", "incarnation", ""},
    corrupt_case{"negative_counter", "incarnation", "-3\n"},
    corrupt_case{"word_counter", "incarnation", "seven\n"},
    corrupt_case{"overflowing_counter", "incarnation", "18446744073709551616\n"},
    corrupt_case{"maximal_counter", "incarnation", "18446744073709551615\n"},
    corrupt_case{"huge_counter", "incarnation", std::string(5000, '9')}),
  [](const auto& info) { return std::string(info.param.name); });

TEST(peer_identity, unwritable_folder_is_a_clear_error) {
  temp_state_dir dir;
  dir.write("not_a_folder", "x");
  try {
    load_or_create_identity(dir.path / "not_a_folder");
    FAIL() << "expected peer_identity_error";
  } catch (const peer_identity_error& e) {
    EXPECT_NE(std::string(e.what()).find("not_a_folder"), std::string::npos) << e.what();
  }
}

} // namespace
} // namespace ddactor
