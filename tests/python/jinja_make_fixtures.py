"""Renders chat templates with Python jinja2 exactly as Hugging Face transformers does and writes
JSON fixtures the C++ JinjaParity tests replay against our interpreter.

Usage: jinja_make_fixtures.py OUT_DIR

transformers (utils/chat_template_utils.py, _compile_jinja_template) renders with
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]),
a tojson filter that is json.dumps(x, ensure_ascii=False, indent, separators, sort_keys), and the
globals raise_exception and strftime_now; apply_chat_template passes messages, tools, documents,
add_generation_prompt and the special tokens. The environment below mirrors that.
"""

import json
import os
import random
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "..", "data", "templates")


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


# Families: (fixture name, file, bos, eos).
FAMILIES = [
    ("smollm2", "smollm2.jinja", "<|im_start|>", "<|im_end|>"),
    ("llama2", "llama2.jinja", "<s>", "</s>"),
    ("llama3", "llama3.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    ("mistral", "mistral-v0.3.jinja", "<s>", "</s>"),
    ("qwen2.5", "qwen2.5.jinja", "", "<|im_end|>"),
    ("gemma", "gemma.jinja", "<bos>", "<eos>"),
    ("phi3", "phi3.jinja", "<s>", "<|endoftext|>"),
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city. Handles \"quotes\" and ünïcödé.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
            },
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "description": "Current time.",
                 "parameters": {"type": "object", "properties": {}}},
}

SYSTEM = {"role": "system", "content": "You are a helpful assistant.\nBe concise."}
USER1 = {"role": "user", "content": "Hello! What's 2+2?  "}
ASSIST1 = {"role": "assistant", "content": " It is 4. "}
USER2 = {"role": "user", "content": "Thanks — and in French? «quatre» 🙂"}

CONVERSATIONS = {
    "system_user": [SYSTEM, USER1],
    "multi_turn": [SYSTEM, USER1, ASSIST1, USER2],
    "no_system": [USER1, ASSIST1, USER2],
    "single_user": [{"role": "user", "content": "Hi"}],
    "content_parts": [
        {"role": "user", "content": [{"type": "text", "text": "Describe this."},
                                     {"type": "text", "text": "Briefly."}]},
    ],
    "tool_calls": [
        SYSTEM,
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call12345", "type": "function",
             "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
        {"role": "tool", "name": "get_weather", "tool_call_id": "call12345",
         "content": "{\"temperature\": 21, \"sky\": \"clear\"}"},
        {"role": "assistant", "content": "It is 21°C and clear in Paris."},
        {"role": "user", "content": "And tomorrow?"},
    ],
    "two_tool_results": [
        {"role": "user", "content": "Weather and time?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "abcdefghi", "type": "function",
             "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
            {"id": "jklmnopqr", "type": "function",
             "function": {"name": "get_time", "arguments": {}}}]},
        {"role": "tool", "tool_call_id": "abcdefghi", "content": "cold"},
        {"role": "tool", "tool_call_id": "jklmnopqr", "content": "noon"},
    ],
    "whitespace_content": [{"role": "user", "content": "  \n\tpadded\t \n "}],
}

# Small templates that pin down interpreter semantics (filters, tests, loops, macros, printing).
MICRO = [
    "{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 7 / 2 }}|{{ 2 ** 10 }}",
    "{{ 'a' ~ 1 ~ none ~ true }}|{{ 'ab' * 3 }}|{{ [1, 2] + [3] }}|{{ 1.5 + 1 }}|{{ 10 / 4 }}",
    "{{ [1, 'a', none, true, 1.0, {'k': 'v'}, (1,), ()] }}|{{ {'a': [1, {'b': \"it's\"}]} }}",
    "{{ 1e20 }}|{{ 1.5e-7 }}|{{ 0.1 + 0.2 }}|{{ 1e16 }}|{{ 1e15 }}|{{ 0.0001 }}|{{ 0.00001 }}|{{ -0.0 }}",
    "{{ x|tojson }}|{{ x|tojson(indent=2) }}|{{ x|tojson(sort_keys=true) }}",
    "{{ x|tojson(separators=(',', ':')) }}|{{ x|tojson(ensure_ascii=true) }}|{{ x.s|tojson }}",
    "{{ '  hi  '|trim }}|{{ 'xxhixx'|trim('x') }}|{{ 'hello world'|title }}|{{ 'hELLO'|capitalize }}",
    "{{ 'a-b c(d'|title }}|{{ 'ÉCOLE'|lower }}|{{ 'straße'|upper }}|{{ 'ab'|reverse }}",
    "{{ [3, 1, 2]|sort }}|{{ ['b', 'A', 'a']|sort }}|{{ [3, 1, 2]|sort(reverse=true) }}|{{ ['a', 'A', 'b']|unique|list }}",
    "{{ x.items_list|map(attribute='n')|join(',') }}|{{ x.items_list|selectattr('n', 'gt', 1)|list|length }}",
    "{{ x.items_list|rejectattr('flag')|map(attribute='n')|list }}|{{ [1, 2, 3, 4]|select('odd')|list }}|{{ [1, 2, 3]|reject('even')|list }}",
    "{{ [1, 2, 3]|first }}|{{ [1, 2, 3]|last }}|{{ 'abc'|first }}|{{ []|first is defined }}|{{ 'abc'|length }}|{{ 'héllo'|length }}",
    "{{ u|default('dflt') }}|{{ ''|default('e', true) }}|{{ none|default('n') }}|{{ u|d('x') }}",
    "{{ '42'|int + 1 }}|{{ '3.7'|int }}|{{ 'x'|int(5) }}|{{ '2.5'|float }}|{{ 3|float }}|{{ 3.9|int }}",
    "{{ -3|abs }}|{{ 2.5|round }}|{{ 3.5|round }}|{{ 2.675|round(2) }}|{{ 2.1|round(0, 'ceil') }}|{{ 7|round }}",
    "{{ 'a\nb\n\nc'|indent(2) }}|{{ 'a\nb'|indent(2, true) }}|{{ 'x y  z'|wordcount }}|{{ 'a<b>&'|e }}",
    "{{ x|items|list }}|{% for k, v in x.d|dictsort %}{{ k }}={{ v }};{% endfor %}|{{ x.d.keys()|list }}|{{ x.d.values()|list }}",
    "{{ x.d.get('a') }}|{{ x.d.get('zz', 'no') }}|{{ x.d.get('zz') }}|{{ 'a' in x.d }}|{{ 'zz' not in x.d }}",
    "{{ ' a b '.strip() }}|{{ 'xax'.strip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}",
    "{{ 'hello'.startswith('he') }}|{{ 'hello'.endswith(('x', 'lo')) }}|{{ 'Hello World'.lower() }}|{{ 'aaa'.replace('a', 'b', 2) }}",
    "{{ 'hello world'.title() }}|{{ 'abc'[1] }}|{{ 'abcdef'[1:4] }}|{{ 'abcdef'[::-1] }}|{{ [1,2,3,4,5][-2:] }}|{{ [1,2,3][::2] }}",
    "{{ 1 < 2 < 3 }}|{{ 1 < 3 < 2 }}|{{ 'a' < 'b' }}|{{ [1, 2] == [1, 2] }}|{{ 1 == 1.0 }}|{{ none is none }}|{{ 2 is even }}",
    "{{ 3 is odd }}|{{ 9 is divisibleby 3 }}|{{ 'x' is string }}|{{ {} is mapping }}|{{ [] is iterable }}|{{ 1 is number }}|{{ true is boolean }}",
    "{{ u is defined }}|{{ u is undefined }}|{{ x is defined }}|{{ 'a' is lower }}|{{ 5 is integer }}|{{ 5.0 is float }}|{{ x.n is sameas none }}",
    "{{ 1 is equalto 1 }}|{{ 'x' is in 'xyz' }}|{{ u is sequence }}|{{ 1 is true }}|{{ false is false }}|{{ x.d is not string }}",
    "{% for i in range(5) %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }};{% endfor %}",
    "{% for i in [1, 2, 3] %}{{ loop.previtem is defined }}{{ loop.previtem }}-{{ loop.nextitem }}{{ loop.cycle('a', 'b') }};{% endfor %}",
    "{% for i in range(10) if i is odd %}{{ i }}:{{ loop.index }}/{{ loop.length }} {% else %}none{% endfor %}|{% for i in [] %}x{% else %}empty{% endfor %}",
    "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i > 4 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "{% for a, b in [(1, 2), (3, 4)] %}{{ a + b }},{% endfor %}|{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}|{% for c in 'héy' %}[{{ c }}]{% endfor %}",
    "{% set y = 5 %}{% for i in [1, 2] %}{{ y }}{% set y = i %}{{ y }}{% endfor %}{{ y }}|{% if true %}{% set z = 3 %}{% endif %}{{ z }}",
    "{% set ns = namespace(n=0, s='') %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.n }}|{{ ns.s }}",
    "{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% set t = (1, 2) %}{{ t }}|{% set blk %}inner {{ 1 + 1 }}{% endset %}[{{ blk }}]",
    "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }}|{{ greet('Bob', greeting='Hi') }}|{{ greet('C', 'Yo') }}",
    "{% macro f(a, b=2) %}{{ a }}-{{ b }}-{{ varargs }}-{{ kwargs }}{% endmacro %}{{ f(1) }}|{{ f(1, 3, 4) }}|{{ f(1, c=5) }}",
    "{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}inside{% endcall %}|{% filter upper %}shout {{ 'me' }}{% endfilter %}",
    "{% raw %}{{ not rendered }}{% endraw %}|{# comment #}|{{ 'x' if true else 'y' }}|{{ 'x' if false else 'y' }}|[{{ 'x' if false }}]",
    "{{ not true }}|{{ true and 'yes' }}|{{ 0 or 'fallback' }}|{{ none or [] }}|{{ not none }}|{{ (1, 2)[0] }}|{{ {'a': 1}['a'] }}",
    "  {% if true %}\n  kept\n  {% endif %}\n  after  \n{# c #}\nend\n",
    "a  {%- if true -%}  b  {%- endif -%}  c\n{{- ' d ' -}}\n  e  {{ 'f' }}\n{%+ if true %}plus{% endif %}\n",
    "{% for m in x.items_list %}\n    {{- m.n }}\n    {%- if not loop.last %},{% endif %}\n{% endfor %}\nend",
    "line1\n    {% if true %}\n    inner\n    {% endif %}\n  {{ 'v' }}\n",
    "{{ x.d | length }}|{{ x.items_list | count }}|{{ [1, 2, 3] | sum }}|{{ [3, 1, 2] | max }}|{{ [3, 1, 2] | min }}|{{ x.items_list | map(attribute='n') | sum }}",
    "{{ x.s }}|{{ x.s|string }}|{{ x.items_list[0].n }}|{{ x['d']['a'] }}|{{ x.d.a }}|{{ x.n }}|{{ x.missing }}|{{ x.items_list.0.n }}",
    "{% set ns = namespace(last=-1) %}{% for m in x.items_list[::-1] %}{% set i = (x.items_list|length - 1) - loop.index0 %}{% if ns.last == -1 and m.flag is defined %}{% set ns.last = i %}{% endif %}{% endfor %}{{ ns.last }}",
    "{% set c = '<think>\nhmm\n</think>\n\nAnswer' %}{{ c.split('</think>')[-1].lstrip('\n') }}|{{ ('</think>' in c)|string }}|{{ c.split('<think>')[0].rstrip('\n') }}|",
    "{{ x.items_list|selectattr('n', 'equalto', 2)|list }}|{{ x.items_list|selectattr('flag', 'defined')|map(attribute='n')|join }}|{{ x.d|dictsort(reverse=true) }}",
    "{%- for m in x.items_list %}\n{%- if loop.first %}[{% endif %}{{ m.n }}{% if not loop.last %}, {% else %}]{% endif %}\n{%- endfor %}\n{{ x.items_list|map(attribute='flag', default='-')|list }}",
    "{{ raise_exception('custom failure ' ~ 42) }}",
    "{{ u.attr }}",
    "{{ 1 + 'a' }}",
    "{{ x.items_list[10]['n'] }}",
    "{% for %}",
    "{{ 'unterminated }}",
    "{% if true %}no end",
    "{{ [1, 2, 3|join(',') }}",
    "{{ 'a' + 1 }}",
    "{{ none + 1 }}",
    "{% set ns.x = 1 %}",
    "{{ 1 / 0 }}",
]

MICRO_DATA = {
    "x": {
        "s": "é \"q\" <tag> \\ \u0001\ttab 😀",
        "n": None,
        "d": {"b": 2, "a": 1, "c": [1, 2]},
        "items_list": [{"n": 1, "flag": True}, {"n": 2, "flag": False}, {"n": 3}],
    }
}


def random_template(rng, depth=0):
    """A random template mixing text whitespace, tags with -/+ markers, comments and
    expressions: differential testing of the lexer's whitespace rules and the evaluator."""
    texts = ["", " ", "  ", "\n", "\n  ", "  \n", "\t", "x", " y ", "\n\n", "z\n  ", "\r\n"]
    exprs = ["1 + 2", "'s' ~ 3", "x.n", "x.d.a", "x.items_list|length", "[1, 2][-1]", "none",
             "x.s|trim", "'a b'.split()", "x.d|tojson", "loop_var", "x.missing|default('m')",
             "3 // 2", "2.5 * 2", "x.items_list|map(attribute='n')|list", "'abc'[1:]",
             "x.d.get('b')", "true and not false", "x.d.keys()|list|sort"]
    conds = ["true", "false", "x.n is none", "x.d.a == 1", "'a' in x.d", "x.missing is defined"]

    def mark():
        return rng.choice(["", "", "-", "+"])

    def endmark():
        return rng.choice(["", "", "-"])

    out = []
    for _ in range(rng.randint(1, 5)):
        out.append(rng.choice(texts))
        kind = rng.randint(0, 5 if depth < 2 else 2)
        if kind == 0:
            out.append("{{%s %s %s}}" % (rng.choice(["", "-"]), rng.choice(exprs), endmark()))
        elif kind == 1:
            out.append("{#%s c %s#}" % (mark(), endmark()))
        elif kind == 2:
            out.append(rng.choice(texts))
        elif kind == 3:
            out.append("{%%%s if %s %s%%}" % (mark(), rng.choice(conds), endmark()))
            out.append(random_template(rng, depth + 1))
            if rng.random() < 0.5:
                out.append("{%%%s else %s%%}" % (mark(), endmark()))
                out.append(random_template(rng, depth + 1))
            out.append("{%%%s endif %s%%}" % (mark(), endmark()))
        elif kind == 4:
            out.append("{%%%s for loop_var in [1, 2] %s%%}" % (mark(), endmark()))
            out.append(random_template(rng, depth + 1))
            out.append("{%%%s endfor %s%%}" % (mark(), endmark()))
        else:
            out.append("{%%%s set loop_var = %s %s%%}" % (mark(), rng.choice(exprs), endmark()))
    out.append(rng.choice(texts))
    return "".join(out)


def render_case(env, source, ctx):
    try:
        tmpl = env.from_string(source)
        return {"expected": tmpl.render(**ctx)}
    except jinja2.exceptions.TemplateSyntaxError as e:
        return {"expected_error": "syntax", "message": str(e)}
    except jinja2.exceptions.TemplateError as e:
        # raise_exception and undefined errors both land here; keep the message for the former.
        return {"expected_error": "template", "message": str(e)}
    except Exception as e:  # TypeError, ZeroDivisionError, ... inside the template
        return {"expected_error": "runtime", "message": f"{type(e).__name__}: {e}"}


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    env = make_env()
    cases = []
    for family, fname, bos, eos in FAMILIES:
        path = os.path.join(TEMPLATES, fname)
        with open(path, encoding="utf-8") as f:
            source = f.read()
        for conv_name, messages in CONVERSATIONS.items():
            for tools in (None, [WEATHER_TOOL, TIME_TOOL]):
                if tools and "tool" not in conv_name and conv_name != "system_user":
                    continue
                for agp in (True, False):
                    ctx = {"messages": messages, "tools": tools, "documents": None,
                           "add_generation_prompt": agp, "bos_token": bos, "eos_token": eos}
                    case = {"name": f"{family}/{conv_name}/{'tools' if tools else 'notools'}/"
                                    f"{'gen' if agp else 'nogen'}",
                            "template_file": os.path.abspath(path), "bos_token": bos,
                            "eos_token": eos, "messages": messages, "tools": tools,
                            "add_generation_prompt": agp, "extra": {}}
                    case.update(render_case(env, source, ctx))
                    cases.append(case)
    for i, source in enumerate(MICRO):
        case = {"name": f"micro/{i}", "template": source, "context": MICRO_DATA}
        case.update(render_case(env, source, MICRO_DATA))
        cases.append(case)
    seed = int(os.environ.get("TESSERA_JINJA_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    for i in range(300):
        source = random_template(rng)
        case = {"name": f"random/{seed}/{i}", "template": source, "context": MICRO_DATA}
        case.update(render_case(env, source, MICRO_DATA))
        cases.append(case)
    print(f"random template seed {seed} (set TESSERA_JINJA_SEED to reproduce)")
    with open(os.path.join(out_dir, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
    n_err = sum(1 for c in cases if "expected_error" in c)
    print(f"wrote {len(cases)} cases ({n_err} expecting errors) to {out_dir}")


if __name__ == "__main__":
    main()
