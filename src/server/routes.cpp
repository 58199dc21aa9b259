// The router: path and method checks, bearer auth, and the small JSON routes. Generation routes
// hand over to a GenerationJob.
#include <algorithm>
#include <string_view>

#include "tessera/server/generation_job.h"
#include "tessera/server/openai_request.h"
#include "tessera/server/prometheus_text.h"
#include "tessera/server/session.h"
#include "tessera/server/tls.h"

namespace tessera::server {
namespace {

using json = nlohmann::ordered_json;
using Request = http::request<http::string_body>;

void check_auth(const ServerContext& ctx, const Request& req) {
  if (ctx.cfg.api_key.empty()) return;
  const auto field = req[http::field::authorization];
  const std::string_view h(field.data(), field.size());
  constexpr std::string_view kBearer = "bearer ";
  if (h.size() < kBearer.size() ||
      !beast::iequals(beast::string_view(h.data(), kBearer.size()),
                      beast::string_view(kBearer.data(), kBearer.size()))) {
    throw ApiError(401, "missing API key: send `Authorization: Bearer <key>`", "",
                   "invalid_api_key");
  }
  if (!api_key_matches(h.substr(kBearer.size()), ctx.cfg.api_key)) {
    throw ApiError(401, "incorrect API key", "", "invalid_api_key");
  }
}

void require_ready(ServerContext& ctx) {
  if (!ctx.engine.ready()) throw ApiError(503, "the engine is not ready");
}

Response models(ServerContext& ctx) {
  json m;
  m["id"] = ctx.model_name;
  m["object"] = "model";
  m["created"] = ctx.created;
  m["owned_by"] = "tessera";
  m["root"] = ctx.model_name;
  m["max_model_len"] = ctx.engine.model_info().max_model_len;
  return json_response(200, json{{"object", "list"}, {"data", json::array({m})}});
}

// tokenize, detokenize and generate parse and tokenize on a request thread
// (ServerContext::offload).
Response tokenize(ServerContext& ctx, const Request& req) {
  const json body = parse_json_body(req.body());
  const ParseContext pc = ctx.parse_context();
  check_model(body, pc.model.id);
  ChatPrompt prompt;
  bool add_special = true;
  if (body.contains("messages")) {
    prompt = render_chat_prompt(body, pc);
    add_special = false;  // the template already placed the special tokens
  } else if (body.contains("prompt") && body["prompt"].is_string()) {
    prompt.text = body["prompt"].get<std::string>();
  } else {
    bad_request("prompt", "tokenize needs a string prompt or messages");
  }
  if (body.contains("add_special_tokens")) {
    if (!body["add_special_tokens"].is_boolean()) {
      bad_request("add_special_tokens", "add_special_tokens must be a boolean");
    }
    add_special = body["add_special_tokens"].get<bool>();
  }
  const auto ids = pc.tok.encode(
      prompt.text, {.add_special = add_special, .parse_special = true, .literal = prompt.literal});
  return json_response(
      200, json{{"tokens", ids}, {"count", ids.size()}, {"max_model_len", pc.model.max_model_len}});
}

Response detokenize(ServerContext& ctx, const Request& req) {
  const json body = parse_json_body(req.body());
  check_model(body, ctx.model_name);
  if (!body.contains("tokens")) bad_request("tokens", "tokens is required");
  const auto& tok = ctx.engine.tokenizer();
  const auto ids = parse_token_ids(body["tokens"], "tokens", tok.vocab_size());
  return json_response(200, json{{"prompt", tok.decode(ids)}});
}

ServerContext::Continuation generate(ServerContext& ctx, const Request& req, bool chat) {
  const json body = parse_json_body(req.body());
  const ParseContext pc = ctx.parse_context();
  auto parsed = std::make_shared<ParsedGeneration>(chat ? parse_chat_request(body, pc)
                                                        : parse_completion_request(body, pc));
  return [&ctx, parsed](Session& session) {
    auto job = std::make_shared<GenerationJob>(ctx, session.shared_from_this(), std::move(*parsed));
    job->start();
    session.attach_job(std::move(job));
  };
}

ServerContext::Continuation respond(Response r) {
  return [r = std::make_shared<Response>(std::move(r))](Session& s) {
    s.send_response(std::move(*r));
  };
}

// Who may call a route when the server has an API key.
enum class Auth {
  kOpen,     // probes
  kKey,      // everything that reveals or costs anything
  kMetrics,  // the key, unless the operator opened /metrics (metrics_without_api_key)
};
struct Route {
  std::string_view path;
  http::verb method;
  Auth auth;
};
constexpr Route kRoutes[] = {
    {"/v1/chat/completions", http::verb::post, Auth::kKey},
    {"/v1/completions", http::verb::post, Auth::kKey},
    {"/v1/models", http::verb::get, Auth::kKey},
    {"/health", http::verb::get, Auth::kOpen},
    {"/ready", http::verb::get, Auth::kOpen},
    {"/metrics", http::verb::get, Auth::kMetrics},
    {"/tokenize", http::verb::post, Auth::kKey},
    {"/detokenize", http::verb::post, Auth::kKey},
};

bool needs_key(const Route& r, const HttpServerConfig& cfg) {
  return r.auth == Auth::kKey || (r.auth == Auth::kMetrics && !cfg.metrics_without_api_key);
}

}  // namespace

void handle_request(Session& session, ServerContext& ctx, Request&& req) {
  std::string_view path(req.target().data(), req.target().size());
  path = path.substr(0, path.find('?'));
  const Route* route = nullptr;
  for (const auto& r : kRoutes) {
    if (r.path == path) route = &r;
  }
  if (!route) throw ApiError(404, "no route for " + std::string(path), "", "not_found");
  session.set_route(std::string(route->path));  // a bounded label set for the metrics
  if (req.method() != route->method) {
    ApiError e(405, "method " + std::string(req.method_string()) + " is not allowed on " +
                        std::string(path));
    e.headers.emplace_back("Allow", std::string(http::to_string(route->method)));
    throw e;
  }
  if (needs_key(*route, ctx.cfg)) check_auth(ctx, req);

  // The request threads own the body from here; `req` moves into the work.
  auto body_work = [&](auto fn) {
    auto shared = std::make_shared<Request>(std::move(req));
    ctx.offload(session.shared_from_this(), [&ctx, shared, fn] { return fn(ctx, *shared); });
  };
  if (path == "/v1/chat/completions" || path == "/v1/completions") {
    require_ready(ctx);
    const bool chat = path == "/v1/chat/completions";
    return body_work([chat](ServerContext& c, const Request& r) { return generate(c, r, chat); });
  }
  if (path == "/v1/models") return session.send_response(models(ctx));
  if (path == "/health") {
    if (!ctx.engine.healthy()) throw ApiError(503, "the engine step loop is stalled");
    return session.send_response(json_response(200, json{{"status", "ok"}}));
  }
  if (path == "/ready") {
    require_ready(ctx);
    return session.send_response(json_response(200, json{{"status", "ready"}}));
  }
  if (path == "/metrics") {
    Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    auto families = ctx.engine.metrics().snapshot();
    for (auto& f : ctx.http_metrics.snapshot()) families.push_back(std::move(f));
    r.body = prometheus_text(families);
    return session.send_response(std::move(r));
  }
  if (path == "/tokenize") {
    return body_work([](ServerContext& c, const Request& r) { return respond(tokenize(c, r)); });
  }
  if (path == "/detokenize") {
    return body_work([](ServerContext& c, const Request& r) { return respond(detokenize(c, r)); });
  }
}

}  // namespace tessera::server
