#pragma once
// TLS for ddactor's HTTP endpoints (monitoring.listen, serve.http), off by default: Prometheus
// scrapes plain HTTP on a trusted network, and a certificate is something a user brings (from
// their CA, Let's Encrypt, or `openssl req -x509` for a self-signed one). With a certificate and
// its key, runtime/http_server speaks TLS 1.2 or 1.3 on every connection, and a client that does
// not finish its handshake within the request deadline is dropped like any slow client.
//
// The key file must be readable by its owner only (chmod 600), as ssh and ddactor's other
// secrets require. Errors name the file and what OpenSSL said of it.
//
// Thread-safety: a context is immutable once made; open() may be called from any thread.

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

using SSL = struct ssl_st;
using SSL_CTX = struct ssl_ctx_st;

namespace ddactor {

class tls_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One TLS connection's state (SSL_free on destruction).
struct tls_session_free {
  void operator()(SSL* ssl) const;
};
using tls_session = std::unique_ptr<SSL, tls_session_free>;

class tls_server_context {
 public:
  /// Loads a PEM certificate chain and its PEM private key; throws tls_error naming the file
  /// when one cannot be read, the key is readable by others, or the two do not match.
  tls_server_context(const std::filesystem::path& certificate_file,
                     const std::filesystem::path& key_file);
  ~tls_server_context();
  tls_server_context(const tls_server_context&) = delete;
  tls_server_context& operator=(const tls_server_context&) = delete;

  /// A server session on the connected, non-blocking socket `fd` (the handshake happens on
  /// its first reads and writes).
  tls_session open(int fd) const;

  /// The certificate's subject, for the log ("CN=peer.example.org").
  const std::string& subject() const noexcept { return subject_; }

 private:
  SSL_CTX* context_ = nullptr;
  std::string subject_;
};

/// The context for an endpoint's certificate and key (config's *.tls_certificate_file and
/// *.tls_key_file), or null where both are empty (plain HTTP).
std::shared_ptr<const tls_server_context> endpoint_tls(
  const std::filesystem::path& certificate_file, const std::filesystem::path& key_file);

/// What a non-blocking TLS read or write did: bytes moved (> 0), or why none were.
struct tls_io {
  enum class outcome { moved, want_read, want_write, closed, failed } what = outcome::failed;
  size_t bytes = 0;
};

/// SSL_read / SSL_write on a non-blocking session, the handshake included.
tls_io tls_read(SSL* ssl, char* buffer, size_t size);
tls_io tls_write(SSL* ssl, const char* data, size_t size);
/// Sends the session's close_notify without waiting for the peer's.
void tls_close_notify(SSL* ssl);

} // namespace ddactor
