// An OpenAI chat or completions body -> a validated request, exactly as the HTTP routes parse it
// (bounded JSON, field checks, chat template, tokenization, the shared validation). The first
// byte picks the endpoint. Every refusal must be an ApiError with a 4xx status.
#include <string>

#include "fuzz_target.h"
#include "request_context.h"
#include "tessera/server/api_error.h"
#include "tessera/server/openai_request.h"
#include "tessera/server/request_validation.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  using namespace tessera::server;
  if (size == 0) return 0;
  const ParseContext& ctx = fuzz::request_context();
  const tokenizer::Tokenizer& tok = ctx.tok;
  const bool chat = data[0] & 1;
  try {
    const nlohmann::ordered_json body =
        parse_json_body(std::string(fuzz::as_text(data + 1, size - 1)));
    const ParsedGeneration g =
        chat ? parse_chat_request(body, ctx) : parse_completion_request(body, ctx);
    // What was accepted meets every limit.
    FUZZ_CHECK(!g.prompts.empty() && g.prompts.size() == g.max_tokens.size(), "prompt count");
    FUZZ_CHECK(int64_t(g.prompts.size()) * g.n <= ctx.limits.max_sequences, "sequences");
    for (size_t i = 0; i < g.prompts.size(); ++i) {
      FUZZ_CHECK(int(g.prompts[i].size()) + g.max_tokens[i] <= ctx.model.max_model_len, "context");
      for (int32_t id : g.prompts[i]) FUZZ_CHECK(id >= 0 && id < tok.vocab_size(), "vocab");
    }
    FUZZ_CHECK(g.requests.size() == g.prompts.size(), "a prompt without its validated request");
  } catch (const ApiError& e) {
    FUZZ_CHECK(e.status() >= 400 && e.status() < 500, "a non-4xx refusal");
  }
  return 0;
}
