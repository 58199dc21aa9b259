// run_cli(): the root `tessera` app, its subcommands, and the mapping of errors to exit codes
// (0 ok, 1 runtime error, 2 usage error). CLI11 2.1 has no suggestions for unknown options: the
// subcommands allow extras and we report them here with the nearest option by edit distance.
#include "cli_app.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "commands.h"
#include "tessera/core/edit_distance.h"
#include "tessera/core/error.h"
#include "tessera/core/log.h"
#include "worker_cmd.h"

#ifndef TESSERA_VERSION
#error "TESSERA_VERSION must come from the CMake project version"
#endif

namespace tessera::cli {
namespace {

// Extras CLI11 left unparsed: unknown options (and stray positionals) of the chosen subcommand.
int report_extras(const CLI::App& sub, const std::vector<std::string>& extras) {
  std::string msg;
  for (const auto& x : extras) {
    if (x.rfind("-", 0) == 0 && x.size() > 1) {
      const std::string name = x.substr(0, x.find('='));
      msg = "unknown option " + name;
      if (auto s = suggest_option(sub, name); !s.empty()) msg += "; did you mean " + s + "?";
      break;
    }
  }
  if (msg.empty()) msg = "unexpected argument '" + extras.front() + "'";
  std::fprintf(stderr, "tessera %s: usage error: %s (see tessera %s --help)\n",
               sub.get_name().c_str(), msg.c_str(), sub.get_name().c_str());
  return 2;
}

}  // namespace

std::string suggest_option(const CLI::App& app, const std::string& typed) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const CLI::Option* o : app.get_options()) {
    for (const auto& n : o->get_lnames()) {
      const size_t d = edit_distance(typed, "--" + n);
      if (d < best_d) best_d = d, best = "--" + n;
    }
  }
  // Close enough to be a typo: at most a third of the name, and at most 3 edits.
  return best_d <= std::min<size_t>(3, std::max<size_t>(1, typed.size() / 3)) ? best : "";
}

CLI::Option* add_backend_option(CLI::App* app, std::string& backend) {
  return app->add_option("--backend", backend, "the device the model runs on (device 0)")
      ->check(CLI::IsMember({"cpu", "guarded", "cuda"}))
      ->capture_default_str();
}

CLI::Option* add_activations_option(CLI::App* app, std::string& activations) {
  return app
      ->add_option("--activations", activations,
                   "cpu backend, Q4_0..Q8_0, Q2_K..Q6_K weights: int8 (activations quantized "
                   "per 32 values, integer dot products) or fp32 (exact)")
      ->check(CLI::IsMember({"int8", "fp32"}))
      ->capture_default_str();
}

CLI::Option* add_kv_cache_dtype_option(CLI::App* app, std::string& dtype) {
  return app
      ->add_option("--kv-cache-dtype", dtype,
                   "KV cache element type: f16 / bf16 (values rounded to nearest even as they "
                   "are stored) or f32 (exact, twice the memory per token)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}))
      ->capture_default_str();
}

int run_cli(int argc, char** argv) {
  CLI::App app("tessera: a C++ inference server for large language models", "tessera");
  app.set_version_flag("--version", std::string("tessera ") + TESSERA_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 ok, 1 runtime error, 2 usage error.\n"
      "Run `tessera COMMAND --help` for the options of a command.");
  std::vector<Command> cmds = {
      add_serve(app),  add_generate(app), add_chat(app), add_tokenize(app), add_template(app),
      add_logits(app), add_models(app),   add_plan(app), add_bench(app),    add_worker(app)};
  for (auto& c : cmds) c.app->allow_extras();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string where = "tessera";
    for (const auto& c : cmds) {
      if (!c.app->parsed()) continue;
      // An unknown option explains a missing required one better (--gpu for --gpus).
      if (!c.app->remaining().empty()) return report_extras(*c.app, c.app->remaining());
      where += " " + c.app->get_name();
    }
    std::fprintf(stderr, "%s: usage error: %s (see %s --help)\n", where.c_str(), e.what(),
                 where.c_str());
    return 2;
  }
  for (auto& c : cmds) {
    if (!c.app->parsed()) continue;
    if (!c.app->remaining().empty()) return report_extras(*c.app, c.app->remaining());
    tessera::log_to_stderr();
    const char* level = std::getenv("TESSERA_LOG_LEVEL");
    tessera::set_log_level(level ? level : "info");
    const std::string name = c.app->get_name();
    try {
      return c.run();
    } catch (const tessera::Error& e) {
      std::fprintf(stderr, "tessera %s: error (%s): %s\n", name.c_str(),
                   tessera::error_code_name(e.code()), e.what());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "tessera %s: error: %s\n", name.c_str(), e.what());
    }
    return 1;
  }
  return 2;  // unreachable: require_subcommand(1)
}

}  // namespace tessera::cli
