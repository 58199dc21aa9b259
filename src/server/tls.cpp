// Certificate and key loading for the TLS listeners, checked with OpenSSL before any port opens,
// and the constant-time API key comparison.
#include "tessera/server/tls.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "tessera/core/error.h"
#include "tessera/core/log.h"

namespace tessera::server {
namespace {

constexpr std::uintmax_t kMaxPemBytes = 1 << 20;

using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;
using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

std::string read_pem_file(const std::string& path, const char* what) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    fail(ErrorCode::kNotFound, "TLS ", what, " ", path, ": no such file");
  }
  if (!std::filesystem::is_regular_file(status)) {
    fail(ErrorCode::kInvalidArgument, "TLS ", what, " ", path, ": not a regular file");
  }
  const auto size = std::filesystem::file_size(path, ec);
  if (!ec && size > kMaxPemBytes) {
    fail(ErrorCode::kInvalidArgument, "TLS ", what, " ", path, ": ", size,
         " bytes; a PEM file is at most ", kMaxPemBytes, " bytes");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in)
    fail(ErrorCode::kNotFound, "TLS ", what, " ", path, ": cannot read (", std::strerror(errno),
         ")");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// OpenSSL's queued error, as text, and clears the queue.
std::string openssl_error() {
  const unsigned long e = ERR_peek_last_error();
  char buf[256] = "unknown error";
  if (e != 0) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

// An encrypted key would make OpenSSL ask for a passphrase on the terminal: refuse instead.
int no_passphrase(char*, int, int, void*) { return -1; }

BioPtr memory_bio(const std::string& text) {
  BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())), &BIO_free);
  if (!bio) fail(ErrorCode::kInternal, "TLS: out of memory");
  return bio;
}

std::string asn1_time(const ASN1_TIME* t) {
  BioPtr out(BIO_new(BIO_s_mem()), &BIO_free);
  if (!out || ASN1_TIME_print(out.get(), t) != 1) return "?";
  char* data = nullptr;
  const long n = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

}  // namespace

TlsCredentials load_tls_credentials(const std::string& cert_file, const std::string& key_file) {
  TlsCredentials c{.cert_file = cert_file, .key_file = key_file};
  c.cert_chain_pem = read_pem_file(cert_file, "certificate");
  c.private_key_pem = read_pem_file(key_file, "private key");
  ERR_clear_error();

  // The chain: every certificate in the file, the leaf first.
  X509Ptr leaf(nullptr, &X509_free);
  int count = 0;
  {
    BioPtr bio = memory_bio(c.cert_chain_pem);
    for (;;) {
      X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr), &X509_free);
      if (!cert) break;
      ++count;
      if (!leaf) leaf = std::move(cert);
    }
    const unsigned long e = ERR_peek_last_error();
    // Reading stops with "no start line" at the end of the file; anything else is a broken PEM.
    if (e != 0 && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
      fail(ErrorCode::kInvalidArgument, "TLS certificate ", cert_file, ": certificate ", count + 1,
           " does not parse: ", openssl_error());
    }
    ERR_clear_error();
  }
  if (!leaf) {
    fail(ErrorCode::kInvalidArgument, "TLS certificate ", cert_file,
         ": holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
  }

  if (c.private_key_pem.find("ENCRYPTED") != std::string::npos) {
    fail(ErrorCode::kInvalidArgument, "TLS private key ", key_file,
         ": is encrypted; give an unencrypted key (openssl pkey -in ", key_file,
         " -out plain.pem) and protect it with file permissions");
  }
  BioPtr key_bio = memory_bio(c.private_key_pem);
  KeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, no_passphrase, nullptr),
             &EVP_PKEY_free);
  if (!key) {
    fail(ErrorCode::kInvalidArgument, "TLS private key ", key_file,
         ": holds no PEM private key (-----BEGIN PRIVATE KEY-----): ", openssl_error());
  }
  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    ERR_clear_error();
    fail(ErrorCode::kInvalidArgument, "TLS private key ", key_file,
         " does not match the certificate ", cert_file,
         " (the key's public half is not the certificate's public key)");
  }

  char subject[256] = "";
  X509_NAME_oneline(X509_get_subject_name(leaf.get()), subject, sizeof subject);
  const std::string not_after = asn1_time(X509_get0_notAfter(leaf.get()));
  if (X509_cmp_current_time(X509_get0_notAfter(leaf.get())) < 0) {
    TESSERA_LOG_WARN("TLS certificate {} ({}) expired on {}: clients will refuse it", cert_file,
                     subject, not_after);
  } else if (X509_cmp_current_time(X509_get0_notBefore(leaf.get())) > 0) {
    TESSERA_LOG_WARN("TLS certificate {} ({}) is not valid before {}", cert_file, subject,
                     asn1_time(X509_get0_notBefore(leaf.get())));
  }
  TESSERA_LOG_INFO("TLS: certificate {} ({}, {} in the chain, valid until {}), key {}", cert_file,
                   subject, count, not_after, key_file);
  return c;
}

bool api_key_matches(std::string_view presented, std::string_view key) {
  // Digests of equal length, compared in constant time: neither the key's content nor its length
  // shows in the timing.
  auto digest = [](std::string_view s) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> d{};
    unsigned int n = 0;
    if (EVP_Digest(s.data(), s.size(), d.data(), &n, EVP_sha256(), nullptr) != 1)
      fail(ErrorCode::kInternal, "OpenSSL SHA-256 failed");
    return d;
  };
  const auto a = digest(presented);
  const auto b = digest(key);
  return CRYPTO_memcmp(a.data(), b.data(), 32) == 0;
}

}  // namespace tessera::server
