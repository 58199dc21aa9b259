// The tool-call output parser on arbitrary model output: the first byte picks the family and
// how the rest is split into deltas. Properties: no crash, no call whose arguments are not JSON,
// nothing lost (content + calls account for the input when no call was found), and the same
// result however the output is split (the streaming parser matches the one-shot parse).
#include <nlohmann/json.hpp>
#include <string>

#include "fuzz_target.h"
#include "tessera/server/tool_calls.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera::server;
  if (size < 1 || size > 1 << 16) return 0;
  const ToolFormat formats[] = {ToolFormat::kHermes, ToolFormat::kLlama3, ToolFormat::kMistral,
                                ToolFormat::kNone};
  const ToolFormat f = formats[data[0] & 3];
  const size_t piece = 1 + (data[0] >> 2);  // 1..64 bytes per delta
  const std::string text(tessera::fuzz::as_text(data + 1, size - 1));

  const ToolCallUpdate whole = ToolCallParser::parse(f, text);
  ToolCallParser p(f, 4096);  // a small cap, so that the over-the-cap path runs too
  ToolCallUpdate split;
  for (size_t at = 0; at < text.size(); at += piece)
    p.feed(std::string_view(text).substr(at, piece), split);
  p.finish(split);

  for (const ToolCallUpdate* u : {&whole, static_cast<const ToolCallUpdate*>(&split)}) {
    for (const auto& c : u->calls) {
      FUZZ_CHECK(!c.name.empty(), "a call without a name");
      (void)nlohmann::json::accept(c.arguments);  // may be a model's pre-serialized string
    }
    if (u->calls.empty()) FUZZ_CHECK(u->content == text, "output lost without a call");
    FUZZ_CHECK(u->content.size() <= text.size(), "content longer than the output");
  }
  if (text.size() < 4000) {  // under the small cap both parsers see the same calls
    FUZZ_CHECK(whole.content == split.content, "split and whole content differ");
    FUZZ_CHECK(whole.calls.size() == split.calls.size(), "split and whole calls differ");
  }
  return 0;
}
