// Tool calls in model output (internal to the server module): which format a chat template's
// family writes them in, and an incremental parser that splits generated text into content and
// tool calls. One parser per choice, owned by the generation job; it sees each byte once (linear
// time) and holds at most one call's text plus a marker's length (bounded memory), so adversarial
// output cannot make it slow or large. Output that looks like a call but is not one (bad JSON, no
// name, over the size cap) is given back as content, never dropped.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::server {

// The tool-call syntax of a template family (the special tokens [TOOL_CALLS] and <|python_tag|>
// are skipped by the detokenizer, so the parsers accept the calls with or without them).
enum class ToolFormat {
  kNone,     // the template defines no tool-call format we know
  kHermes,   // Hermes / Qwen2.5: <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>
  kLlama3,   // Llama 3.x: [<|python_tag|>]{"name": ..., "parameters": {...}} [; {...}]
  kMistral,  // Mistral: [TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]
};
const char* tool_format_name(ToolFormat f);  // "none", "hermes", "llama3", "mistral"

// The format a chat template's source writes tool calls in (kNone when it has none).
ToolFormat detect_tool_format(std::string_view template_source);

struct ToolCall {
  std::string id;  // "call_...": given by the generation job, not the parser
  std::string name;
  std::string arguments;  // a JSON object, serialized
};

// What one feed() or finish() released: content text that can no longer start a call, and the
// calls completed.
struct ToolCallUpdate {
  std::string content;
  std::vector<ToolCall> calls;
};

class ToolCallParser {
 public:
  // max_call_bytes caps one call's text; a longer one is given back as content.
  explicit ToolCallParser(ToolFormat format, size_t max_call_bytes = 1 << 20);

  // Appends to `out` what `text` releases. Text that may still be the start of a call is held.
  void feed(std::string_view text, ToolCallUpdate& out);
  // End of output: releases what is held (an unfinished call becomes content).
  void finish(ToolCallUpdate& out);

  // The whole output at once: feed + finish.
  static ToolCallUpdate parse(ToolFormat format, std::string_view text);

 private:
  enum class State {
    kLead,       // Llama3/Mistral: only whitespace so far; a call may still open the output
    kText,       // content; Hermes looks for <tool_call>
    kBeforeObj,  // inside a call block, between objects
    kObject,     // inside one JSON object
    kAfterObj,   // Hermes: after an object, expecting </tool_call>
    kPlain,      // no more calls can start: everything is content
  };
  void step(char c, ToolCallUpdate& out);
  void give_back(ToolCallUpdate& out);  // the held call text becomes content; then kPlain
  void end_object(ToolCallUpdate& out);

  ToolFormat format_;
  size_t max_call_bytes_;
  State state_;
  std::string held_;      // kText/kLead: a possible marker prefix or leading whitespace
  std::string raw_;       // inside a call block: its text since the last completed call
  std::string object_;    // kObject: the object's bytes
  size_t marker_at_ = 0;  // bytes of the marker (open/close tag, [TOOL_CALLS]) matched so far
  int depth_ = 0;
  bool in_string_ = false, escape_ = false;
  bool in_array_ = false;        // Mistral: inside the [ ... ] list
  bool block_has_call_ = false;  // the call block being read has completed a call
};

}  // namespace tessera::server
