// Jinja renderer: walks the parsed tree with jinja2's scoping (loop bodies and macros get their
// own frames, `if` does not; each loop iteration starts from the enclosing values), globals that
// Hugging Face provides (raise_exception, strftime_now) plus range/dict/namespace, and the
// sandbox limits.
#include <ctime>

#include "tessera/core/error.h"
#include "tessera/tokenizer/jinja.h"
#include "tessera/tokenizer/jinja_ast.h"
#include "tessera/tokenizer/jinja_runtime.h"

namespace tessera::tokenizer::jinja {
namespace {

struct Frame {
  const Frame* parent = nullptr;
  std::vector<std::pair<std::string, Value>> vars;

  const Value* find(const std::string& name) const {
    for (const Frame* f = this; f; f = f->parent) {
      for (const auto& [k, v] : f->vars) {
        if (k == name) return &v;
      }
    }
    return nullptr;
  }
  void set(const std::string& name, Value v) {
    for (auto& [k, old] : vars) {
      if (k == name) {
        old = std::move(v);
        return;
      }
    }
    vars.emplace_back(name, std::move(v));
  }
};

enum class Flow { kNormal, kBreak, kContinue };

class Renderer {
 public:
  Renderer(const Value& ctx, const TemplateLimits& limits) : rt_{limits}, ctx_(ctx) {
    make_globals();
  }

  std::string run(const Body& body) {
    std::string out;
    Frame root;
    root_ = &root;
    try {
      exec(body, root, out);
    } catch (const Error& e) {
      throw Error(e.code(),
                  std::string(e.what()) + " (template line " + std::to_string(line_) + ")");
    }
    return out;
  }

 private:
  void emit(std::string& out, const std::string& s) {
    rt_.check_size(out.size() + s.size());
    out += s;
  }

  Flow exec(const Body& body, Frame& f, std::string& out) {
    for (const auto& n : body) {
      Flow fl = exec_node(*n, f, out);
      if (fl != Flow::kNormal) return fl;
    }
    return Flow::kNormal;
  }

  Flow exec_node(const Node& n, Frame& f, std::string& out) {
    line_ = n.line;
    switch (n.kind) {
      case Node::Kind::kText:
        emit(out, n.text);
        return Flow::kNormal;
      case Node::Kind::kOutput:
        emit(out, eval(*n.expr, f).to_str());
        return Flow::kNormal;
      case Node::Kind::kIf:
        for (size_t i = 0; i < n.conds.size(); ++i) {
          if (eval(*n.conds[i], f).truthy()) return exec(n.bodies[i], f, out);
        }
        return exec(n.else_body, f, out);
      case Node::Kind::kFor:
        return exec_for(n, f, out);
      case Node::Kind::kSet:
        exec_set(n, f);
        return Flow::kNormal;
      case Node::Kind::kSetBlock: {
        Frame inner{&f, {}};
        std::string buf;
        exec(n.body, inner, buf);
        f.set(n.targets[0], apply_filters(n.filters, Value(std::move(buf)), f));
        return Flow::kNormal;
      }
      case Node::Kind::kMacro:
        f.set(n.name, make_macro(n, nullptr));
        return Flow::kNormal;
      case Node::Kind::kCallBlock: {
        const Expr& call = *n.expr;
        CallArgs args = eval_args(call.args, call.kwargs, f);
        args.kw.emplace_back("caller", make_macro(n, &f));
        emit(out, call_value(rt_, eval(*call.a, f), args).to_str());
        return Flow::kNormal;
      }
      case Node::Kind::kFilterBlock: {
        Frame inner{&f, {}};
        std::string buf;
        exec(n.body, inner, buf);
        emit(out, apply_filters(n.filters, Value(std::move(buf)), f).to_str());
        return Flow::kNormal;
      }
      case Node::Kind::kBreak:
        return Flow::kBreak;
      case Node::Kind::kContinue:
        return Flow::kContinue;
      case Node::Kind::kScope:
        return exec(n.body, f, out);
    }
    return Flow::kNormal;
  }

  Value apply_filters(const std::vector<FilterCall>& filters, Value v, Frame& f) {
    for (const auto& fc : filters)
      v = apply_filter(rt_, fc.name, v, eval_args(fc.args, fc.kwargs, f));
    return v;
  }

  void bind_targets(const std::vector<std::string>& targets, const Value& item, Frame& f) {
    if (targets.size() == 1) {
      f.set(targets[0], item);
      return;
    }
    std::vector<Value> parts = iterate(item);
    if (parts.size() != targets.size()) {
      runtime_error(parts.size() < targets.size() ? "not enough values to unpack"
                                                  : "too many values to unpack");
    }
    for (size_t i = 0; i < targets.size(); ++i) f.set(targets[i], parts[i]);
  }

  Flow exec_for(const Node& n, Frame& f, std::string& out) {
    Value seq = eval(*n.expr, f);
    if (seq.is_none()) runtime_error("'NoneType' object is not iterable");
    std::vector<Value> items = iterate(seq);
    if (n.cond) {
      std::vector<Value> kept;
      for (auto& item : items) {
        rt_.count_iteration();
        Frame tmp{&f, {}};
        bind_targets(n.targets, item, tmp);
        if (eval(*n.cond, tmp).truthy()) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) return exec(n.else_body, f, out);
    auto len = static_cast<int64_t>(items.size());
    Value cycle_holder;
    for (int64_t i = 0; i < len; ++i) {
      rt_.count_iteration();
      Frame it{&f, {}};
      bind_targets(n.targets, items[static_cast<size_t>(i)], it);
      Value loop = Value::dict();
      auto& d = loop.dict_mut();
      d.set("index", Value(i + 1));
      d.set("index0", Value(i));
      d.set("revindex", Value(len - i));
      d.set("revindex0", Value(len - i - 1));
      d.set("first", Value(i == 0));
      d.set("last", Value(i == len - 1));
      d.set("length", Value(len));
      d.set("depth", Value(static_cast<int64_t>(1)));
      d.set("depth0", Value(static_cast<int64_t>(0)));
      d.set("previtem", i > 0 ? items[static_cast<size_t>(i - 1)]
                              : Value::undefined("there is no previous item"));
      d.set("nextitem", i + 1 < len ? items[static_cast<size_t>(i + 1)]
                                    : Value::undefined("there is no next item"));
      d.set("cycle", Value::function("cycle", [i](const CallArgs& a) -> Value {
              if (a.pos.empty()) runtime_error("no items for cycling given");
              return a.pos[static_cast<size_t>(i) % a.pos.size()];
            }));
      it.set("loop", loop);
      Flow fl = exec(n.body, it, out);
      if (fl == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  static bool holds_namespace(const Value& v, int depth) {
    if (depth > 256) runtime_error("value nested too deeply");
    if (v.is_dict()) {
      if (v.dict_ref().is_namespace) return true;
      for (const auto& kv : v.dict_ref().items) {
        if (holds_namespace(kv.second, depth + 1)) return true;
      }
    } else if (v.is_list()) {
      for (const auto& x : v.list_ref().items) {
        if (holds_namespace(x, depth + 1)) return true;
      }
    }
    return false;
  }

  void exec_set(const Node& n, Frame& f) {
    Value v = eval(*n.expr, f);
    if (n.attr_target) {
      Value ns = lookup(n.targets[0], f);
      if (!ns.is_dict() || !ns.dict_ref().is_namespace) {
        runtime_error("cannot assign attribute on non-namespace object");
      }
      // Namespaces are the only mutable objects; refusing to store one inside another rules out
      // reference cycles, which would make printing or comparing recurse forever.
      if (holds_namespace(v, 0)) runtime_error("cannot store a namespace inside a namespace");
      ns.dict_mut().set(n.targets[1], std::move(v));
      return;
    }
    bind_targets(n.targets, v, f);
  }

  // Macros and call-block callers: a Callable that renders the body in a fresh frame whose
  // parent is the template's top level (or, for a caller, the frame of the call block).
  Value make_macro(const Node& n, const Frame* parent) {
    const Frame* scope = parent ? parent : root_;
    const Node* node = &n;
    return Value::function(
        n.kind == Node::Kind::kMacro ? n.name : "caller",
        [this, node, scope](const CallArgs& a) { return call_macro(*node, scope, a); });
  }

  Value call_macro(const Node& n, const Frame* scope, const CallArgs& a) {
    if (++rt_.depth > rt_.limits.max_recursion) {
      fail(ErrorCode::kResourceExhausted, "chat template: recursion deeper than ",
           rt_.limits.max_recursion);
    }
    int saved_line = line_;
    Frame mf{scope, {}};
    std::vector<Value> varargs;
    for (size_t i = 0; i < a.pos.size(); ++i) {
      if (i < n.params.size()) {
        mf.set(n.params[i].first, a.pos[i]);
      } else {
        varargs.push_back(a.pos[i]);
      }
    }
    Value kwargs = Value::dict();
    for (const auto& [k, v] : a.kw) {
      bool is_param = false;
      for (const auto& p : n.params) is_param |= p.first == k;
      if (is_param) {
        mf.set(k, v);
      } else if (k == "caller") {
        mf.set("caller", v);
      } else {
        kwargs.dict_mut().set(k, v);
      }
    }
    for (const auto& [name, def] : n.params) {
      bool bound = false;
      for (const auto& kv : mf.vars) bound |= kv.first == name;
      if (!bound) {
        mf.set(name, def ? eval(*def, mf)
                         : Value::undefined("parameter '" + name + "' was not provided"));
      }
    }
    mf.set("varargs", Value::list(std::move(varargs), true));
    mf.set("kwargs", kwargs);
    std::string buf;
    exec(n.body, mf, buf);
    --rt_.depth;
    line_ = saved_line;
    return Value(std::move(buf));
  }

  Value lookup(const std::string& name, const Frame& f) {
    if (const Value* v = f.find(name)) return *v;
    if (const Value* v = ctx_.dict_ref().find(name)) return *v;
    for (const auto& [k, v] : globals_) {
      if (k == name) return v;
    }
    return Value::undefined(detail::concat("'", name, "' is undefined"));
  }

  CallArgs eval_args(const std::vector<ExprPtr>& args,
                     const std::vector<std::pair<std::string, ExprPtr>>& kwargs, Frame& f) {
    CallArgs out;
    for (const auto& e : args) out.pos.push_back(eval(*e, f));
    for (const auto& [k, e] : kwargs) out.kw.emplace_back(k, eval(*e, f));
    return out;
  }

  Value eval(const Expr& e, Frame& f) {
    using K = Expr::Kind;
    switch (e.kind) {
      case K::kLiteral:
        return e.value;
      case K::kName:
        return lookup(e.name, f);
      case K::kList:
      case K::kTuple: {
        std::vector<Value> items;
        for (const auto& x : e.args) items.push_back(eval(*x, f));
        return Value::list(std::move(items), e.kind == K::kTuple);
      }
      case K::kDict: {
        Value d = Value::dict();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          Value k = eval(*e.args[i], f);
          if (!k.is_string()) runtime_error("only string keys are supported in dict literals");
          d.dict_mut().set(k.str_ref(), eval(*e.args[i + 1], f));
        }
        return d;
      }
      case K::kGetAttr:
        return get_attr(rt_, eval(*e.a, f), e.name);
      case K::kGetItem: {
        Value obj = eval(*e.a, f);
        return get_item(rt_, obj, eval(*e.b, f));
      }
      case K::kSlice: {
        Value obj = eval(*e.a, f);
        Value parts[3];
        for (size_t i = 0; i < 3; ++i) {
          if (e.args[i]) parts[i] = eval(*e.args[i], f);
        }
        return slice_value(obj, parts[0], parts[1], parts[2]);
      }
      case K::kCall: {
        Value fn = eval(*e.a, f);
        return call_value(rt_, fn, eval_args(e.args, e.kwargs, f));
      }
      case K::kFilter: {
        Value in = eval(*e.a, f);
        return apply_filter(rt_, e.name, in, eval_args(e.args, e.kwargs, f));
      }
      case K::kTest: {
        Value v = eval(*e.a, f);
        bool r = apply_test(rt_, e.name, v, eval_args(e.args, e.kwargs, f));
        return Value(r != e.negated);
      }
      case K::kUnary:
        return unary_op(e.name, eval(*e.a, f));
      case K::kBinary: {
        Value l = eval(*e.a, f);
        if (e.name == "and") return l.truthy() ? eval(*e.b, f) : l;
        if (e.name == "or") return l.truthy() ? l : eval(*e.b, f);
        return binary_op(rt_, e.name, l, eval(*e.b, f));
      }
      case K::kCompare: {
        Value l = eval(*e.a, f);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value r = eval(*e.args[i], f);
          if (!compare_op(e.ops[i], l, r)) return Value(false);
          l = std::move(r);
        }
        return Value(true);
      }
      case K::kCond:
        if (eval(*e.b, f).truthy()) return eval(*e.a, f);
        return e.c ? eval(*e.c, f)
                   : Value::undefined(
                         "the inline if-expression evaluated to false and no else section was "
                         "defined.");
    }
    return Value();
  }

  void make_globals() {
    const TemplateLimits& lim = rt_.limits;
    globals_.emplace_back(
        "range", Value::function("range", [&lim](const CallArgs& a) {
          std::vector<int64_t> n;
          for (const auto& v : a.pos) {
            if (!v.is_int() && !v.is_bool()) runtime_error("range() arguments must be integers");
            n.push_back(v.as_int());
          }
          if (n.empty() || n.size() > 3) runtime_error("range expected 1 to 3 arguments");
          int64_t start = n.size() > 1 ? n[0] : 0, stop = n.size() > 1 ? n[1] : n[0];
          int64_t step = n.size() > 2 ? n[2] : 1;
          if (step == 0) runtime_error("range() arg 3 must not be zero");
          long double count = step > 0 ? (static_cast<long double>(stop) - start) / step
                                       : (static_cast<long double>(start) - stop) / -step;
          if (count > static_cast<long double>(lim.max_loop_iterations)) {
            fail(ErrorCode::kResourceExhausted, "chat template: range() longer than ",
                 lim.max_loop_iterations, " items");
          }
          std::vector<Value> out;
          for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.emplace_back(i);
          return Value::list(std::move(out));
        }));
    auto to_dict = [](const CallArgs& a, bool ns) {
      Value d = Value::dict();
      d.dict_mut().is_namespace = ns;
      for (const auto& p : a.pos) {
        if (!p.is_dict()) runtime_error("dict()/namespace() positional argument must be a mapping");
        for (const auto& [k, v] : p.dict_ref().items) d.dict_mut().set(k, v);
      }
      for (const auto& [k, v] : a.kw) d.dict_mut().set(k, v);
      return d;
    };
    globals_.emplace_back("dict", Value::function("dict", [to_dict](const CallArgs& a) {
                            return to_dict(a, false);
                          }));
    globals_.emplace_back("namespace", Value::function("namespace", [to_dict](const CallArgs& a) {
                            return to_dict(a, true);
                          }));
    globals_.emplace_back("raise_exception",
                          Value::function("raise_exception", [](const CallArgs& a) -> Value {
                            fail(ErrorCode::kInvalidArgument, "chat template raised an exception: ",
                                 a.pos.empty() ? std::string() : a.pos[0].to_str());
                          }));
    globals_.emplace_back("strftime_now", Value::function("strftime_now", [](const CallArgs& a) {
                            if (a.pos.empty() || !a.pos[0].is_string())
                              runtime_error("strftime_now expects a format string");
                            std::time_t now = std::time(nullptr);
                            std::tm tm{};
                            localtime_r(&now, &tm);
                            std::string buf(256 + a.pos[0].str_ref().size() * 8, '\0');
                            size_t n = std::strftime(buf.data(), buf.size(),
                                                     a.pos[0].str_ref().c_str(), &tm);
                            buf.resize(n);
                            return Value(buf);
                          }));
  }

  Runtime rt_;
  const Value& ctx_;
  std::vector<std::pair<std::string, Value>> globals_;
  const Frame* root_ = nullptr;
  int line_ = 0;
};

}  // namespace

Template::Template(const std::string& source) : tree_(parse_template(source)) {}
Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render_value(const Value& context, const TemplateLimits& limits) const {
  if (!context.is_dict())
    fail(ErrorCode::kInvalidArgument, "chat template: context must be an object");
  Renderer r(context, limits);
  return r.run(tree_->body);
}

std::string Template::render(const nlohmann::json& context, const TemplateLimits& limits) const {
  return render_value(Value::from_json(context), limits);
}

std::string Template::render(const nlohmann::ordered_json& context,
                             const TemplateLimits& limits) const {
  return render_value(Value::from_json(context), limits);
}

}  // namespace tessera::tokenizer::jinja
