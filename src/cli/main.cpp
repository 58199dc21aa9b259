// tessera: the command-line entry point. Subcommands live in commands.cpp; this file only
// dispatches, sets up logging and turns errors into messages and exit codes.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.h"
#include "tessera/core/error.h"
#include "tessera/core/log.h"
#include "worker_cmd.h"

namespace {
void usage() {
  std::fputs(
      "usage: tessera <command> [options]\n"
      "  serve [--model M] [--host H] [--http-port N] [--api-key K] [--max-num-seqs N]\n"
      "        [--kv-cache-mb MB] [--threads N] [--grpc-port N] [--in-process-worker]\n"
      "        [--backend cpu|guarded|cuda]\n"
      "                                          OpenAI HTTP (+ gRPC) server, worker in its own "
      "process\n"
      "  serve --config FILE.yaml [--node-rank R] the worker group of a topology file (configs/)\n"
      "  generate --config FILE.yaml --prompt TEXT [--json]   one generation through that group\n"
      "  plan --model M --gpus N [--gpu-memory GB] [--context L] [--batch B] [--json]\n"
      "                                          T x P layouts: memory and communication per GPU\n"
      "  bench --base-url URL --model NAME ...   load-test any OpenAI-compatible server\n"
      "  models pull [NAME]                      download a known model (default "
      "smollm2-135m-instruct)\n"
      "  generate --model M --prompt TEXT [--chat] [--max-tokens N] [--temperature T] [--top-k K]\n"
      "           [--top-p P] [--min-p P] [--seed S] [--threads N] [--json]\n"
      "           [--backend cpu|guarded|cuda]\n"
      "  chat --model M [--system TEXT]          interactive, uses the model's chat template\n"
      "  tokenize --model M [--json] TEXT\n"
      "  template --model M --messages FILE.json\n"
      "  logits --model M --ids 1,2,3 --out FILE [--chunk N] [--backend B]   (raw float32 logits)\n",
      stderr);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  tessera::log_to_stderr();
  tessera::set_log_level(std::getenv("TESSERA_LOG_LEVEL") ? std::getenv("TESSERA_LOG_LEVEL")
                                                          : "info");
  const std::string cmd = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (cmd == "models") return tessera::cli::cmd_models(args);
    if (cmd == "generate") return tessera::cli::cmd_generate(args);
    if (cmd == "chat") return tessera::cli::cmd_chat(args);
    if (cmd == "tokenize") return tessera::cli::cmd_tokenize(args);
    if (cmd == "template") return tessera::cli::cmd_template(args);
    if (cmd == "logits") return tessera::cli::cmd_logits(args);
    if (cmd == "serve") return tessera::cli::cmd_serve(args);
    if (cmd == "bench") return tessera::cli::cmd_bench(args);
    if (cmd == "plan") return tessera::cli::cmd_plan(args);
    if (cmd == "worker") return tessera::cli::cmd_worker(args);  // internal: engine-spawned
    std::fprintf(stderr, "tessera: unknown command '%s'\n", cmd.c_str());
    usage();
    return 2;
  } catch (const tessera::Error& e) {
    std::fprintf(stderr, "tessera %s: error (%s): %s\n", cmd.c_str(),
                 tessera::error_code_name(e.code()), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tessera %s: error: %s\n", cmd.c_str(), e.what());
    return 1;
  }
}
