// The command line on CLI11: each subcommand registers its options (with their meaning, type,
// default and valid range, shown by --help) on the root app and returns the action to run when it
// is chosen. run_cli() parses, reports usage errors (exit 2, with a "did you mean" for a
// mistyped option) and runtime errors (exit 1).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace tessera::cli {

// A registered subcommand and what it runs; `run` returns the exit code.
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

// A command's options by flag name, so that its action can tell a value the user gave from the
// default (the topology-file precedence and flags whose default depends on another flag need
// that). attach() once, then add()/flag() as CLI11's add_option/add_flag, defaults shown in help.
class NamedOptions {
 public:
  void attach(CLI::App* app) { app_ = app; }
  template <class T>
  CLI::Option* add(const std::string& name, T& var, const std::string& help) {
    return opt_[name] = app_->add_option("--" + name, var, help)->capture_default_str();
  }
  CLI::Option* flag(const std::string& name, bool& var, const std::string& help) {
    return opt_[name] = app_->add_flag("--" + name, var, help);
  }
  bool given(const std::string& name) const { return opt_.at(name)->count() > 0; }

 private:
  CLI::App* app_ = nullptr;
  std::map<std::string, CLI::Option*> opt_;
};

// The option of `app` closest to `typed` (e.g. "--max-token" -> "--max-tokens") within a small
// edit distance, or "" when none is close.
std::string suggest_option(const CLI::App& app, const std::string& typed);

// Adds --backend cpu|guarded|cuda (the device a model runs on) to `app`, bound to `backend`.
CLI::Option* add_backend_option(CLI::App* app, std::string& backend);

// Adds --activations int8|fp32 (ops::cpu::Activations: how the CPU matmul treats activations for
// quantized weights) to `app`, bound to `activations`.
CLI::Option* add_activations_option(CLI::App* app, std::string& activations);
// Adds --kv-cache-dtype f32|f16|bf16 (kv_cache::KvPoolParams::dtype) to `app`, bound to `dtype`.
CLI::Option* add_kv_cache_dtype_option(CLI::App* app, std::string& dtype);

// Parses argv, runs the chosen subcommand and returns the process exit code:
// 0 ok, 1 runtime error, 2 usage error.
int run_cli(int argc, char** argv);

}  // namespace tessera::cli
