// The HTTP server behind /metrics, /healthz and serve: routes, answers given later from another
// thread, work cancelled when the client hangs up, and clients that cannot starve it: slow
// senders time out (408) while others are answered, the connection budget holds (503), and
// malformed or oversized requests get their status. Plain sockets play the clients.
#include "runtime/http_server.hpp"

#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "tests/runtime/plain_http_client.hpp"

namespace ddactor {
namespace {

using namespace std::chrono_literals;

using plain_http::connect_to;
using plain_http::read_all;
using plain_http::send_text;

std::string round_trip(uint16_t port, const std::string& request) {
  const int fd = connect_to(port);
  if (fd < 0)
    return "connect failed";
  send_text(fd, request);
  auto out = read_all(fd);
  ::close(fd);
  return out;
}

bool has_status(const std::string& response, int status) {
  return response.rfind("HTTP/1.1 " + std::to_string(status) + " ", 0) == 0;
}

http_response text(std::string body) {
  http_response r;
  r.body = std::move(body);
  return r;
}

TEST(http_server, routes_answer_and_others_get_404_or_405) {
  http_server server;
  server.handle("GET", "/hello", [](const http_request& r, const http_reply& reply) {
    reply.send(text("hello " + r.query));
  });
  server.handle("POST", "/echo", [](const http_request& r, const http_reply& reply) {
    reply.send(text(r.body));
  });
  const auto port = server.start("127.0.0.1", 0);
  auto hello = round_trip(port, "GET /hello?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_TRUE(has_status(hello, 200)) << hello;
  EXPECT_NE(hello.find("\r\n\r\nhello x=1"), std::string::npos) << hello;
  EXPECT_NE(hello.find("Content-Length: 9"), std::string::npos) << hello;
  auto echo = round_trip(port, "POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde");
  EXPECT_NE(echo.find("\r\n\r\nabcde"), std::string::npos) << echo;
  EXPECT_TRUE(has_status(round_trip(port, "GET /nowhere HTTP/1.1\r\n\r\n"), 404));
  EXPECT_TRUE(has_status(round_trip(port, "GET /echo HTTP/1.1\r\n\r\n"), 405));
}

TEST(http_server, malformed_and_oversized_requests_get_their_status) {
  http_server_options options;
  options.max_head_bytes = 512;
  options.max_body_bytes = 100;
  http_server server(options);
  server.handle("POST", "/x", [](const http_request&, const http_reply& reply) {
    reply.send(text("ok"));
  });
  const auto port = server.start("127.0.0.1", 0);
  EXPECT_TRUE(has_status(round_trip(port, "POST /x HTTP/1.1\r\nContent-Length: 101\r\n\r\n"), 413));
  EXPECT_TRUE(has_status(
    round_trip(port, "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n"),
    411));
  EXPECT_TRUE(has_status(round_trip(port, "POST /x HTTP/2.0\r\n\r\n"), 505));
  EXPECT_TRUE(has_status(round_trip(port, "POST /x HTTP/1.1\r\nA: " + std::string(600, 'a')), 431));
  EXPECT_TRUE(has_status(round_trip(port, "garbage\r\n\r\n"), 400));
  EXPECT_TRUE(has_status(round_trip(port, "POST /x HTTP/1.1\r\nContent-Length: -3\r\n\r\n"), 400));
}

TEST(http_server, slow_clients_time_out_and_never_starve_the_others) {
  http_server_options options;
  options.request_timeout = 300ms;
  http_server server(options);
  server.handle("GET", "/metrics", [](const http_request&, const http_reply& reply) {
    reply.send(text("up 1"));
  });
  const auto port = server.start("127.0.0.1", 0);
  // Clients that trickle a request and never finish it (as many as one address may hold, less
  // the one that asks for the metrics).
  std::vector<int> slow;
  for (size_t i = 0; i + 1 < options.max_connections_per_client; ++i) {
    slow.push_back(connect_to(port));
    send_text(slow.back(), "GET /metr");
  }
  for (int i = 0; i < 5; ++i) {
    auto answer = round_trip(port, "GET /metrics HTTP/1.1\r\n\r\n");
    EXPECT_TRUE(has_status(answer, 200)) << answer;
    for (int fd : slow)
      send_text(fd, "i");
  }
  for (int fd : slow) {
    EXPECT_TRUE(has_status(read_all(fd), 408));
    ::close(fd);
  }
}

TEST(http_server, the_connection_budget_holds_in_all_and_per_client) {
  http_server_options options;
  options.max_connections = 6;
  options.max_connections_per_client = 3;
  http_server server(options);
  server.handle("GET", "/", [](const http_request&, const http_reply& reply) {
    reply.send(text("ok"));
  });
  const auto port = server.start("127.0.0.1", 0);
  std::vector<int> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(connect_to(port));
    send_text(held.back(), "GET / HTTP/1.1\r\n");  // an unfinished head keeps its slot
  }
  auto refused = round_trip(port, "GET / HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(has_status(refused, 503)) << refused;
  EXPECT_NE(refused.find("Retry-After: 1"), std::string::npos) << refused;
  for (int fd : held)
    ::close(fd);
  // Slots free again once those connections are gone.
  std::string answer;
  for (int i = 0; i < 100 && !has_status(answer, 200); ++i) {
    answer = round_trip(port, "GET / HTTP/1.1\r\n\r\n");
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(has_status(answer, 200)) << answer;
}

TEST(http_server, a_reply_from_another_thread_arrives_and_a_hang_up_cancels_the_work) {
  http_server server;
  std::promise<http_reply> pending;
  server.handle("GET", "/later", [&](const http_request&, const http_reply& reply) {
    pending.set_value(reply);
  });
  const auto port = server.start("127.0.0.1", 0);

  auto answer = std::async(std::launch::async, [&] {
    return round_trip(port, "GET /later HTTP/1.1\r\n\r\n");
  });
  auto reply = pending.get_future().get();
  std::thread([reply] { reply.send(text("done later")); }).join();
  EXPECT_NE(answer.get().find("done later"), std::string::npos);

  std::promise<http_reply> second;
  http_server other;
  other.handle("GET", "/later", [&](const http_request&, const http_reply& r) {
    second.set_value(r);
  });
  const auto other_port = other.start("127.0.0.1", 0);
  const int fd = connect_to(other_port);
  send_text(fd, "GET /later HTTP/1.1\r\n\r\n");
  auto work = second.get_future().get();
  std::promise<void> cancelled;
  work.on_cancel([&] { cancelled.set_value(); });
  ::close(fd);  // the client gives up
  EXPECT_EQ(cancelled.get_future().wait_for(20s), std::future_status::ready);
  EXPECT_TRUE(work.cancelled());
  work.send(text("nobody listens"));  // ignored
}

TEST(http_server, a_taken_port_is_a_clear_error_and_stop_is_idempotent) {
  http_server first;
  const auto port = first.start("127.0.0.1", 0);
  http_server second;
  try {
    second.start("127.0.0.1", port);
    FAIL() << "bound a taken port";
  } catch (const http_server_error& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(port)), std::string::npos) << e.what();
  }
  first.stop();
  first.stop();
  EXPECT_EQ(first.port(), 0);
}

} // namespace
} // namespace ddactor
