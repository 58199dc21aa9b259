// Byte-for-byte parity with Python jinja2 (set up as Hugging Face transformers sets it up). The
// fixtures are written by tests/python/jinja_make_fixtures.py; tests/python/test_chat_templates.py
// runs it and then this binary with TESSERA_JINJA_FIXTURES pointing at the output directory.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "tessera/core/error.h"
#include "tessera/tokenizer/chat_template.h"
#include "tessera/tokenizer/jinja.h"

namespace tessera::tokenizer {
namespace {

using ojson = nlohmann::ordered_json;

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Renders one fixture case; returns the output, or sets `error` to the tessera::Error message.
std::string render_case(const ojson& c, bool& threw, std::string& error) {
  threw = false;
  try {
    if (c.contains("template_file")) {
      ChatTemplate t(read_file(c["template_file"].get<std::string>()),
                     c["bos_token"].get<std::string>(), c["eos_token"].get<std::string>());
      return t.render(c["messages"], c["tools"], c["add_generation_prompt"].get<bool>(),
                      c["extra"]);
    }
    jinja::Template t(c["template"].get<std::string>());
    return t.render(c["context"]);
  } catch (const Error& e) {
    threw = true;
    error = e.what();
    return "";
  }
}

TEST(JinjaParity, MatchesPythonJinja2) {
  const char* dir = std::getenv("TESSERA_JINJA_FIXTURES");
  if (!dir)
    GTEST_SKIP() << "TESSERA_JINJA_FIXTURES not set (run tests/python/test_chat_templates.py)";
  std::string text = read_file(std::string(dir) + "/cases.json");
  ASSERT_FALSE(text.empty()) << "no cases.json in " << dir;
  ojson cases = ojson::parse(text);
  ASSERT_TRUE(cases.is_array());
  ASSERT_GT(cases.size(), 100u);
  int checked = 0, families = 0;
  for (const auto& c : cases) {
    const std::string name = c["name"].get<std::string>();
    SCOPED_TRACE(name);
    bool threw = false;
    std::string error;
    std::string out = render_case(c, threw, error);
    if (c.contains("expected")) {
      EXPECT_FALSE(threw) << "unexpected error: " << error;
      EXPECT_EQ(out, c["expected"].get<std::string>());
      if (c.contains("template_file")) ++families;
    } else {
      EXPECT_TRUE(threw) << "expected " << c["expected_error"] << " error (" << c["message"]
                         << "), got output: " << out;
      // raise_exception messages must come through verbatim.
      const std::string marker = "raised an exception: ";
      size_t at = error.find(marker);
      if (at != std::string::npos) {
        std::string ours = error.substr(at + marker.size());
        ours = ours.substr(0, ours.rfind(" (template line"));
        EXPECT_EQ(ours, c["message"].get<std::string>());
      }
    }
    ++checked;
  }
  EXPECT_GT(families, 80);
  std::cout << "checked " << checked << " cases (" << families << " successful chat renders)\n";
}

}  // namespace
}  // namespace tessera::tokenizer
