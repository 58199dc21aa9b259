// Placeholder until the load-testing client lands in the next commit.
#include "commands.h"
#include "tessera/core/error.h"
namespace tessera::cli {
int cmd_bench(const std::vector<std::string>&) { fail(ErrorCode::kUnsupported, "bench: not in this build"); }
}  // namespace tessera::cli
