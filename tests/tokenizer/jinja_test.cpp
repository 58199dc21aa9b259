// Unit tests of the Jinja interpreter: expressions, filters, tests, loops, macros, namespaces,
// whitespace control, printing, and errors with line numbers.
#include "tessera/tokenizer/jinja.h"

#include <gtest/gtest.h>

#include <string>

#include "tessera/core/error.h"

namespace tessera::tokenizer::jinja {
namespace {

std::string R(const std::string& src, const nlohmann::json& ctx = nlohmann::json::object()) {
  return Template(src).render(ctx);
}

// Returns the error message, failing the test if rendering succeeds.
std::string Err(const std::string& src, ErrorCode code = ErrorCode::kInvalidArgument,
                const nlohmann::json& ctx = nlohmann::json::object()) {
  try {
    Template t(src);
    std::string out = t.render(ctx);
    ADD_FAILURE() << "expected an error from: " << src << " got: " << out;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    return e.what();
  }
  return "";
}

TEST(Jinja, ArithmeticAndPrecedence) {
  EXPECT_EQ(R("{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 2 ** 3 ** 2 }}"), "7|9|64");
  EXPECT_EQ(R("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 7 / 2 }} {{ 6 / 3 }}"),
            "3 -4 2 -2 3.5 2.0");
  EXPECT_EQ(R("{{ 'a' ~ 1 ~ none ~ true ~ 2.5 }}"), "a1NoneTrue2.5");
  EXPECT_EQ(R("{{ 'ab' * 2 }}{{ [1] + [2] }}{{ -(3) }}{{ +4 }}"), "abab[1, 2]-34");
  EXPECT_EQ(R("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ 'b' >= 'a' }}"),
            "True False True True");
  EXPECT_EQ(R("{{ true and 'y' }}|{{ 0 or 'z' }}|{{ not 0 }}|{{ 'a' if 0 else 'b' }}"),
            "y|z|True|b");
  EXPECT_EQ(R("{{ 'x' in 'xyz' }} {{ 2 not in [1, 3] }} {{ 'k' in {'k': 1} }}"), "True True True");
  EXPECT_EQ(R("{{ x }}", {{"x", 9007199254740993LL}}), "9007199254740993");
}

TEST(Jinja, PrintsLikePython) {
  EXPECT_EQ(R("{{ [1, 'a', none, true, 1.0, {'k': \"it's\"}] }}"),
            "[1, 'a', None, True, 1.0, {'k': \"it's\"}]");
  EXPECT_EQ(R("{{ (1,) }}{{ () }}{{ 1e20 }}|{{ 1.5e-7 }}|{{ 0.1 + 0.2 }}|{{ 1e16 }}|{{ 1e15 }}"),
            "(1,)()1e+20|1.5e-07|0.30000000000000004|1e+16|1000000000000000.0");
  EXPECT_EQ(R("{{ u }}|{{ none }}|{{ false }}"), "|None|False");
}

TEST(Jinja, AttributesItemsSlices) {
  nlohmann::json ctx = {{"m", {{"role", "user"}, {"list", {1, 2, 3, 4}}}}, {"s", "héllo"}};
  EXPECT_EQ(R("{{ m.role }}{{ m['role'] }}{{ m.list[1] }}{{ m.list[-1] }}{{ m.list.0 }}", ctx),
            "useruser241");
  EXPECT_EQ(R("{{ m.list[1:3] }}{{ m.list[::-1] }}{{ s[1] }}{{ s[1:3] }}{{ s|length }}", ctx),
            "[2, 3][4, 3, 2, 1]éél5");
  EXPECT_EQ(R("{{ m.nope is defined }}|{{ m.list[10] is defined }}|{{ m.nope }}|", ctx),
            "False|False||");
}

TEST(Jinja, StringAndDictMethods) {
  EXPECT_EQ(
      R("{{ ' a '.strip() }}|{{ 'xax'.strip('x') }}|{{ 'a,b'.split(',') }}|{{ ' a  b'.split() }}"),
      "a|a|['a', 'b']|['a', 'b']");
  EXPECT_EQ(R("{{ 'ab'.startswith('a') }}{{ 'ab'.endswith(('x', 'b')) }}{{ 'aXb'.lower() }}"
              "{{ 'hello world'.title() }}{{ 'aa'.replace('a', 'b') }}"),
            "TrueTrueaxbHello Worldbb");
  nlohmann::json ctx = {{"d", {{"a", 1}, {"b", 2}}}};
  EXPECT_EQ(R("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{{ d.get('z', 0) }}{{ "
              "d.keys()|list }}",
              ctx),
            "a=1;b=2;0['a', 'b']");
}

TEST(Jinja, Filters) {
  EXPECT_EQ(R("{{ '  x '|trim }}|{{ 'ab'|upper }}|{{ 'AB'|lower }}|{{ 'a-b c'|title }}|{{ "
              "'aB'|capitalize }}"),
            "x|AB|ab|A-B C|Ab");
  EXPECT_EQ(R("{{ [1, 2]|length }}{{ 'abc'|count }}{{ [5, 6]|first }}{{ [5, 6]|last }}{{ [1, "
              "2]|join('-') }}"),
            "23561-2");
  EXPECT_EQ(
      R("{{ u|default('d') }}|{{ ''|d('e', true) }}|{{ 'aXa'|replace('a', 'b') }}|{{ 1|string }}"),
      "d|e|bXb|1");
  EXPECT_EQ(R("{{ '4'|int + 1 }}|{{ 'x'|int(7) }}|{{ '1.5'|float }}|{{ -2|abs }}|{{ 2.5|round "
              "}}|{{ 1.25|round(1) }}"),
            "5|7|1.5|2|2.0|1.2");
  EXPECT_EQ(R("{{ [3, 1, 2]|sort }}{{ ['b', 'A']|sort }}{{ [1, 1, 2]|unique|list }}{{ [1, "
              "2]|reverse|list }}"),
            "[1, 2, 3]['A', 'b'][1, 2][2, 1]");
  nlohmann::json ctx = {{"xs", {{{"n", 1}, {"f", true}}, {{"n", 2}}}}};
  EXPECT_EQ(R("{{ xs|map(attribute='n')|list }}{{ xs|selectattr('f')|list|length }}"
              "{{ xs|rejectattr('f')|map(attribute='n')|first }}{{ [1, 2, 3]|select('odd')|list }}",
              ctx),
            "[1, 2]12[1, 3]");
  EXPECT_EQ(R("{{ 'a\nb'|indent(2) }}|{{ 'one two'|wordcount }}|{{ '<&>'|e }}|{{ {'b': 1, 'a': "
              "2}|items|list }}"),
            "a\n  b|2|&lt;&amp;&gt;|[('b', 1), ('a', 2)]");
}

TEST(Jinja, ToJsonMatchesHuggingFace) {
  nlohmann::ordered_json ctx = nlohmann::ordered_json::parse(
      R"({"x": {"z": [1, 2.5, null, true], "a": "é\"\n", "e": {}, "l": []}})");
  Template t(
      "{{ x|tojson }}|{{ x|tojson(indent=2) }}|{{ x|tojson(sort_keys=true, separators=(',', ':')) "
      "}}");
  EXPECT_EQ(t.render(ctx),
            "{\"z\": [1, 2.5, null, true], \"a\": \"é\\\"\\n\", \"e\": {}, \"l\": []}|"
            "{\n  \"z\": [\n    1,\n    2.5,\n    null,\n    true\n  ],\n  \"a\": \"é\\\"\\n\",\n"
            "  \"e\": {},\n  \"l\": []\n}|"
            "{\"a\":\"é\\\"\\n\",\"e\":{},\"l\":[],\"z\":[1,2.5,null,true]}");
  EXPECT_EQ(R("{{ 'é'|tojson(ensure_ascii=true) }}{{ '😀'|tojson(ensure_ascii=true) }}"),
            "\"\\u00e9\"\"\\ud83d\\ude00\"");
}

TEST(Jinja, Tests) {
  EXPECT_EQ(R("{{ u is defined }}{{ u is undefined }}{{ none is none }}{{ 'a' is string }}{{ {} is "
              "mapping }}"),
            "FalseTrueTrueTrueTrue");
  EXPECT_EQ(R("{{ 'a' is iterable }}{{ 1 is number }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is "
              "divisibleby 3 }}"),
            "TrueTrueTrueTrueTrue");
  EXPECT_EQ(R("{{ 1 is equalto 1 }}{{ true is boolean }}{{ 1 is true }}{{ false is false }}{{ 5 is "
              "not string }}"),
            "TrueTrueFalseTrueTrue");
  EXPECT_EQ(R("{{ [1] is sequence }}{{ 1.0 is float }}{{ 1 is integer }}{{ 2 is gt 1 }}{{ 'a' is "
              "in 'abc' }}"),
            "TrueTrueTrueTrueTrue");
}

TEST(Jinja, LoopVariables) {
  EXPECT_EQ(R("{% for i in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ "
              "loop.revindex0 }}"
              "{{ loop.first|int }}{{ loop.last|int }}{{ loop.length }} {% endfor %}"),
            "1032103 2121003 3210013 ");
  EXPECT_EQ(
      R("{% for i in [1, 2, 3] %}{{ loop.previtem|default('-') }}{{ loop.nextitem|default('-') }}"
        "{{ loop.cycle('x', 'y') }},{% endfor %}"),
      "-2x,13y,2-x,");
  EXPECT_EQ(
      R("{% for i in range(10) if i is even %}{{ i }}{{ loop.length }},{% else %}none{% endfor %}"),
      "05,25,45,65,85,");
  EXPECT_EQ(R("{% for i in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(
      R("{% for i in range(10) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}"
        "{% endif %}{{ i }}{% endfor %}"),
      "023");
  EXPECT_EQ(R("{% for a, b in [(1, 2), (3, 4)] %}{{ a * b }}{% endfor %}"), "212");
}

TEST(Jinja, ScopingAndNamespace) {
  // Each iteration starts from the enclosing value; assignments do not leak out of the loop.
  EXPECT_EQ(
      R("{% set y = 5 %}{% for i in [1, 2] %}{{ y }}{% set y = i %}{{ y }}{% endfor %}{{ y }}"),
      "51525");
  EXPECT_EQ(R("{% if true %}{% set z = 3 %}{% endif %}{{ z }}"), "3");
  EXPECT_EQ(R("{% set ns = namespace(n=0) %}{% for i in range(5) %}{% set ns.n = ns.n + i %}{% "
              "endfor %}{{ ns.n }}"),
            "10");
  EXPECT_EQ(R("{% set a, b = 1, 2 %}{{ b }}{{ a }}{% set blk %}x{{ a }}{% endset %}[{{ blk }}]"),
            "21[x1]");
  Err("{% set x = 1 %}{% set x.y = 2 %}");
}

TEST(Jinja, MacrosCallAndFilterBlocks) {
  EXPECT_EQ(R("{% macro g(name, greet='Hi') %}{{ greet }} {{ name }}{% endmacro %}{{ g('A') }}/{{ "
              "g('B', greet='Yo') }}"),
            "Hi A/Yo B");
  EXPECT_EQ(R("{% macro f(a) %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ f(1, 2, k=3) }}"),
            "(2,){'k': 3}");
  EXPECT_EQ(R("{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}in{% endcall %}"),
            "<in>");
  EXPECT_EQ(R("{% filter upper %}ab{{ 'c' }}{% endfilter %}"), "ABC");
  EXPECT_EQ(R("{% raw %}{{ x }}{% endraw %}{# gone #}{% generation %}g{% endgeneration %}"),
            "{{ x }}g");
}

TEST(Jinja, WhitespaceControlLikeHuggingFace) {
  // trim_blocks drops the newline after a block tag; lstrip_blocks strips indentation before it.
  EXPECT_EQ(R("  {% if true %}\n  x\n  {% endif %}\n  y\n"), "  x\n  y");
  EXPECT_EQ(R("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
  EXPECT_EQ(R("a\n{{- ' b ' -}}\n c"), "a b c");
  EXPECT_EQ(R("{{ 'v' }}\n{{ 'w' }}\n"), "v\nw");
  EXPECT_EQ(R("x\n  {%+ if true %}y{% endif %}"), "x\n  y");
  EXPECT_EQ(R("a\r\nb"), "a\nb");
}

TEST(Jinja, SyntaxErrorsNameLineAndColumn) {
  std::string msg = Err("ok\nline two {{ 1 + }}");
  EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("column"), std::string::npos) << msg;
  EXPECT_NE(Err("{% if x %}\nno end").find("endif"), std::string::npos);
  EXPECT_NE(Err("{% for %}").find("line 1"), std::string::npos);
  Err("{{ 'unterminated }}");
  Err("{# no end");
  Err("{% include 'other.jinja' %}");
  Err("{% break %}");
  Err("{{ [1, 2 }}");
}

TEST(Jinja, RuntimeErrors) {
  EXPECT_NE(Err("{{ raise_exception('bad ' ~ 1) }}").find("bad 1"), std::string::npos);
  EXPECT_NE(Err("{{ u.x }}").find("'u' is undefined"), std::string::npos);
  Err("{{ 1 + 'a' }}");
  Err("{{ 'a' + 1 }}");
  Err("{{ 1 / 0 }}");
  Err("{{ none|tojson }}{{ u|tojson }}");
  Err("{{ [][0]['x'] }}");
  Err("{{ 'abc'.nosuchmethod() }}");
  Err("{{ x|nosuchfilter }}");
  Err("{{ 1 is nosuchtest }}");
  Err("{% for i in 5 %}{% endfor %}");
  EXPECT_NE(Err("a\n\n{{ 1 + none }}").find("line 3"), std::string::npos);
}

TEST(Jinja, SandboxLimits) {
  TemplateLimits lim;
  lim.max_loop_iterations = 1000;
  lim.max_output_bytes = 4096;
  lim.max_recursion = 16;
  auto expect_limit = [&](const std::string& src) {
    try {
      Template(src).render(nlohmann::json::object(), lim);
      ADD_FAILURE() << "limit not enforced: " << src;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted) << e.what();
    }
  };
  expect_limit("{% for i in range(10**9) %}{% endfor %}");
  expect_limit("{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}");
  expect_limit("{% for i in range(999) %}{{ 'x' * 100 }}{% endfor %}");
  expect_limit("{{ 'x' * 10**9 }}");
  expect_limit("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  expect_limit(
      "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% "
      "endfor %}");
  // Within limits is fine.
  EXPECT_EQ(
      Template("{% for i in range(900) %}{% endfor %}ok").render(nlohmann::json::object(), lim),
      "ok");
  EXPECT_THROW(R("{{ 2 ** 64 }}"), Error);
}

TEST(Jinja, OrderedContextKeepsKeyOrder) {
  auto ctx = nlohmann::ordered_json::parse(R"({"d": {"z": 1, "a": 2}})");
  EXPECT_EQ(Template("{{ d }}{{ d|tojson }}").render(ctx), "{'z': 1, 'a': 2}{\"z\": 1, \"a\": 2}");
  EXPECT_EQ(R("{{ d }}", nlohmann::json::parse(R"({"d": {"z": 1, "a": 2}})")), "{'a': 2, 'z': 1}");
}

TEST(Jinja, StrftimeNowFormatsTheCurrentDate) {
  std::string year = R("{{ strftime_now('%Y') }}");
  ASSERT_EQ(year.size(), 4u);
  EXPECT_GE(std::stoi(year), 2024);
  EXPECT_EQ(R("{{ strftime_now('%d %b %Y')|length }}"), "11");
}

}  // namespace
}  // namespace tessera::tokenizer::jinja
