// TLS on the HTTP front end and the checks on the certificate and key (load_tls_credentials), with
// certificates made here by OpenSSL; the API key comparison and which routes need the key.
#include "tessera/server/tls.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>
#include <filesystem>
#include <fstream>
#include <random>

#include "gtest/gtest.h"
#include "tessera/core/error.h"
#include "test_fixture.h"

namespace tessera::server::testing {
namespace {

namespace fs = std::filesystem;
namespace ssl = boost::asio::ssl;

// A self-signed P-256 certificate for 127.0.0.1 / localhost, written as PEM files.
struct CertFiles {
  std::string cert, key;
};

std::string write_file(const fs::path& p, const std::string& text) {
  std::ofstream(p) << text;
  return p.string();
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string s(data, static_cast<size_t>(n));
  BIO_free(bio);
  return s;
}

CertFiles make_cert(const fs::path& dir, const std::string& name,
                    const EVP_CIPHER* key_cipher = nullptr) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME* n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(x, n);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x, x, nullptr, nullptr, 0);
  X509_EXTENSION* san =
      X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
  X509_add_ext(x, san, -1);
  X509_EXTENSION_free(san);
  X509_sign(x, key, EVP_sha256());
  BIO* cert_bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(cert_bio, x);
  BIO* key_bio = BIO_new(BIO_s_mem());
  char pass[] = "passphrase";
  PEM_write_bio_PrivateKey(key_bio, key, key_cipher, nullptr, 0, nullptr,
                           key_cipher ? pass : nullptr);
  X509_free(x);
  EVP_PKEY_free(key);
  return {write_file(dir / (name + ".pem"), bio_text(cert_bio)),
          write_file(dir / (name + ".key"), bio_text(key_bio))};
}

class Tls : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tessera_tls_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(std::random_device{}()));
    fs::create_directories(dir_);
    a_ = make_cert(dir_, "a");
    b_ = make_cert(dir_, "b");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string load_error(const std::string& cert, const std::string& key) {
    try {
      load_tls_credentials(cert, key);
    } catch (const Error& e) {
      return e.what();
    }
    ADD_FAILURE() << "no error for " << cert << " / " << key;
    return "";
  }

  fs::path dir_;
  CertFiles a_, b_;
};

TEST_F(Tls, LoadsAMatchingPairAndNamesTheFileOfEachProblem) {
  const TlsCredentials c = load_tls_credentials(a_.cert, a_.key);
  EXPECT_TRUE(c.enabled());
  EXPECT_NE(c.cert_chain_pem.find("BEGIN CERTIFICATE"), std::string::npos);
  EXPECT_FALSE(TlsCredentials{}.enabled());

  EXPECT_NE(load_error(a_.cert, b_.key)
                .find("TLS private key " + b_.key + " does not match the certificate " + a_.cert),
            std::string::npos);
  const std::string missing = (dir_ / "missing.pem").string();
  EXPECT_NE(load_error(missing, a_.key).find("TLS certificate " + missing + ": no such file"),
            std::string::npos);
  EXPECT_NE(load_error(a_.cert, missing).find("TLS private key " + missing + ": no such file"),
            std::string::npos);
  EXPECT_NE(load_error(a_.key, a_.key).find(a_.key + ": holds no PEM certificate"),
            std::string::npos);
  EXPECT_NE(load_error(a_.cert, a_.cert).find(a_.cert + ": holds no PEM private key"),
            std::string::npos);
  const std::string junk = write_file(dir_ / "junk.pem",
                                      "-----BEGIN CERTIFICATE-----\nnot base64\n"
                                      "-----END CERTIFICATE-----\n");
  EXPECT_NE(load_error(junk, a_.key).find(junk + ": certificate 1 does not parse"),
            std::string::npos);
  EXPECT_NE(load_error(dir_.string(), a_.key).find("not a regular file"), std::string::npos);
  // An encrypted key is refused (no passphrase prompt on the terminal).
  const CertFiles enc = make_cert(dir_, "enc", EVP_aes_128_cbc());
  EXPECT_NE(load_error(enc.cert, enc.key).find(enc.key + ": is encrypted"), std::string::npos);
}

TEST(ApiKey, MatchesOnlyTheExactKey) {
  EXPECT_TRUE(api_key_matches("sk-secret", "sk-secret"));
  EXPECT_FALSE(api_key_matches("sk-secreT", "sk-secret"));
  EXPECT_FALSE(api_key_matches("sk-secre", "sk-secret"));
  EXPECT_FALSE(api_key_matches("sk-secret2", "sk-secret"));
  EXPECT_FALSE(api_key_matches("", "sk-secret"));
  EXPECT_FALSE(api_key_matches(std::string("sk-secret\0", 10), "sk-secret"));
  EXPECT_TRUE(api_key_matches("", ""));
}

TEST(ApiKey, EveryRouteButTheProbesNeedsIt) {
  Served s({}, {.api_key = "sk-secret"});
  const std::string body = chat_body("Hi", 2).dump();
  const std::vector<std::pair<http::verb, std::string>> keyed = {
      {http::verb::post, "/v1/chat/completions"},
      {http::verb::post, "/v1/completions"},
      {http::verb::get, "/v1/models"},
      {http::verb::get, "/metrics"},
      {http::verb::post, "/tokenize"},
      {http::verb::post, "/detokenize"}};
  for (const auto& [verb, target] : keyed) {
    Client c(s.port());
    const auto r = c.request(verb, target, verb == http::verb::post ? body : "",
                             {{"Authorization", "Bearer sk-wrong!"}});
    EXPECT_EQ(r.status, 401) << target;
    EXPECT_EQ(r.body.find("fake"), std::string::npos) << target << " revealed " << r.body;
  }
  for (const std::string target : {"/health", "/ready"}) {
    EXPECT_EQ(Client(s.port()).request(http::verb::get, target).status, 200) << target;
  }
}

// A blocking HTTPS client that trusts `ca` and checks the host name.
HttpResult https_get(int port, const std::string& ca, const std::string& target) {
  net::io_context ioc;
  ssl::context ctx(ssl::context::tls_client);
  ctx.load_verify_file(ca);
  ctx.set_verify_mode(ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
  stream.set_verify_callback(ssl::host_name_verification("localhost"));
  beast::get_lowest_layer(stream).connect(
      tcp::endpoint(net::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)));
  stream.handshake(ssl::stream_base::client);
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "localhost");
  http::write(stream, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(stream, buf, res);
  return {.status = static_cast<int>(res.result_int()), .headers = {}, .body = res.body()};
}

TEST_F(Tls, HttpsServesAndPlainHttpGetsA400) {
  HttpServerConfig cfg;
  cfg.tls = load_tls_credentials(a_.cert, a_.key);
  Served s({}, cfg);
  const HttpResult r = https_get(s.port(), a_.cert, "/v1/models");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["data"][0]["id"], "fake-model");
  // Another CA: the handshake fails on the client's side.
  EXPECT_THROW(https_get(s.port(), b_.cert, "/health"), boost::system::system_error);
  // Plain HTTP on the TLS port: a plain 400 that says why, then the close.
  Client plain(s.port());
  const HttpResult p = plain.request(http::verb::get, "/health");
  EXPECT_EQ(p.status, 400);
  EXPECT_NE(p.body.find("HTTPS only"), std::string::npos);
  // Bytes that are neither: the connection closes.
  {
    net::io_context ioc;
    tcp::socket sock(ioc);
    sock.connect(
        tcp::endpoint(net::ip::make_address("127.0.0.1"), static_cast<uint16_t>(s.port())));
    const std::string junk(300, '\x01');
    net::write(sock, net::buffer(junk));
    char c;
    beast::error_code ec;
    sock.read_some(net::buffer(&c, 1), ec);
    EXPECT_TRUE(ec) << "the server answered junk";
  }
  EXPECT_EQ(https_get(s.port(), a_.cert, "/health").status, 200);  // still serving
}

// A TLS client that leaves while its (non-streaming) generation runs sends close_notify and then
// FIN: unread bytes wait on the socket, and the hang-up behind them must still abort the request.
TEST_F(Tls, ClientThatLeavesMidRequestAbortsIt) {
  HttpServerConfig cfg;
  cfg.tls = load_tls_credentials(a_.cert, a_.key);
  Served s({.hold = true}, cfg);
  net::io_context ioc;
  ssl::context ctx(ssl::context::tls_client);
  ctx.load_verify_file(a_.cert);
  ctx.set_verify_mode(ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
  beast::get_lowest_layer(stream).connect(
      tcp::endpoint(net::ip::make_address("127.0.0.1"), static_cast<uint16_t>(s.port())));
  stream.handshake(ssl::stream_base::client);
  http::request<http::string_body> req{http::verb::post, "/v1/chat/completions", 11};
  req.set(http::field::host, "localhost");
  req.set(http::field::content_type, "application/json");
  req.body() = chat_body("Hi", 50).dump();
  req.prepare_payload();
  http::write(stream, req);
  ASSERT_TRUE(s.engine.wait_for([](size_t submitted, size_t) { return submitted >= 1; }));
  // close_notify (the server never answers it), then the TCP close.
  stream.async_shutdown([](beast::error_code) {});
  ioc.run_for(std::chrono::milliseconds(200));
  beast::get_lowest_layer(stream).close();
  EXPECT_TRUE(s.engine.wait_for([](size_t, size_t aborted) { return aborted >= 1; }))
      << "the request of a client that left was not aborted";
}

}  // namespace
}  // namespace tessera::server::testing
