// `tessera plan`: how to lay a model out over N GPUs (tensor x pipeline parallelism), from the
// planner's arithmetic (include/tessera/planner/planner.h). Reads only file headers.
#include <iostream>
#include <nlohmann/json.hpp>

#include "args.h"
#include "commands.h"
#include "model_registry.h"
#include "tessera/core/error.h"
#include "tessera/planner/planner.h"

namespace tessera::cli {

int cmd_plan(const std::vector<std::string>& argv) {
  Args a(argv,
         {"model", "gpus", "gpus-per-node", "gpu-memory", "gpu-memory-utilization", "context",
          "batch", "max-batched-tokens", "dtype", "kv-dtype"},
         {"json"});
  if (!a.positionals().empty())
    fail(ErrorCode::kInvalidArgument, "plan: unexpected argument '", a.positionals()[0],
         "'; usage: tessera plan --model M --gpus N [--gpu-memory GB] [--context L] [--batch B] "
         "[--json]");
  if (!a.get("gpus")) fail(ErrorCode::kInvalidArgument, "plan: --gpus N is required");
  const planner::PlanParams params{
      .gpus = a.get_int("gpus", 1),
      .gpus_per_node = a.get_int("gpus-per-node", 0),
      .gpu_memory_gb = a.get_double("gpu-memory", 80.0),
      .gpu_memory_utilization = a.get_double("gpu-memory-utilization", 0.9),
      .context = a.get_int("context", 4096),
      .batch = a.get_int("batch", 1),
      .max_batched_tokens = a.get_int("max-batched-tokens", 2048),
      .kv_bits = planner::dtype_bits(a.get_or("kv-dtype", "bf16")),
  };
  const std::string path = resolve_model_path(a.get_or("model", default_model().name));
  const planner::ModelSpec spec = planner::load_model_spec(path, a.get_or("dtype", "bf16"));
  const planner::Plan plan = planner::make_plan(spec, params);
  if (a.flag("json"))
    std::cout << planner::plan_to_json(spec, plan).dump(2) << "\n";
  else
    std::cout << planner::format_plan(spec, plan);
  return 0;
}

}  // namespace tessera::cli
