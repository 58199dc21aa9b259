// The tessera subcommands. Each takes the arguments after its name and returns an exit code;
// errors are thrown as tessera::Error and reported by main().
#pragma once

#include <string>
#include <vector>

namespace tessera::cli {

int cmd_models(const std::vector<std::string>& args);
int cmd_generate(const std::vector<std::string>& args);
int cmd_chat(const std::vector<std::string>& args);
int cmd_tokenize(const std::vector<std::string>& args);
int cmd_template(const std::vector<std::string>& args);
int cmd_logits(const std::vector<std::string>& args);
int cmd_serve(const std::vector<std::string>& args);
int cmd_bench(const std::vector<std::string>& args);  // bench_cmd.cpp: load-testing client
int cmd_plan(const std::vector<std::string>& args);   // plan_cmd.cpp: T x P layout planner

}  // namespace tessera::cli
