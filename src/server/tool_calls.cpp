// Tool-call formats and the incremental output parser (see tool_calls.h). The parser is a byte
// state machine: marker matching needs no backtracking (no marker has a proper border that is
// also its prefix), JSON objects are delimited by counting braces outside strings, and each
// completed object is parsed once, with the request body's JSON limits. So the work is linear in
// the output and the memory is one call's text.
#include "tessera/server/tool_calls.h"

#include <nlohmann/json.hpp>

#include "tessera/core/error.h"
#include "tessera/json/bounded_json.h"

namespace tessera::server {
namespace {

constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kMistralMark = "[TOOL_CALLS]";
constexpr std::string_view kLlamaMark = "<|python_tag|>";

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

// The marker that may open the output (Llama3, Mistral), else empty.
std::string_view lead_marker(ToolFormat f) {
  if (f == ToolFormat::kMistral) return kMistralMark;
  if (f == ToolFormat::kLlama3) return kLlamaMark;
  return {};
}

// {"name": "...", "arguments"|"parameters": {...} or "..."} → a call; false when it is not one.
bool to_call(const std::string& text, ToolCall& call) {
  nlohmann::ordered_json j;
  try {
    j = json::parse_ordered(text, json::kRequestLimits, "a tool call");
  } catch (const Error&) {
    return false;
  }
  if (!j.is_object()) return false;
  auto name = j.find("name");
  if (name == j.end() || !name->is_string() || name->get_ref<const std::string&>().empty())
    return false;
  auto args = j.find("arguments");
  if (args == j.end()) args = j.find("parameters");
  call.name = name->get<std::string>();
  if (args == j.end() || args->is_null()) {
    call.arguments = "{}";
  } else if (args->is_object()) {
    call.arguments = args->dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  } else if (args->is_string()) {
    call.arguments = args->get<std::string>();  // some models write the arguments pre-serialized
  } else {
    return false;
  }
  return true;
}

}  // namespace

const char* tool_format_name(ToolFormat f) {
  switch (f) {
    case ToolFormat::kHermes:
      return "hermes";
    case ToolFormat::kLlama3:
      return "llama3";
    case ToolFormat::kMistral:
      return "mistral";
    case ToolFormat::kNone:
      break;
  }
  return "none";
}

ToolFormat detect_tool_format(std::string_view src) {
  auto has = [&](std::string_view s) { return src.find(s) != std::string_view::npos; };
  if (has(kHermesOpen)) return ToolFormat::kHermes;
  if (has(kMistralMark)) return ToolFormat::kMistral;
  // Llama 3.1-3.3 describe the JSON call format in the system or user turn and name the tool
  // role "ipython"; <|python_tag|> opens calls of the built-in tools.
  if (has(kLlamaMark) || (has("ipython") && has("\"parameters\""))) return ToolFormat::kLlama3;
  return ToolFormat::kNone;
}

ToolCallParser::ToolCallParser(ToolFormat format, size_t max_call_bytes)
    : format_(format),
      max_call_bytes_(max_call_bytes),
      state_(format == ToolFormat::kNone     ? State::kPlain
             : format == ToolFormat::kHermes ? State::kText
                                             : State::kLead) {}

ToolCallUpdate ToolCallParser::parse(ToolFormat format, std::string_view text) {
  ToolCallParser p(format);
  ToolCallUpdate out;
  p.feed(text, out);
  p.finish(out);
  return out;
}

void ToolCallParser::feed(std::string_view text, ToolCallUpdate& out) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (state_ == State::kPlain) {
      out.content.append(text.substr(i));
      return;
    }
    step(text[i], out);
  }
}

void ToolCallParser::give_back(ToolCallUpdate& out) {
  out.content += held_;
  out.content += raw_;
  held_.clear();
  raw_.clear();
  object_.clear();
  marker_at_ = 0;
  depth_ = 0;
  in_string_ = escape_ = in_array_ = false;
  // Hermes calls may follow text; the other formats open the output with their calls or not at all.
  state_ = format_ == ToolFormat::kHermes ? State::kText : State::kPlain;
}

void ToolCallParser::end_object(ToolCallUpdate& out) {
  ToolCall call;
  if (!to_call(object_, call)) return give_back(out);
  out.calls.push_back(std::move(call));
  block_has_call_ = true;
  raw_.clear();
  object_.clear();
  state_ = format_ == ToolFormat::kHermes ? State::kAfterObj : State::kBeforeObj;
}

void ToolCallParser::step(char c, ToolCallUpdate& out) {
  switch (state_) {
    case State::kText: {  // Hermes only
      if (c == kHermesOpen[marker_at_]) {
        held_ += c;
        if (++marker_at_ == kHermesOpen.size()) {
          raw_ = std::move(held_);
          held_.clear();
          marker_at_ = 0;
          block_has_call_ = false;
          state_ = State::kBeforeObj;
        }
        return;
      }
      out.content += held_;  // '<' occurs once in the marker: a mismatch restarts at this byte
      held_.clear();
      marker_at_ = 0;
      if (c == kHermesOpen[0]) {
        held_ += c;
        marker_at_ = 1;
      } else {
        out.content += c;
      }
      return;
    }
    case State::kLead: {  // Llama3 / Mistral: may the output open with a call?
      const std::string_view mark = lead_marker(format_);
      if (marker_at_ > 0 && marker_at_ < mark.size() && c == mark[marker_at_]) {
        held_ += c;
        if (++marker_at_ == mark.size()) {
          raw_ = std::move(held_);
          held_.clear();
          marker_at_ = 0;
          block_has_call_ = false;
          state_ = State::kBeforeObj;
        }
        return;
      }
      if (marker_at_ == 1 && format_ == ToolFormat::kMistral) {
        // "[" then not "T": the list itself, without the (skipped) special token.
        raw_ = std::move(held_);
        held_.clear();
        marker_at_ = 0;
        in_array_ = true;
        state_ = State::kBeforeObj;
        return step(c, out);
      }
      if (marker_at_ == 0 && c == mark[0]) {
        held_ += c;
        marker_at_ = 1;
        return;
      }
      if (marker_at_ == 0 && is_space(c) && held_.size() < max_call_bytes_) {
        held_ += c;
        return;
      }
      if (marker_at_ == 0 && c == '{' && format_ == ToolFormat::kLlama3) {
        raw_ = std::move(held_);
        held_.clear();
        state_ = State::kBeforeObj;
        return step(c, out);
      }
      held_ += c;
      raw_.clear();
      return give_back(out);
    }
    case State::kBeforeObj: {
      raw_ += c;
      if (raw_.size() > max_call_bytes_) return give_back(out);
      if (c == '{') {
        object_ = "{";
        depth_ = 1;
        in_string_ = escape_ = false;
        state_ = State::kObject;
        return;
      }
      if (is_space(c)) return;
      if (format_ == ToolFormat::kMistral) {
        if (c == '[' && !in_array_) {
          in_array_ = true;
          return;
        }
        if (c == ',' && in_array_) return;
        if (c == ']' && in_array_) {                    // the list is over: what follows is text
          if (!block_has_call_) return give_back(out);  // "[]" called nothing
          raw_.clear();
          in_array_ = false;
          state_ = State::kPlain;
          return;
        }
      }
      if (format_ == ToolFormat::kLlama3 && c == ';') return;  // Llama 3.1's call separator
      return give_back(out);
    }
    case State::kObject: {
      raw_ += c;
      object_ += c;
      if (raw_.size() > max_call_bytes_) return give_back(out);
      if (in_string_) {
        if (escape_) {
          escape_ = false;
        } else if (c == '\\') {
          escape_ = true;
        } else if (c == '"') {
          in_string_ = false;
        }
        return;
      }
      if (c == '"') {
        in_string_ = true;
      } else if (c == '{' || c == '[') {
        ++depth_;
      } else if (c == '}' || c == ']') {
        if (--depth_ == 0) end_object(out);
      }
      return;
    }
    case State::kAfterObj: {  // Hermes: whitespace, then </tool_call>
      raw_ += c;
      if (raw_.size() > max_call_bytes_) return give_back(out);
      if (marker_at_ == 0 && is_space(c)) return;
      if (c == kHermesClose[marker_at_]) {
        if (++marker_at_ == kHermesClose.size()) {
          raw_.clear();
          marker_at_ = 0;
          state_ = State::kText;
        }
        return;
      }
      return give_back(out);
    }
    case State::kPlain:
      out.content += c;
      return;
  }
}

void ToolCallParser::finish(ToolCallUpdate& out) {
  switch (state_) {
    case State::kText:
    case State::kLead:
    case State::kPlain:
      out.content += held_;
      held_.clear();
      break;
    case State::kBeforeObj:
    case State::kAfterObj:
      // Between or after complete calls, cut before the closing tag or bracket: the calls stand;
      // only separators, whitespace or a partial closing tag are left. An opened but empty block
      // (no call yet) is given back.
      if (block_has_call_) {
        raw_.clear();
      } else {
        give_back(out);
      }
      break;
    case State::kObject:
      give_back(out);  // an unfinished call is text
      break;
  }
  state_ = State::kPlain;
}

}  // namespace tessera::server
