// Transport security for the front ends (server module): the certificate chain and private key that
// `tessera serve --tls-cert FILE --tls-key FILE` (or the topology's listen.tls_cert/tls_key) give
// both the HTTP and the gRPC port, read and checked once at start; and the API key comparison both
// front ends use.
#pragma once

#include <string>
#include <string_view>

namespace tessera::server {

struct TlsCredentials {
  std::string cert_file;  // where they came from, for messages
  std::string key_file;
  std::string cert_chain_pem;  // the leaf certificate first, then any intermediates
  std::string private_key_pem;
  bool enabled() const { return !cert_chain_pem.empty(); }
};

// Reads both files and checks them with OpenSSL: the certificate file holds at least one PEM
// certificate, the key file an unencrypted PEM private key, and the key belongs to the first
// certificate. Throws tessera::Error naming the file and the problem (kNotFound when a file
// cannot be read, kInvalidArgument otherwise). Logs a warning when the certificate has expired or
// is not valid yet (clients will refuse it, but that is theirs to decide).
TlsCredentials load_tls_credentials(const std::string& cert_file, const std::string& key_file);

// True when `presented` equals `key`. Both are hashed (SHA-256) and the digests compared with
// CRYPTO_memcmp, so the time taken depends on neither the key's content nor its length nor on how
// much of a guess matches.
bool api_key_matches(std::string_view presented, std::string_view key);

}  // namespace tessera::server
