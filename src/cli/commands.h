// The tessera subcommands. Each add_* registers its options on the root CLI11 app (defaults live
// in those option definitions) and returns the action that runs it; errors are thrown as
// tessera::Error and reported by run_cli() with exit code 1.
#pragma once

#include "cli_app.h"

namespace tessera::cli {

Command add_models(CLI::App& root);
Command add_generate(CLI::App& root);
Command add_chat(CLI::App& root);
Command add_tokenize(CLI::App& root);
Command add_template(CLI::App& root);
Command add_logits(CLI::App& root);
Command add_serve(CLI::App& root);  // serve.cpp
Command add_bench(CLI::App& root);  // bench_cmd.cpp: load-testing client
Command add_plan(CLI::App& root);   // plan_cmd.cpp: T x P layout planner

}  // namespace tessera::cli
