// A serialized gRPC ChatRequest or GenerateRequest (first byte picks) -> an engine request through
// the same validation as HTTP. Bad input must end in tessera::Error(kInvalidArgument).
#include <optional>
#include <string>

#include "../common/small_tokenizer.h"
#include "fuzz_target.h"
#include "tessera/server/grpc_convert.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  using namespace tessera::server;
  if (size == 0) return 0;
  static const tokenizer::Tokenizer tok = testing::small_chatml_tokenizer();
  static const tokenizer::ChatTemplate tmpl(tok.chat_template());
  static const ParseContext ctx{
      .tok = tok,
      .chat_template = &tmpl,
      .model = {
          .id = "m", .max_model_len = 256, .vocab_size = tok.vocab_size(), .num_blocks = 64, .block_size = 16}};
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
