// ChatTemplate on the stored real templates (tests/data/templates) plus robustness: random byte
// strings and truncated templates must throw tessera::Error or render, never crash or hang.
#include "tessera/tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tessera/core/error.h"

namespace tessera::tokenizer {
namespace {

std::string read_template(const std::string& name) {
  std::ifstream f(std::string(TESSERA_SOURCE_DIR) + "/tests/data/templates/" + name,
                  std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  EXPECT_FALSE(ss.str().empty()) << name;
  return ss.str();
}

const char* kFamilies[] = {"smollm2.jinja", "llama2.jinja", "llama3.jinja", "mistral-v0.3.jinja",
                           "qwen2.5.jinja", "gemma.jinja",  "phi3.jinja"};

TEST(ChatTemplate, SmolLM2ChatML) {
  ChatTemplate t(read_template("smollm2.jinja"), "<|im_start|>", "<|im_end|>");
  nlohmann::json msgs = {{{"role", "user"}, {"content", "Hi"}}};
  EXPECT_EQ(t.render(msgs),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  ChatTemplate::RenderOptions no_gen;
  no_gen.add_generation_prompt = false;
  nlohmann::json with_sys = {{{"role", "system"}, {"content", "S"}},
                             {{"role", "user"}, {"content", "U"}}};
  EXPECT_EQ(t.render(with_sys, no_gen),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n");
}

TEST(ChatTemplate, Llama3WithToolsAndExtraVariables) {
  ChatTemplate t(read_template("llama3.jinja"), "<|begin_of_text|>", "<|eot_id|>");
  nlohmann::json msgs = {{{"role", "user"}, {"content", "Weather?"}}};
  ChatTemplate::RenderOptions opt;
  opt.tools = nlohmann::json::array({{{"type", "function"}, {"function", {{"name", "w"}}}}});
  opt.extra = {{"date_string", "01 Jan 2025"}};
  std::string out = t.render(msgs, opt);
  EXPECT_EQ(
      out.rfind(
          "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n",
          0),
      0u)
      << out;
  EXPECT_NE(out.find("Today Date: 01 Jan 2025"), std::string::npos);
  EXPECT_NE(out.find("\"name\": \"w\""), std::string::npos);
  EXPECT_NE(out.find("Weather?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
            std::string::npos);
}

TEST(ChatTemplate, TemplateErrorsSurfaceAsError) {
  ChatTemplate gemma(read_template("gemma.jinja"), "<bos>", "<eos>");
  nlohmann::json sys = {{{"role", "system"}, {"content", "S"}},
                        {{"role", "user"}, {"content", "U"}}};
  try {
    gemma.render(sys);
    FAIL() << "gemma accepts no system role";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("System role not supported"), std::string::npos);
  }
  EXPECT_THROW(ChatTemplate("{% if %}"), Error);
  ChatTemplate ok("{{ messages|length }}");
  EXPECT_THROW(ok.render(nlohmann::json::object()), Error);  // messages must be an array
}

TEST(ChatTemplate, AllFamiliesParseAndRenderAPlainConversation) {
  nlohmann::json msgs = {{{"role", "user"}, {"content", "Hello"}},
                         {{"role", "assistant"}, {"content", "Hi!"}},
                         {{"role", "user"}, {"content", "Bye"}}};
  for (const char* f : kFamilies) {
    ChatTemplate t(read_template(f), "<s>", "</s>");
    std::string out = t.render(msgs);
    EXPECT_NE(out.find("Bye"), std::string::npos) << f << ": " << out;
  }
}

// Garbage in: random bytes biased toward template syntax, and every prefix of real templates.
TEST(ChatTemplate, GarbageNeverCrashes) {
  std::mt19937 rng(std::random_device{}());
  const std::vector<std::string> pieces = {
      "{{",  "}}",    "{%",     "%}",    "{#",   "#}",  "-",  "+",      "if ", "for ",
      "in ", "endif", "endfor", "set ",  "=",    "(",   ")",  "[",      "]",   "'",
      "\"",  "|",     "x",      "loop.", "1",    ".",   ",",  "macro ", "\n",  " ",
      "~",   "*",     "**",     "is ",   "not ", "raw", "\\", "\xff"};
  nlohmann::json msgs = {{{"role", "user"}, {"content", "Hi"}}};
  TemplateLimits lim;
  lim.max_loop_iterations = 2000;
  lim.max_output_bytes = 1 << 16;
  int rendered = 0, rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string src;
    size_t n = rng() % 40;
    for (size_t i = 0; i < n; ++i) {
      if (rng() % 4 == 0) {
        src += static_cast<char>(rng() % 256);
      } else {
        src += pieces[rng() % pieces.size()];
      }
    }
    try {
      ChatTemplate t(src, "<s>", "</s>", lim);
      t.render(msgs);
      ++rendered;
    } catch (const Error&) {
      ++rejected;
    }
  }
  for (const char* f : kFamilies) {
    std::string full = read_template(f);
    for (size_t cut = 0; cut < full.size(); cut += 7) {
      try {
        ChatTemplate(full.substr(0, cut), "<s>", "</s>", lim).render(msgs);
        ++rendered;
      } catch (const Error&) {
        ++rejected;
      }
    }
  }
  EXPECT_GT(rendered, 0);
  EXPECT_GT(rejected, 0);
}

TEST(ChatTemplate, DeepNestingIsRejectedNotAStackOverflow) {
  EXPECT_THROW(ChatTemplate("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}"),
               Error);
  EXPECT_THROW(ChatTemplate("{{ " + std::string(5000, '[') + " }}"), Error);
  std::string ifs;
  for (int i = 0; i < 1000; ++i) ifs += "{% if true %}";
  EXPECT_THROW(ChatTemplate{ifs}, Error);
  EXPECT_THROW(ChatTemplate("{{ " + std::string(5000, '-') + "1 }}"), Error);
  std::string nots;
  for (int i = 0; i < 3000; ++i) nots += "not ";
  EXPECT_THROW(ChatTemplate("{{ " + nots + "1 }}"), Error);
}

TEST(ChatTemplate, DeeplyNestedMessageValuesAreRefusedNotAStackOverflow) {
  // A document built by hand (not through the bounded parser) 30,000 arrays deep inside a
  // message: the conversion to template values stops at its depth guard.
  nlohmann::ordered_json deep = nlohmann::ordered_json::array();
  for (int i = 0; i < 30000; ++i) deep = nlohmann::ordered_json::array({std::move(deep)});
  nlohmann::ordered_json msgs = {{{"role", "user"}, {"content", "hi"}, {"x", deep}}};
  const ChatTemplate t("{{ messages[0]['content'] }}");
  try {
    t.render(msgs, nullptr, true);
    ADD_FAILURE() << "rendered";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nested deeper than 128"), std::string::npos) << e.what();
  }
  // 100 deep is fine.
  nlohmann::ordered_json ok = nlohmann::ordered_json::array();
  for (int i = 0; i < 100; ++i) ok = nlohmann::ordered_json::array({std::move(ok)});
  msgs[0]["x"] = ok;
  EXPECT_EQ(t.render(msgs, nullptr, true), "hi");
}

}  // namespace
}  // namespace tessera::tokenizer
