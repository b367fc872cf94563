// Tests of monitoring/status_page over real loopback HTTP: "/" is one self-contained page (no
// resource from elsewhere, a policy that forbids them) and "/status.json" is the board's
// snapshot, current at every request. The page's behaviour in a browser is tested end to end in
// tests/e2e/status_test.cpp.
#include "monitoring/status_page.hpp"

#include <gtest/gtest.h>
#include <httplib.h>

#include <regex>

namespace ddactor {
namespace {

constexpr const char* loopback = "127.0.0.1";
const std::string self_id = "0123456789abcdef0123456789abcdef";

httplib::Client client_for(const metrics_http_server& server) {
  httplib::Client client(loopback, server.port());
  client.set_connection_timeout(5);
  client.set_read_timeout(5);
  return client;
}

TEST(status_page_test, the_page_is_self_contained) {
  auto html = std::string(status_page_html());
  EXPECT_TRUE(html.starts_with("<!DOCTYPE html>"));
  EXPECT_NE(html.find("<html lang=\"en\">"), std::string::npos);
  // Nothing is loaded from elsewhere: no URL with a scheme or host, no external script, style
  // sheet or image; the one fetch is relative.
  EXPECT_FALSE(std::regex_search(html, std::regex(R"((https?:)?//[a-z0-9])", std::regex::icase)));
  EXPECT_FALSE(std::regex_search(html, std::regex(R"(<script[^>]*\bsrc=)")));
  EXPECT_FALSE(std::regex_search(html, std::regex(R"(<link[^>]*stylesheet)")));
  EXPECT_FALSE(std::regex_search(html, std::regex(R"(<img\b)")));
  EXPECT_NE(html.find("fetch(\"status.json\""), std::string::npos);
  // Data reaches the document as text, never as markup.
  EXPECT_EQ(html.find("innerHTML"), std::string::npos);
  EXPECT_EQ(html.find("document.write"), std::string::npos);
}

TEST(status_page_test, serves_the_page_and_the_current_snapshot) {
  metrics_registry registry;
  swarm_status_board board([] { return std::string("training"); });
  metrics_http_server server(registry);
  add_status_pages(server, board);
  server.start(loopback, 0);
  auto client = client_for(server);

  auto page = client.Get("/");
  ASSERT_TRUE(page) << httplib::to_string(page.error());
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(page->body, status_page_html());
  auto policy = page->get_header_value("Content-Security-Policy");
  EXPECT_NE(policy.find("default-src 'none'"), std::string::npos) << policy;
  EXPECT_NE(policy.find("connect-src 'self'"), std::string::npos) << policy;

  auto empty = client.Get("/status.json");
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->status, 200);
  EXPECT_EQ(empty->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(empty->get_header_value("Cache-Control"), "no-store");
  auto before = parse_swarm_status_json(empty->body);
  EXPECT_TRUE(before.peers.empty());
  EXPECT_EQ(before.activity, "training");

  // Every request sees what the actors wrote since.
  board.set_self(self_id, "demo", "127.0.0.1:7000");
  board.record_progress(self_id, 5, 10.0, swarm_status_board::clock::now());
  auto now = client.Get("/status.json");
  ASSERT_TRUE(now);
  auto after = parse_swarm_status_json(now->body);
  ASSERT_EQ(after.peers.size(), 1u);
  EXPECT_EQ(after.peers[0].peer_id, self_id);
  EXPECT_EQ(after.peers[0].epoch, 5);

  // The metrics and health endpoints are still there.
  EXPECT_EQ(client.Get("/metrics")->status, 200);
  EXPECT_EQ(client.Get("/healthz")->status, 200);
  EXPECT_EQ(client.Get("/status")->status, 404);
}

} // namespace
} // namespace ddactor
