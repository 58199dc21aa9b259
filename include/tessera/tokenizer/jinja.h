// A sandboxed Jinja interpreter for chat templates (tokenizer module). It implements the subset of
// Jinja that real chat templates use, configured like Hugging Face transformers configures Python
// jinja2 (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loop controls, a tojson that
// does not escape HTML or non-ASCII). Templates have no access to files or the host; output size,
// loop iterations and recursion depth are bounded. A Template is immutable after construction
// and may be rendered from several threads at once.
#pragma once

#include <cstddef>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "tessera/tokenizer/jinja_value.h"

namespace tessera::tokenizer {

struct TemplateLimits {
  size_t max_output_bytes = 1 << 20;    // also caps any single string a template builds
  size_t max_loop_iterations = 100000;  // total over one render, all loops together
  int max_recursion = 64;               // macro call depth
};

namespace jinja {

struct ParsedTemplate;

class Template {
 public:
  // Parses once; throws tessera::Error(kInvalidArgument) naming line and column on bad syntax.
  explicit Template(const std::string& source);
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  // Renders with the given variables (a JSON object; ordered_json keeps key order as Python
  // dicts would). Errors (undefined use, type errors, raise_exception, limits) throw
  // tessera::Error: kInvalidArgument for template errors, kResourceExhausted for limits.
  std::string render(const nlohmann::json& context, const TemplateLimits& limits = {}) const;
  std::string render(const nlohmann::ordered_json& context,
                     const TemplateLimits& limits = {}) const;
  // Lower-level entry: the context as a dict Value.
  std::string render_value(const Value& context, const TemplateLimits& limits) const;

 private:
  std::unique_ptr<ParsedTemplate> tree_;
};

}  // namespace jinja
}  // namespace tessera::tokenizer
