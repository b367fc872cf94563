// The data loader actor in a real actor system: it never sends more batches than it has
// credits, and its order is the deterministic shuffled order from any (epoch, position).
#include "actors/data_loader.hpp"

#include <gtest/gtest.h>

#include "runtime/actor_system_setup.hpp"
#include "runtime/actor_system_shutdown.hpp"
#include "runtime/data_order.hpp"

namespace ddactor {
namespace {

std::shared_ptr<const image_dataset> numbered_images(int64_t n) {
  auto data = std::make_shared<image_dataset>();
  data->count = n;
  data->channels = 1;
  data->height = data->width = 2;
  for (int64_t i = 0; i < n; ++i) {
    for (int p = 0; p < 4; ++p)
      data->pixels.push_back(static_cast<uint8_t>(i));
    data->labels.push_back(i);
  }
  return data;
}

class data_loader_actor_test : public ::testing::Test {
 protected:
  ddactor_system_config cfg{{}, /*with_network=*/false};
  caf::actor_system system{cfg};
  detached_actor_guard guard{system, std::chrono::seconds(20)};
  caf::scoped_actor self{system};

  std::vector<std::shared_ptr<const training_batch>> receive_batches(size_t n) {
    std::vector<std::shared_ptr<const training_batch>> out;
    for (size_t i = 0; i < n; ++i)
      self->receive([&](const batch_message& m) { out.push_back(m.batch); },
                    caf::after(std::chrono::seconds(5)) >> [&] { ADD_FAILURE() << "timeout"; });
    return out;
  }

  bool nothing_more_arrives() {
    bool quiet = true;
    self->receive([&](const batch_message&) { quiet = false; },
                  caf::after(std::chrono::milliseconds(200)) >> [] {});
    return quiet;
  }
};

data_loader_options loader_options(std::shared_ptr<const image_dataset> data, int batch_size,
                                   uint64_t seed, uint64_t generation, int64_t crash_after = 0) {
  data_loader_options options;
  options.data = std::move(data);
  options.batch_size = batch_size;
  options.seed = seed;
  options.generation = generation;
  options.crash_after_batches = crash_after;
  return options;
}

TEST_F(data_loader_actor_test, sends_no_more_batches_than_credits) {
  auto loader = spawn_data_loader(system, loader_options(numbered_images(50), 4, 7, 1));
  self->send(loader, fetch_atom_v, caf::actor_cast<batch_sink_actor>(self), int64_t{0},
             int64_t{0}, int32_t{3});
  auto batches = receive_batches(3);
  EXPECT_TRUE(nothing_more_arrives());
  self->send(loader, credit_atom_v, int32_t{2});
  auto more = receive_batches(2);
  EXPECT_TRUE(nothing_more_arrives());
  self->send_exit(loader, caf::exit_reason::user_shutdown);
}

TEST_F(data_loader_actor_test, follows_the_deterministic_order_from_any_position) {
  auto data = numbered_images(10);
  auto loader = spawn_data_loader(system, loader_options(data, 4, 11, 5));
  // Start in the middle of epoch 1: batches continue into epoch 2.
  self->send(loader, fetch_atom_v, caf::actor_cast<batch_sink_actor>(self), int64_t{1},
             int64_t{8}, int32_t{2});
  auto batches = receive_batches(2);
  shuffled_order order(10, 11);
  data_cursor cursor{1, 8};
  for (const auto& b : batches) {
    auto expected = order.next_batch(cursor, 4);
    ASSERT_EQ(b->labels, expected);
    EXPECT_EQ(b->epoch_after, cursor.epoch);
    EXPECT_EQ(b->position_after, cursor.position);
    EXPECT_EQ(b->loader_generation, 5u);
    // Pixel value i maps to i / 127.5 - 1.
    EXPECT_FLOAT_EQ(b->images[0], static_cast<float>(expected[0]) / 127.5f - 1.0f);
  }
  self->send_exit(loader, caf::exit_reason::user_shutdown);
}

TEST_F(data_loader_actor_test, shards_of_a_node_cut_its_batches_into_slices) {
  // Three trainers of batch 2: together they see the batches of 6 that one loader would send.
  auto data = numbered_images(10);
  std::vector<std::vector<std::shared_ptr<const training_batch>>> slices;
  for (int shard = 0; shard < 3; ++shard) {
    auto options = loader_options(data, 2, 11, 1);
    options.shard = shard;
    options.shards = 3;
    auto loader = spawn_data_loader(system, options);
    self->send(loader, fetch_atom_v, caf::actor_cast<batch_sink_actor>(self), int64_t{0},
               int64_t{4}, int32_t{2});
    slices.push_back(receive_batches(2));
    self->send_exit(loader, caf::exit_reason::user_shutdown);
  }
  shuffled_order order(10, 11);
  data_cursor cursor{0, 4};
  for (size_t step = 0; step < 2; ++step) {
    const auto node = order.next_batch(cursor, 6);
    for (int shard = 0; shard < 3; ++shard) {
      const auto& b = *slices[static_cast<size_t>(shard)][step];
      EXPECT_EQ(b.labels, std::vector<int64_t>(node.begin() + 2 * shard,
                                               node.begin() + 2 * shard + 2));
      EXPECT_EQ(b.count, 2);
      EXPECT_EQ(b.node_offset, 2 * shard);
      EXPECT_EQ(b.node_count, 6);
      EXPECT_EQ(b.epoch_after, cursor.epoch);
      EXPECT_EQ(b.position_after, cursor.position);
    }
  }
  auto bad = loader_options(data, 2, 11, 1);
  bad.shard = 3;
  bad.shards = 3;
  EXPECT_THROW(spawn_data_loader(system, bad), std::invalid_argument);
}

TEST_F(data_loader_actor_test, injected_crash_ends_the_actor_with_an_error) {
  auto loader = spawn_data_loader(system, loader_options(numbered_images(10), 2, 1, 1, /*crash after*/ 2));
  self->monitor(loader);
  self->send(loader, fetch_atom_v, caf::actor_cast<batch_sink_actor>(self), int64_t{0},
             int64_t{0}, int32_t{5});
  receive_batches(2);
  bool down = false;
  self->receive([&](const caf::down_msg& dm) {
    down = true;
    EXPECT_TRUE(dm.reason);
  },
                [](const batch_message&) { ADD_FAILURE() << "batch after the crash point"; },
                caf::after(std::chrono::seconds(5)) >> [] {});
  EXPECT_TRUE(down);
}

} // namespace
} // namespace ddactor
