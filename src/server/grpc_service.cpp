// TesseraService and Health handlers (see grpc_service.h). Unary calls are cheap lookups and run
// on gRPC's callback threads; Generate/Chat validate here and hand over to a stream reactor.
#if defined(TESSERA_HAVE_GRPC)
#include "tessera/server/grpc_service.h"

#include <random>

#include "tessera/core/error.h"
#include "tessera/server/grpc_convert.h"
#include "tessera/server/tls.h"

namespace tessera::server::rpc {
namespace {

constexpr const char* kVersion = "0.1.0";
constexpr const char* kServiceName = "tessera.v1.TesseraService";

grpc::ServerUnaryReactor* finish(grpc::CallbackServerContext* call, grpc::Status status) {
  grpc::ServerUnaryReactor* r = call->DefaultReactor();
  r->Finish(std::move(status));
  return r;
}

std::string random_prefix() {
  std::random_device rd;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s = "grpc-";
  for (int i = 0; i < 8; ++i) s += kHex[rd() % 16];
  return s + "-";
}

}  // namespace

bool StreamRegistry::add(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  return ids_.insert(id).second;
}

void StreamRegistry::remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  ids_.erase(id);
}

bool StreamRegistry::contains(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return ids_.count(id) != 0;
}

std::vector<std::string> StreamRegistry::ids() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {ids_.begin(), ids_.end()};
}

size_t StreamRegistry::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ids_.size();
}

ParseContext GrpcContext::parse_context() const {
  return ParseContext{.tok = engine.tokenizer(),
                      .chat_template = chat_template ? &*chat_template : nullptr,
                      .model = engine.model_info(),
                      .limits = limits};
}

GrpcContext::GrpcContext(engine::EngineInterface& e, std::string key, RequestLimits lim)
    : engine(e), api_key(std::move(key)), limits(lim), id_prefix(random_prefix()) {
  const tokenizer::Tokenizer& tok = engine.tokenizer();
  if (tok.chat_template().empty()) {
    chat_template_error = "the model has no chat template";
    return;
  }
  try {
    chat_template.emplace(tok.chat_template(), tok.bos_token(), tok.eos_token());
  } catch (const Error& e) {
    chat_template_error = std::string("the model's chat template does not parse: ") + e.what();
  }
}

grpc::Status check_auth(const grpc::CallbackServerContext* call, const std::string& api_key) {
  if (api_key.empty()) return grpc::Status::OK;
  const auto& md = call->client_metadata();
  const auto it = md.find("authorization");
  if (it == md.end()) {
    return {grpc::StatusCode::UNAUTHENTICATED,
            "missing API key: send metadata `authorization: Bearer <key>`"};
  }
  const std::string_view value(it->second.data(), it->second.size());
  constexpr std::string_view kBearer = "Bearer ";
  // The scheme is not secret; the key is compared in constant time (api_key_matches).
  if (!value.starts_with(kBearer) || !api_key_matches(value.substr(kBearer.size()), api_key)) {
    return {grpc::StatusCode::UNAUTHENTICATED, "incorrect API key"};
  }
  return grpc::Status::OK;
}

grpc::Status TesseraServiceImpl::admit(grpc::CallbackServerContext* call,
                                       engine::ValidRequest& req) {
  if (!ctx_.engine.ready()) return {grpc::StatusCode::UNAVAILABLE, "the engine is not ready"};
  if (req->request_id.empty()) req.set_request_id(ctx_.new_request_id());
  if (!ctx_.streams->add(req->request_id)) {
    return {grpc::StatusCode::ALREADY_EXISTS,
            "request_id: `" + req->request_id + "` is already running"};
  }
  return grpc::Status::OK;
}

grpc::ServerWriteReactor<pb::GenerateResponse>* TesseraServiceImpl::Generate(
    grpc::CallbackServerContext* call, const pb::GenerateRequest* in) {
  if (grpc::Status s = check_auth(call, ctx_.api_key); !s.ok()) return failed_stream(s);
  if (!valid_request_id(in->request_id())) {
    return failed_stream({grpc::StatusCode::INVALID_ARGUMENT,
                          "request_id: printable ASCII without spaces, at most 256 bytes"});
  }
  std::optional<engine::ValidRequest> req;
  try {
    req = to_generation_request(*in, ctx_.parse_context());
  } catch (const Error& e) {
    return failed_stream(to_status(e));
  }
  if (grpc::Status s = admit(call, *req); !s.ok()) return failed_stream(s);
  return start_stream(ctx_, call, std::move(*req), in->output().skip_text());
}

grpc::ServerWriteReactor<pb::GenerateResponse>* TesseraServiceImpl::Chat(
    grpc::CallbackServerContext* call, const pb::ChatRequest* in) {
  if (grpc::Status s = check_auth(call, ctx_.api_key); !s.ok()) return failed_stream(s);
  if (!valid_request_id(in->request_id())) {
    return failed_stream({grpc::StatusCode::INVALID_ARGUMENT,
                          "request_id: printable ASCII without spaces, at most 256 bytes"});
  }
  if (!ctx_.chat_template) {
    return failed_stream({grpc::StatusCode::FAILED_PRECONDITION, ctx_.chat_template_error});
  }
  std::optional<engine::ValidRequest> req;
  ToolRequest tools;
  try {
    req = chat_to_generation_request(*in, ctx_.parse_context(), &tools);
  } catch (const Error& e) {
    return failed_stream(to_status(e));
  }
  if (grpc::Status s = admit(call, *req); !s.ok()) return failed_stream(s);
  StreamTools st;
  if (tools.parse_output()) st = {.format = tools.format, .parallel = tools.parallel};
  return start_stream(ctx_, call, std::move(*req), in->output().skip_text(), st);
}

grpc::ServerUnaryReactor* TesseraServiceImpl::Abort(grpc::CallbackServerContext* call,
                                                    const pb::AbortRequest* req,
                                                    pb::AbortResponse* resp) {
  if (grpc::Status s = check_auth(call, ctx_.api_key); !s.ok()) return finish(call, s);
  for (const std::string& id : req->request_ids()) {
    if (ctx_.streams->contains(id)) resp->add_aborted(id);
    // Also ids this server does not know: the engine may run them for another front end.
    ctx_.engine.abort(id);
  }
  return finish(call, grpc::Status::OK);
}

grpc::ServerUnaryReactor* TesseraServiceImpl::Tokenize(grpc::CallbackServerContext* call,
                                                       const pb::TokenizeRequest* req,
                                                       pb::TokenizeResponse* resp) {
  if (grpc::Status s = check_auth(call, ctx_.api_key); !s.ok()) return finish(call, s);
  const bool special = req->has_add_special_tokens() ? req->add_special_tokens() : true;
  const std::vector<int32_t> ids =
      ctx_.engine.tokenizer().encode(req->text(), {.add_special = special, .parse_special = true});
  resp->mutable_token_ids()->Add(ids.begin(), ids.end());
  resp->set_count(static_cast<int32_t>(ids.size()));
  resp->set_max_model_len(ctx_.engine.model_info().max_model_len);
  return finish(call, grpc::Status::OK);
}

grpc::ServerUnaryReactor* TesseraServiceImpl::GetModelInfo(grpc::CallbackServerContext* call,
                                                           const pb::GetModelInfoRequest*,
                                                           pb::GetModelInfoResponse* resp) {
  if (grpc::Status s = check_auth(call, ctx_.api_key); !s.ok()) return finish(call, s);
  const engine::ModelInfo& info = ctx_.engine.model_info();
  const tokenizer::Tokenizer& tok = ctx_.engine.tokenizer();
  resp->set_model_id(info.id);
  resp->set_path(info.path);
  resp->set_max_model_len(info.max_model_len);
  resp->set_vocab_size(info.vocab_size > 0 ? info.vocab_size : tok.vocab_size());
  resp->set_bos_token_id(tok.bos_id());
  resp->set_eos_token_id(tok.eos_id());
  resp->mutable_stop_token_ids()->Add(tok.stop_ids().begin(), tok.stop_ids().end());
  resp->set_chat_template(tok.chat_template());
  return finish(call, grpc::Status::OK);
}

grpc::ServerUnaryReactor* TesseraServiceImpl::GetServerInfo(grpc::CallbackServerContext* call,
                                                            const pb::GetServerInfoRequest*,
                                                            pb::GetServerInfoResponse* resp) {
  if (grpc::Status s = check_auth(call, ctx_.api_key); !s.ok()) return finish(call, s);
  const engine::ModelInfo& info = ctx_.engine.model_info();
  const engine::EngineLimits& limits = ctx_.engine.limits();
  resp->set_version(kVersion);
  resp->set_max_num_seqs(limits.max_num_seqs);
  resp->set_max_num_batched_tokens(limits.max_num_batched_tokens);
  resp->set_max_model_len(info.max_model_len);
  resp->set_block_size(info.block_size);
  resp->set_num_blocks(info.num_blocks);
  resp->set_max_waiting(limits.max_waiting);
  resp->set_ready(ctx_.engine.ready());
  resp->set_healthy(ctx_.engine.healthy());
  resp->set_active_streams(static_cast<int32_t>(ctx_.streams->size()));
  return finish(call, grpc::Status::OK);
}

grpc::ServerUnaryReactor* HealthServiceImpl::Check(
    grpc::CallbackServerContext* call, const ::grpc::health::v1::HealthCheckRequest* req,
    ::grpc::health::v1::HealthCheckResponse* resp) {
  using Resp = ::grpc::health::v1::HealthCheckResponse;
  if (!req->service().empty() && req->service() != kServiceName) {
    return finish(call, {grpc::StatusCode::NOT_FOUND, "unknown service " + req->service()});
  }
  const bool up = ctx_.engine.ready() && ctx_.engine.healthy();
  resp->set_status(up ? Resp::SERVING : Resp::NOT_SERVING);
  return finish(call, grpc::Status::OK);
}

}  // namespace tessera::server::rpc
#endif  // TESSERA_HAVE_GRPC
