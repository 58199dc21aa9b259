// A small command-line parser for the tessera subcommands: `--key value`, `--key=value`, `--flag`,
// and positionals. Unknown options are an error naming the option and the valid ones.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace tessera::cli {

class Args {
 public:
  // `flags` take no value; `options` take one.
  Args(const std::vector<std::string>& argv, const std::set<std::string>& options,
       const std::set<std::string>& flags);
  bool flag(const std::string& name) const { return flags_.contains(name); }
  std::optional<std::string> get(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& def) const;
  int get_int(const std::string& name, int def) const;
  double get_double(const std::string& name, double def) const;
  const std::vector<std::string>& positionals() const { return positionals_; }

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> flags_;
  std::vector<std::string> positionals_;
};

}  // namespace tessera::cli
