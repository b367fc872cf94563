// HTTPS on ddactor's HTTP server: a client that trusts the certificate gets its answers over
// TLS, a plain-HTTP client gets nothing in the clear, a client that never finishes its handshake
// is dropped like any slow one while others are served, and a bad certificate or key (loose
// permissions, not matching, not PEM) is a clear error naming the file.
#include "runtime/tls_server_context.hpp"

#include <gtest/gtest.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "runtime/http_server.hpp"
#include "tests/runtime/plain_http_client.hpp"

namespace ddactor {
namespace {

using namespace std::chrono_literals;

struct scratch_dir {
  std::filesystem::path path = std::filesystem::temp_directory_path() /
                               ("ddactor_tls_" + std::to_string(std::random_device{}()));
  scratch_dir() { std::filesystem::create_directories(path); }
  ~scratch_dir() { std::filesystem::remove_all(path); }
};

// A self-signed P-256 certificate for localhost and 127.0.0.1, and its key (mode 600).
struct test_certificate {
  std::filesystem::path certificate, key;
};

test_certificate make_certificate(const std::filesystem::path& dir, const std::string& name) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME* subject = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(x, subject);
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, x, x, nullptr, nullptr, 0);
  X509_EXTENSION* names = X509V3_EXT_conf_nid(nullptr, &context, NID_subject_alt_name,
                                              "IP:127.0.0.1,DNS:localhost");
  X509_add_ext(x, names, -1);
  X509_EXTENSION_free(names);
  X509_sign(x, key, EVP_sha256());
  test_certificate files{dir / (name + ".crt"), dir / (name + ".key")};
  FILE* out = std::fopen(files.certificate.c_str(), "w");
  PEM_write_X509(out, x);
  std::fclose(out);
  out = std::fopen(files.key.c_str(), "w");
  PEM_write_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(out);
  std::filesystem::permissions(files.key, std::filesystem::perms::owner_read |
                                            std::filesystem::perms::owner_write);
  X509_free(x);
  EVP_PKEY_free(key);
  return files;
}

using plain_http::read_all;

struct https_server {
  std::unique_ptr<http_server> server;
  uint16_t port = 0;
  explicit https_server(std::shared_ptr<const tls_server_context> tls,
                        std::chrono::milliseconds request_timeout = 10s) {
    http_server_options options;
    options.tls = std::move(tls);
    options.request_timeout = request_timeout;
    server = std::make_unique<http_server>(options);
    server->handle("GET", "/healthz", [](const http_request&, const http_reply& reply) {
      http_response response;
      response.body = "ok over tls";
      reply.send(std::move(response));
    });
    server->handle("POST", "/echo", [](const http_request& request, const http_reply& reply) {
      http_response response;
      response.body = request.body;
      reply.send(std::move(response));
    });
    port = server->start("127.0.0.1", 0);
  }
};

std::unique_ptr<httplib::SSLClient> trusting_client(uint16_t port,
                                                    const std::filesystem::path& certificate) {
  auto client = std::make_unique<httplib::SSLClient>("127.0.0.1", port);
  client->set_ca_cert_path(certificate.c_str());
  client->enable_server_certificate_verification(true);
  client->set_connection_timeout(5, 0);
  client->set_read_timeout(10, 0);
  return client;
}

TEST(tls_server_context, answers_over_tls_and_never_in_the_clear) {
  scratch_dir dir;
  const auto files = make_certificate(dir.path, "server");
  auto tls = endpoint_tls(files.certificate, files.key);
  ASSERT_TRUE(tls);
  EXPECT_EQ(tls->subject(), "/CN=localhost");
  https_server server(tls);
  auto client = trusting_client(server.port, files.certificate);
  auto got = client->Get("/healthz");
  ASSERT_TRUE(got) << httplib::to_string(got.error());
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->body, "ok over tls");
  // A body larger than one TLS record travels whole both ways.
  const std::string large(300 * 1024, 'x');
  auto echoed = client->Post("/echo", large, "text/plain");
  ASSERT_TRUE(echoed) << httplib::to_string(echoed.error());
  EXPECT_EQ(echoed->body, large);

  // A client that trusts another certificate refuses this server.
  const auto other = make_certificate(dir.path, "other");
  auto wary = trusting_client(server.port, other.certificate);
  EXPECT_FALSE(wary->Get("/healthz"));

  // Plain HTTP gets no answer it could read: the handshake fails and the connection closes.
  const int fd = plain_http::connect_to(server.port);
  ASSERT_GE(fd, 0);
  plain_http::send_text(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  const auto answer = read_all(fd);
  ::close(fd);
  EXPECT_EQ(answer.find("ok over tls"), std::string::npos) << answer;
  EXPECT_NE(answer.rfind("HTTP/1.1", 0), 0u) << answer;
  // The server is still fine.
  auto again = client->Get("/healthz");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
}

// A client that connects and never sends its handshake holds a slot until the request deadline,
// and nobody else waits for it.
TEST(tls_server_context, a_client_that_never_handshakes_is_dropped_and_starves_nobody) {
  scratch_dir dir;
  const auto files = make_certificate(dir.path, "server");
  https_server server(endpoint_tls(files.certificate, files.key), 5s);
  const int silent = plain_http::connect_to(server.port);
  ASSERT_GE(silent, 0);
  auto client = trusting_client(server.port, files.certificate);
  auto got = client->Get("/healthz");
  ASSERT_TRUE(got) << httplib::to_string(got.error());
  EXPECT_EQ(got->body, "ok over tls");
  // Served while the silent one still holds its slot (open: no data, no end of stream).
  char byte = 0;
  EXPECT_EQ(::recv(silent, &byte, 1, MSG_DONTWAIT), -1);
  EXPECT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << std::strerror(errno);
  EXPECT_EQ(read_all(silent), "");  // closed at its deadline, nothing said
  ::close(silent);
}

TEST(tls_server_context, bad_files_are_clear_errors_naming_them) {
  scratch_dir dir;
  const auto files = make_certificate(dir.path, "server");
  const auto other = make_certificate(dir.path, "other");
  auto message_of = [](const std::filesystem::path& certificate,
                       const std::filesystem::path& key) -> std::string {
    try {
      tls_server_context context(certificate, key);
    } catch (const tls_error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_EQ(endpoint_tls({}, {}), nullptr);  // plain HTTP
  auto mismatch = message_of(files.certificate, other.key);
  EXPECT_NE(mismatch.find("is not the key of the certificate"), std::string::npos) << mismatch;
  auto not_pem = message_of(files.key, files.key);
  EXPECT_NE(not_pem.find(files.key.string() + ": not a PEM certificate"), std::string::npos)
    << not_pem;
  auto missing = message_of(dir.path / "missing.crt", files.key);
  EXPECT_NE(missing.find("missing.crt"), std::string::npos) << missing;
  auto no_key = message_of(files.certificate, dir.path / "missing.key");
  EXPECT_NE(no_key.find("missing.key: cannot read it"), std::string::npos) << no_key;
  std::filesystem::permissions(files.key, std::filesystem::perms::group_read,
                               std::filesystem::perm_options::add);
  auto loose = message_of(files.certificate, files.key);
  EXPECT_NE(loose.find("chmod 600"), std::string::npos) << loose;
}

} // namespace
} // namespace ddactor
