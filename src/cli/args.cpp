#include "args.h"

#include "tessera/core/error.h"

namespace tessera::cli {

Args::Args(const std::vector<std::string>& argv, const std::set<std::string>& options,
           const std::set<std::string>& flags) {
  auto valid = [&] {
    std::string s;
    for (const auto& o : options) s += " --" + o;
    for (const auto& f : flags) s += " --" + f;
    return s;
  };
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.rfind("--", 0) != 0 || a == "--") {
      positionals_.push_back(a);
      continue;
    }
    std::string key = a.substr(2), value;
    bool has_value = false;
    if (auto eq = key.find('='); eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
      has_value = true;
    }
    if (flags.contains(key)) {
      if (has_value) fail(ErrorCode::kInvalidArgument, "--", key, " takes no value");
      flags_.insert(key);
    } else if (options.contains(key)) {
      if (!has_value) {
        if (i + 1 >= argv.size()) fail(ErrorCode::kInvalidArgument, "--", key, " needs a value");
        value = argv[++i];
      }
      values_[key] = value;
    } else {
      fail(ErrorCode::kInvalidArgument, "unknown option --", key, "; valid:", valid());
    }
  }
}

std::optional<std::string> Args::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::get_or(const std::string& name, const std::string& def) const {
  return get(name).value_or(def);
}

int Args::get_int(const std::string& name, int def) const {
  auto v = get(name);
  if (!v) return def;
  try {
    size_t pos = 0;
    int x = std::stoi(*v, &pos);
    if (pos != v->size()) throw std::invalid_argument("trailing");
    return x;
  } catch (const std::exception&) {
    fail(ErrorCode::kInvalidArgument, "--", name, " expects an integer, got '", *v, "'");
  }
}

double Args::get_double(const std::string& name, double def) const {
  auto v = get(name);
  if (!v) return def;
  try {
    size_t pos = 0;
    double x = std::stod(*v, &pos);
    if (pos != v->size()) throw std::invalid_argument("trailing");
    return x;
  } catch (const std::exception&) {
    fail(ErrorCode::kInvalidArgument, "--", name, " expects a number, got '", *v, "'");
  }
}

}  // namespace tessera::cli
