// A serialized gRPC ChatRequest or GenerateRequest (first byte picks) -> an engine request through
// the same validation as HTTP. Bad input must end in tessera::Error(kInvalidArgument).
#include <optional>
#include <string>

#include "fuzz_target.h"
#include "request_context.h"
#include "tessera/server/grpc_convert.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  using namespace tessera::server;
  if (size == 0) return 0;
  const ParseContext& ctx = fuzz::request_context();
  const tokenizer::Tokenizer& tok = ctx.tok;
  const std::string bytes(fuzz::as_text(data + 1, size - 1));
  try {
    std::optional<engine::ValidRequest> valid;
    if (data[0] & 1) {
      rpc::pb::ChatRequest in;
      if (!in.ParseFromString(bytes)) return 0;
      valid = rpc::chat_to_generation_request(in, ctx);
    } else {
      rpc::pb::GenerateRequest in;
      if (!in.ParseFromString(bytes)) return 0;
      valid = rpc::to_generation_request(in, ctx);
    }
    const protocol::GenerationRequest& req = valid->get();
    FUZZ_CHECK(!req.prompt_ids.empty(), "an empty prompt accepted");
    FUZZ_CHECK(int(req.prompt_ids.size()) + req.stopping.max_tokens <= ctx.model.max_model_len,
               "over the context");
    for (int32_t id : req.prompt_ids) FUZZ_CHECK(id >= 0 && id < tok.vocab_size(), "vocab");
  } catch (const Error& e) {
    FUZZ_CHECK(e.code() == ErrorCode::kInvalidArgument, "a refusal that is not INVALID_ARGUMENT");
  }
  return 0;
}
