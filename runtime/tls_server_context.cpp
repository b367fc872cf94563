// TLS for the HTTP endpoints; see tls_server_context.hpp.
#include "runtime/tls_server_context.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "runtime/secure/private_file.hpp"

namespace ddactor {
namespace {

// The newest error OpenSSL queued (and the queue cleared), for messages.
std::string openssl_reason() {
  const unsigned long code = ::ERR_get_error();
  ::ERR_clear_error();
  if (code == 0)
    return "no reason given";
  char text[256];
  ::ERR_error_string_n(code, text, sizeof text);
  return text;
}

} // namespace

void tls_session_free::operator()(SSL* ssl) const { ::SSL_free(ssl); }

tls_server_context::tls_server_context(const std::filesystem::path& certificate_file,
                                       const std::filesystem::path& key_file) {
  if (readable_by_others(key_file))
    throw tls_error(key_file.string() + ": a TLS private key must be readable by its owner "
                                        "only; run chmod 600 on it");
  context_ = ::SSL_CTX_new(::TLS_server_method());
  if (context_ == nullptr)
    throw tls_error("cannot make a TLS context: " + openssl_reason());
  auto fail = [&](const std::string& what) {
    ::SSL_CTX_free(context_);
    context_ = nullptr;
    throw tls_error(what);
  };
  ::SSL_CTX_set_min_proto_version(context_, TLS1_2_VERSION);
  ::SSL_CTX_set_mode(context_, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (::SSL_CTX_use_certificate_chain_file(context_, certificate_file.c_str()) != 1)
    fail(certificate_file.string() + ": not a PEM certificate (chain): " + openssl_reason());
  FILE* in = std::fopen(key_file.c_str(), "r");
  if (in == nullptr)
    fail(key_file.string() + ": cannot read it: " + std::strerror(errno));
  EVP_PKEY* key = ::PEM_read_PrivateKey(in, nullptr, nullptr, nullptr);
  std::fclose(in);
  if (key == nullptr)
    fail(key_file.string() + ": not a PEM private key: " + openssl_reason());
  const bool taken = ::SSL_CTX_use_PrivateKey(context_, key) == 1 &&
                     ::SSL_CTX_check_private_key(context_) == 1;
  ::EVP_PKEY_free(key);
  if (!taken)
    fail(key_file.string() + " is not the key of the certificate in " +
         certificate_file.string() + ": " + openssl_reason());
  if (X509* certificate = ::SSL_CTX_get0_certificate(context_)) {
    char name[256] = {};
    ::X509_NAME_oneline(::X509_get_subject_name(certificate), name, sizeof name);
    subject_ = name;
  }
}

tls_server_context::~tls_server_context() { ::SSL_CTX_free(context_); }

tls_session tls_server_context::open(int fd) const {
  tls_session session(::SSL_new(context_));
  if (!session || ::SSL_set_fd(session.get(), fd) != 1)
    throw tls_error("cannot start a TLS session: " + openssl_reason());
  ::SSL_set_accept_state(session.get());
  return session;
}

std::shared_ptr<const tls_server_context> endpoint_tls(
  const std::filesystem::path& certificate_file, const std::filesystem::path& key_file) {
  if (certificate_file.empty() && key_file.empty())
    return nullptr;
  return std::make_shared<const tls_server_context>(certificate_file, key_file);
}

namespace {

tls_io outcome_of(SSL* ssl, int result) {
  if (result > 0)
    return {tls_io::outcome::moved, static_cast<size_t>(result)};
  switch (::SSL_get_error(ssl, result)) {
    case SSL_ERROR_WANT_READ: return {tls_io::outcome::want_read, 0};
    case SSL_ERROR_WANT_WRITE: return {tls_io::outcome::want_write, 0};
    case SSL_ERROR_ZERO_RETURN: return {tls_io::outcome::closed, 0};
    default:
      // A client that is not speaking TLS, a failed handshake, a reset: this connection only.
      ::ERR_clear_error();
      return {tls_io::outcome::failed, 0};
  }
}

} // namespace

tls_io tls_read(SSL* ssl, char* buffer, size_t size) {
  return outcome_of(ssl, ::SSL_read(ssl, buffer, static_cast<int>(std::min<size_t>(size, 1 << 30))));
}

tls_io tls_write(SSL* ssl, const char* data, size_t size) {
  return outcome_of(ssl, ::SSL_write(ssl, data, static_cast<int>(std::min<size_t>(size, 1 << 30))));
}

void tls_close_notify(SSL* ssl) {
  if (::SSL_shutdown(ssl) < 0)
    ::ERR_clear_error();
}

} // namespace ddactor
