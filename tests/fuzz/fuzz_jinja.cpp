// Jinja chat templates on arbitrary source: parse, then render with a fixed conversation under
// tight budgets (output, loop iterations, recursion), so hostile templates end in an Error.
#include <string>

#include "fuzz_target.h"
#include "tessera/core/error.h"
#include "tessera/tokenizer/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  if (size > 8192) return 0;  // chat templates are a few KiB; keep executions fast
  static const nlohmann::ordered_json messages = nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi <b>there</b> {{ x }}"},
    {"role": "assistant", "content": "", "tool_calls": [{"type": "function",
      "function": {"name": "f", "arguments": {"a": [1, 2.5, null, true]}}}]},
    {"role": "tool", "content": "42", "tool_call_id": "c1"}])");
  static const nlohmann::ordered_json tools = nlohmann::ordered_json::parse(
      R"([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])");
  try {
    const tokenizer::ChatTemplate t(
        std::string(fuzz::as_text(data, size)), "<s>", "</s>",
        tokenizer::TemplateLimits{
            .max_output_bytes = 1 << 16, .max_loop_iterations = 10000, .max_recursion = 32});
    const std::string out = t.render(messages, tools, true);
    FUZZ_CHECK(out.size() <= (1u << 16), "output over the budget");
  } catch (const Error&) {
  }
  return 0;
}
