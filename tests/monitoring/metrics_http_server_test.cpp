// Tests of monitoring/metrics_http_server: /metrics, /healthz and 404 over real loopback HTTP
// (httplib::Client), ephemeral ports, a taken port, stop and restart, and listen addresses.

#include "monitoring/metrics_http_server.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "monitoring/prometheus_exposition.hpp"

namespace ddactor {
namespace {

constexpr const char* loopback = "127.0.0.1";

httplib::Client client_for(const metrics_http_server& server) {
  httplib::Client client(loopback, server.port());
  client.set_connection_timeout(5);
  client.set_read_timeout(5);
  return client;
}

TEST(metrics_http_server_test, serves_the_registry_on_an_ephemeral_port) {
  metrics_registry registry;
  auto& steps = registry.counter("ddactor_steps_total", "Steps.", {"peer"});
  steps.with({"a\"b"}).inc(7);
  metrics_http_server server(registry);
  EXPECT_FALSE(server.running());
  server.start(loopback, 0);
  ASSERT_TRUE(server.running());
  ASSERT_NE(server.port(), 0);

  auto client = client_for(server);
  auto response = client.Get("/metrics");
  ASSERT_TRUE(response) << httplib::to_string(response.error());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(response->body, render_prometheus_text(registry));
  EXPECT_NE(response->body.find("ddactor_steps_total{peer=\"a\\\"b\"} 7\n"), std::string::npos)
      << response->body;

  steps.with({"a\"b"}).inc();  // each scrape sees the current values
  response = client.Get("/metrics");
  ASSERT_TRUE(response);
  EXPECT_NE(response->body.find("ddactor_steps_total{peer=\"a\\\"b\"} 8\n"), std::string::npos);
}

TEST(metrics_http_server_test, other_paths_are_not_found) {
  metrics_registry registry;
  metrics_http_server server(registry);
  server.start(loopback, 0);
  auto client = client_for(server);
  for (const char* path : {"/", "/metric", "/metrics/x", "/healthz2", "/favicon.ico"}) {
    auto response = client.Get(path);
    ASSERT_TRUE(response) << path;
    EXPECT_EQ(response->status, 404) << path;
  }
  auto post = client.Post("/metrics", "x", "text/plain");
  ASSERT_TRUE(post);
  EXPECT_NE(post->status, 200);
}

TEST(metrics_http_server_test, healthz_reports_the_callback) {
  metrics_registry registry;
  std::atomic<bool> failing{false};
  metrics_http_server server(registry, [&] {
    if (failing) return health_report{false, "failing", "trainer crashed 3 times"};
    return health_report{true, "training", "epoch 12, step 4500"};
  });
  server.start(loopback, 0);
  auto client = client_for(server);

  auto response = client.Get("/healthz");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->get_header_value("Content-Type"), "application/json");
  auto body = nlohmann::json::parse(response->body);
  EXPECT_EQ(body["status"], "training");
  EXPECT_EQ(body["healthy"], true);
  EXPECT_EQ(body["detail"], "epoch 12, step 4500");

  failing = true;
  response = client.Get("/healthz");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 503);
  body = nlohmann::json::parse(response->body);
  EXPECT_EQ(body["status"], "failing");
  EXPECT_EQ(body["healthy"], false);
  EXPECT_EQ(body["detail"], "trainer crashed 3 times");
}

TEST(metrics_http_server_test, healthz_without_callback_is_ok_and_throwing_callback_fails) {
  metrics_registry registry;
  metrics_http_server plain(registry);
  plain.start(loopback, 0);
  auto response = client_for(plain).Get("/healthz");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(nlohmann::json::parse(response->body)["status"], "ok");

  metrics_http_server broken(registry,
                             []() -> health_report { throw std::runtime_error("no state"); });
  broken.start(loopback, 0);
  response = client_for(broken).Get("/healthz");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 503);
  EXPECT_EQ(nlohmann::json::parse(response->body)["detail"], "no state");
}

TEST(metrics_http_server_test, health_json_survives_invalid_utf8) {
  const auto text = render_health_json(health_report{false, "failing", "bad \xff byte \"q\""});
  const auto body = nlohmann::json::parse(text);
  EXPECT_EQ(body["healthy"], false);
  EXPECT_EQ(body["detail"], "bad \xef\xbf\xbd byte \"q\"");
}

TEST(metrics_http_server_test, a_taken_port_is_a_clear_error) {
  metrics_registry registry;
  metrics_http_server first(registry);
  first.start(loopback, 0);
  metrics_http_server second(registry);
  try {
    second.start(loopback, first.port());
    FAIL() << "a second server bound the same port";
  } catch (const metrics_server_error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("127.0.0.1:" + std::to_string(first.port())), std::string::npos)
        << message;
    EXPECT_NE(message.find("in use"), std::string::npos) << message;
  }
  EXPECT_FALSE(second.running());
  // The first one is unharmed.
  auto response = client_for(first).Get("/metrics");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
}

TEST(metrics_http_server_test, a_port_held_by_another_socket_is_refused) {
  const int holder = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(holder, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = 0;
  ::inet_pton(AF_INET, loopback, &address.sin_addr);
  ASSERT_EQ(::bind(holder, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(holder, 1), 0);
  socklen_t length = sizeof address;
  ASSERT_EQ(::getsockname(holder, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const auto port = ntohs(address.sin_port);

  metrics_registry registry;
  metrics_http_server server(registry);
  EXPECT_THROW(server.start(loopback, port), metrics_server_error);
  ::close(holder);
}

TEST(metrics_http_server_test, stop_is_clean_idempotent_and_restartable) {
  metrics_registry registry;
  metrics_http_server server(registry);
  server.start(loopback, 0);
  EXPECT_THROW(server.start(loopback, 0), metrics_server_error);  // already running
  const auto port = server.port();
  {
    // A kept-alive connection must not hold stop() back for long.
    httplib::Client client(loopback, port);
    client.set_keep_alive(true);
    ASSERT_TRUE(client.Get("/metrics"));
    server.stop();
  }
  EXPECT_FALSE(server.running());
  EXPECT_EQ(server.port(), 0);
  httplib::Client refused(loopback, port);
  refused.set_connection_timeout(2);
  EXPECT_FALSE(refused.Get("/metrics"));
  server.stop();

  server.start(loopback, 0);
  auto response = client_for(server).Get("/healthz");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
}

TEST(metrics_http_server_test, start_then_stop_at_once_does_not_hang) {
  metrics_registry registry;
  for (int i = 0; i < 20; ++i) {
    metrics_http_server server(registry);
    server.start(loopback, 0);
    server.stop();
  }
  for (int i = 0; i < 20; ++i) {
    metrics_http_server server(registry);
    server.start(loopback, 0);  // the destructor stops it
  }
}

TEST(metrics_http_server_test, scrapes_run_beside_updates) {
  metrics_registry registry;
  auto& updates = registry.counter("ddactor_updates_total", "Updates.").with();
  auto& latency = registry.histogram("ddactor_latency_seconds", "L.", {}, {0.1, 1}).with();
  metrics_http_server server(registry);
  server.start(loopback, 0);
  std::atomic<bool> done{false};
  std::thread updater([&] {
    while (!done) {
      updates.inc();
      latency.observe(0.5);
    }
  });
  while (updates.value() < 1000) std::this_thread::yield();

  // Every scrape succeeds and sees a count at least as large as the one before.
  const std::string count_prefix = "\nddactor_updates_total ";
  double previous = 1000;
  auto client = client_for(server);
  for (int i = 0; i < 20; ++i) {
    auto response = client.Get("/metrics");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200);
    const auto at = response->body.find(count_prefix);
    ASSERT_NE(at, std::string::npos) << response->body;
    const double scraped = std::stod(response->body.substr(at + count_prefix.size()));
    EXPECT_GE(scraped, previous);
    previous = scraped;
  }
  done = true;
  updater.join();
  EXPECT_LE(previous, updates.value());
}

TEST(metrics_http_server_test, bad_host_is_a_clear_error) {
  metrics_registry registry;
  metrics_http_server server(registry);
  EXPECT_THROW(server.start("203.0.113.77", 0), metrics_server_error);  // not ours (TEST-NET-3)
  EXPECT_FALSE(server.running());
}

struct parsed_address {
  std::string text;
  std::string host;
  std::uint16_t port;
};

class listen_address_test : public testing::TestWithParam<parsed_address> {};

TEST_P(listen_address_test, parses) {
  const auto address = parse_listen_address(GetParam().text);
  EXPECT_EQ(address.host, GetParam().host);
  EXPECT_EQ(address.port, GetParam().port);
}

INSTANTIATE_TEST_SUITE_P(
    metrics_http_server, listen_address_test,
    testing::Values(parsed_address{"127.0.0.1:9100", "127.0.0.1", 9100},
                    parsed_address{"0.0.0.0:0", "0.0.0.0", 0},
                    parsed_address{":9090", "0.0.0.0", 9090},
                    parsed_address{"localhost:65535", "localhost", 65535},
                    parsed_address{"[::1]:8080", "::1", 8080},
                    parsed_address{"[::]:1", "::", 1}));

class bad_listen_address_test : public testing::TestWithParam<std::string> {};

TEST_P(bad_listen_address_test, is_refused) {
  EXPECT_THROW(parse_listen_address(GetParam()), metrics_server_error);
}

INSTANTIATE_TEST_SUITE_P(metrics_http_server, bad_listen_address_test,
                         testing::Values("", "9100", "host", "host:", "host:65536",
                                         "host:-1", "host:12a", "host: 80", "::1:80", "[::1:80",
                                         "[]:80", "host:99999999999999999999"));

}  // namespace
}  // namespace ddactor
