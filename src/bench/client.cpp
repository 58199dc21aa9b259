#include "tessera/bench/client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>

#include "tessera/core/error.h"

namespace tessera::bench {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using json = nlohmann::json;

Endpoint parse_endpoint(const std::string& name) {
  if (name == "chat") return Endpoint::kChat;
  if (name == "completions") return Endpoint::kCompletions;
  fail(ErrorCode::kInvalidArgument, "--endpoint must be chat or completions, got '", name, "'");
}

const char* endpoint_name(Endpoint e) { return e == Endpoint::kChat ? "chat" : "completions"; }

Target make_target(const std::string& base_url, Endpoint endpoint, const std::string& model) {
  std::string rest = base_url;
  if (rest.rfind("https://", 0) == 0)
    fail(ErrorCode::kUnsupported,
         "https is not supported by tessera bench (plain HTTP only): ", base_url);
  if (rest.rfind("http://", 0) == 0) rest = rest.substr(7);
  const auto slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  std::string prefix = slash == std::string::npos ? "" : rest.substr(slash);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (prefix.size() >= 3 && prefix.compare(prefix.size() - 3, 3, "/v1") == 0) {
    prefix.resize(prefix.size() - 3);
  }
  Target t;
  t.model = model;
  t.endpoint = endpoint;
  if (hostport.empty()) fail(ErrorCode::kInvalidArgument, "--base-url has no host: ", base_url);
  // [v6]:port, host:port or host.
  if (hostport.front() == '[') {
    const auto close = hostport.find(']');
    if (close == std::string::npos) fail(ErrorCode::kInvalidArgument, "bad --base-url ", base_url);
    t.host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size() && hostport[close + 1] == ':')
      t.port = hostport.substr(close + 2);
  } else if (const auto colon = hostport.rfind(':'); colon != std::string::npos) {
    t.host = hostport.substr(0, colon);
    t.port = hostport.substr(colon + 1);
  } else {
    t.host = hostport;
  }
  t.path = prefix + (endpoint == Endpoint::kChat ? "/v1/chat/completions" : "/v1/completions");
  return t;
}

std::string request_body(const Target& t, const RequestSpec& spec) {
  json j = {{"model", t.model}};
  if (t.endpoint == Endpoint::kChat) {
    json msgs = json::array();
    if (!spec.system_prompt.empty())
      msgs.push_back({{"role", "system"}, {"content", spec.system_prompt}});
    msgs.push_back({{"role", "user"}, {"content", spec.prompt}});
    j["messages"] = std::move(msgs);
  } else {
    j["prompt"] =
        spec.system_prompt.empty() ? spec.prompt : spec.system_prompt + "\n" + spec.prompt;
  }
  j["max_tokens"] = spec.output_tokens;
  j["temperature"] = t.temperature;
  j["stream"] = true;
  j["stream_options"] = {{"include_usage", true}};
  if (t.ignore_eos) j["ignore_eos"] = true;
  for (const auto& [k, v] : t.extra_body.items()) j[k] = v;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

class StreamCallImpl : public StreamCall, public std::enable_shared_from_this<StreamCallImpl> {
 public:
  using Clock = std::chrono::steady_clock;

  StreamCallImpl(net::io_context& ioc, const Target& t, const RequestSpec& spec, RequestRecord rec,
                 Done done)
      : sock_(ioc),
        timer_(ioc),
        target_(t),
        body_(request_body(t, spec)),
        rec_(std::move(rec)),
        done_(std::move(done)) {
    rec_.expected_input_tokens = spec.input_tokens;
    rec_.expected_output_tokens = spec.output_tokens;
  }

  void run(const tcp::resolver::results_type& eps, double timeout_s) {
    t0_ = Clock::now();
    timer_.expires_after(
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s)));
    timer_.async_wait([self = shared_from_this(), timeout_s](beast::error_code ec) {
      if (!ec)
        self->fail_with("timeout", "no end of stream within " + std::to_string(timeout_s) + " s");
    });
    net::async_connect(sock_, eps,
                       [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
                         self->on_connect(ec);
                       });
  }

  void cancel(const std::string& kind) override { fail_with(kind, "ended by the client"); }

 private:
  double ms_since_start() const {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0_).count();
  }

  void on_connect(beast::error_code ec) {
    if (finished_) return;
    if (ec) return fail_with("connect", ec.message());
    req_ = {http::verb::post, target_.path, 11};
    req_.set(http::field::host, target_.host + ":" + target_.port);
    req_.set(http::field::user_agent, "tessera-bench");
    req_.set(http::field::content_type, "application/json");
    req_.set(http::field::accept, "text/event-stream");
    if (!target_.api_key.empty()) req_.set(http::field::authorization, "Bearer " + target_.api_key);
    req_.body() = body_;
    req_.prepare_payload();
    http::async_write(sock_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (self->finished_) return;
      if (ec) return self->fail_with("connect", "sending the request: " + ec.message());
      self->parser_.body_limit(std::numeric_limits<uint64_t>::max());
      http::async_read_header(self->sock_, self->buf_, self->parser_,
                              [self](beast::error_code ec, size_t) { self->on_header(ec); });
    });
  }

  void on_header(beast::error_code ec) {
    if (finished_) return;
    if (ec) return fail_with("disconnected", "before the response header: " + ec.message());
    rec_.http_status = parser_.get().result_int();
    if (parser_.is_done()) {  // no body at all
      if (rec_.http_status != 200) return finish_http_error();
      return fail_with("bad_response", "the response has no body");
    }
    read_more();
  }

  void read_more() {
    parser_.get().body().data = chunk_;
    parser_.get().body().size = sizeof chunk_;
    http::async_read_some(
        sock_, buf_, parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (finished_) return;
    if (ec == http::error::need_buffer) ec = {};
    const size_t n = sizeof chunk_ - parser_.get().body().size;
    const std::string_view bytes(chunk_, n);
    if (rec_.http_status != 200) {
      constexpr size_t kKeep = 65536;  // enough for any error object
      if (error_body_.size() < kKeep)
        error_body_.append(bytes.substr(0, kKeep - error_body_.size()));
      if (ec || parser_.is_done()) return finish_http_error();
      return read_more();
    }
    const double t = ms_since_start();
    sse_.feed(bytes, [&](std::string_view data) {
      if (!finished_) on_event(data, t);
    });
    if (finished_) return;
    if (ec || parser_.is_done()) {
      // The body ended without [DONE]: fine when the server said why it stopped (some servers
      // never send [DONE]), a dropped stream otherwise.
      if (!ec && !rec_.finish_reason.empty()) return finish_ok(t);
      if (events_ == 0 && !ec) return fail_with("bad_response", "the response held no SSE events");
      return fail_with("disconnected",
                       "stream ended before [DONE]" + (ec ? ": " + ec.message() : std::string()));
    }
    read_more();
  }

  void on_event(std::string_view data, double t) {
    ++events_;
    if (data == "[DONE]") return finish_ok(t);
    json j = json::parse(data, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object())
      return fail_with("bad_response", "unparseable event: " + std::string(data.substr(0, 200)));
    if (j.contains("error")) {
      const json& e = j["error"];
      return fail_with("stream_error",
                       e.is_object() && e.contains("message") ? e["message"].dump() : e.dump());
    }
    if (auto it = j.find("choices"); it != j.end() && it->is_array() && !it->empty()) {
      const json& c = (*it)[0];
      std::string text;
      const auto add = [&](const json& obj, const char* key) {
        if (obj.is_object())
          if (auto f = obj.find(key); f != obj.end() && f->is_string())
            text += f->get<std::string>();
      };
      if (target_.endpoint == Endpoint::kChat) {
        if (auto d = c.find("delta"); d != c.end()) {
          add(*d, "content");
          add(*d, "reasoning_content");
        }
      } else {
        add(c, "text");
      }
      if (!text.empty()) chunk_ms_.push_back(t);
      if (auto f = c.find("finish_reason"); f != c.end() && f->is_string()) rec_.finish_reason = *f;
    }
    if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
      if (auto p = u->find("prompt_tokens"); p != u->end() && p->is_number_integer())
        prompt_tokens_ = *p;
      if (auto c = u->find("completion_tokens"); c != u->end() && c->is_number_integer()) {
        completion_tokens_ = *c;
      }
    }
  }

  void finish_ok(double end_ms) {
    rec_.success = true;
    rec_.e2e_ms = end_ms;
    rec_.content_chunks = int64_t(chunk_ms_.size());
    if (!chunk_ms_.empty()) rec_.ttft_ms = chunk_ms_.front();
    for (size_t i = 1; i < chunk_ms_.size(); ++i)
      rec_.itl_ms.push_back(chunk_ms_[i] - chunk_ms_[i - 1]);
    rec_.usage_reported = completion_tokens_ >= 0;
    rec_.output_tokens = completion_tokens_ >= 0 ? completion_tokens_ : rec_.content_chunks;
    rec_.input_tokens = prompt_tokens_ >= 0 ? prompt_tokens_ : rec_.expected_input_tokens;
    if (rec_.ttft_ms && rec_.output_tokens > 1)
      rec_.tpot_ms = (rec_.e2e_ms - *rec_.ttft_ms) / double(rec_.output_tokens - 1);
    end();
  }

  void finish_http_error() {
    std::string msg = error_body_;
    json j = json::parse(error_body_, nullptr, false);
    if (j.is_object() && j.contains("error")) {
      const json& e = j["error"];
      msg = e.is_object() && e.contains("message") && e["message"].is_string()
                ? e["message"].get<std::string>()
                : e.dump();
    }
    fail_with("http_" + std::to_string(rec_.http_status), msg.substr(0, 500));
  }

  void fail_with(const std::string& kind, const std::string& message) {
    if (finished_) return;
    rec_.success = false;
    rec_.error_kind = kind;
    rec_.error_message = message;
    rec_.e2e_ms = ms_since_start();
    rec_.content_chunks = int64_t(chunk_ms_.size());
    if (!chunk_ms_.empty()) rec_.ttft_ms = chunk_ms_.front();
    rec_.output_tokens = completion_tokens_ >= 0 ? completion_tokens_ : rec_.content_chunks;
    rec_.input_tokens = prompt_tokens_ >= 0 ? prompt_tokens_ : rec_.expected_input_tokens;
    end();
  }

  void end() {
    finished_ = true;
    timer_.cancel();
    beast::error_code ignored;
    sock_.shutdown(tcp::socket::shutdown_both, ignored);
    sock_.close(ignored);
    // Move out first: `done_` may drop the caller's last reference to this call.
    Done done = std::move(done_);
    done(std::move(rec_));
  }

  tcp::socket sock_;
  net::steady_timer timer_;
  Target target_;
  std::string body_;
  RequestRecord rec_;
  Done done_;
  Clock::time_point t0_;
  bool finished_ = false;
  http::request<http::string_body> req_;
  beast::flat_buffer buf_;
  http::response_parser<http::buffer_body> parser_;
  char chunk_[16384];
  SseParser sse_;
  std::vector<double> chunk_ms_;  // arrival of each non-empty content chunk, ms from the send
  int64_t events_ = 0;
  int64_t prompt_tokens_ = -1, completion_tokens_ = -1;
  std::string error_body_;
};

}  // namespace

std::shared_ptr<StreamCall> StreamCall::start(net::io_context& ioc,
                                              const tcp::resolver::results_type& eps,
                                              const Target& target, const RequestSpec& spec,
                                              RequestRecord record, double timeout_s, Done done) {
  auto call =
      std::make_shared<StreamCallImpl>(ioc, target, spec, std::move(record), std::move(done));
  call->run(eps, timeout_s);
  return call;
}

}  // namespace tessera::bench
