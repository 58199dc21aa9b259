// tessera: the command-line entry point. The subcommands register themselves on the CLI11 app in
// cli_app.cpp; exit codes: 0 ok, 1 runtime error, 2 usage error.
#include "cli_app.h"

int main(int argc, char** argv) { return tessera::cli::run_cli(argc, argv); }
