// `tessera plan`: how to lay a model out over N GPUs (tensor x pipeline parallelism), from the
// planner's arithmetic (include/tessera/planner/planner.h). Reads only file headers.
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "model_registry.h"
#include "tessera/core/error.h"
#include "tessera/planner/planner.h"

namespace tessera::cli {

Command add_plan(CLI::App& root) {
  struct Opts {
    std::string model = default_model().name, dtype = "bf16", kv_dtype = "bf16", act_dtype = "bf16",
                expert_attention = "data";
    int gpus = 0, gpus_per_node = 0, context = 4096, batch = 1, max_batched_tokens = 2048;
    double gpu_memory = 80.0, gpu_memory_utilization = 0.9;
    double interconnect_gbps = 0, latency_us = 5.0, gpu_tflops = 989.0, gpu_mem_bw = 3350.0;
    int prompt_tokens = 0;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* c = root.add_subcommand(
      "plan", "T x P layouts of a model over N GPUs: memory and communication per GPU");
  const auto dtypes =
      CLI::IsMember({"bf16", "f16", "fp16", "f32", "fp32", "int8", "fp8", "q8", "int4", "q4"});
  c->add_option("--model", o->model,
                "a GGUF file, a Hugging Face directory, a config.json or a known model name")
      ->capture_default_str();
  c->add_option("--gpus", o->gpus, "the number of GPUs")->required()->check(CLI::Range(1, 1 << 20));
  c->add_option("--gpus-per-node", o->gpus_per_node, "GPUs per node (0: 8, or --gpus if fewer)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_option("--gpu-memory", o->gpu_memory, "memory per GPU in GB (1e9 bytes)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c->add_option("--gpu-memory-utilization", o->gpu_memory_utilization,
                "the share of GPU memory to use, in (0, 1]")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  c->add_option("--context", o->context, "context length in tokens")
      ->check(CLI::Range(1, 1 << 30))
      ->capture_default_str();
  c->add_option("--batch", o->batch, "concurrent sequences")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  c->add_option("--max-batched-tokens", o->max_batched_tokens, "prefill chunk in tokens")
      ->check(CLI::Range(1, 1 << 30))
      ->capture_default_str();
  c->add_option("--dtype", o->dtype, "weight dtype of a bare config.json")
      ->check(dtypes)
      ->capture_default_str();
  c->add_option("--kv-dtype", o->kv_dtype, "KV cache dtype")->check(dtypes)->capture_default_str();
  c->add_option("--interconnect-gbps", o->interconnect_gbps,
                "link bandwidth per GPU and direction in Gbit/s (100 GB/s = 800); adds decode "
                "and prefill time estimates (0: none)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_option("--latency-us", o->latency_us, "per-message link latency in microseconds")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_option("--gpu-tflops", o->gpu_tflops, "dense 16-bit TFLOP/s per GPU (H100 SXM: 989)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c->add_option("--gpu-mem-bw", o->gpu_mem_bw, "memory bandwidth per GPU in GB/s (H100 SXM: 3350)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c->add_option("--prompt-tokens", o->prompt_tokens,
                "prompt length for the prefill time (0: --max-batched-tokens)")
      ->check(CLI::Range(0, 1 << 30))
      ->capture_default_str();
  c->add_option("--act-dtype", o->act_dtype,
                "activations and messages between GPUs (the cpu backend sends f32)")
      ->check(dtypes)
      ->capture_default_str();
  c->add_option("--expert-attention", o->expert_attention,
                "expert parallelism: data (all-to-all) or replicated (all-reduce) attention")
      ->check(CLI::IsMember({"data", "replicated"}))
      ->capture_default_str();
  c->add_flag("--json", o->json, "print the plan as JSON");
  return {c, [o] {
            const planner::PlanParams params{
                .gpus = o->gpus,
                .gpus_per_node = o->gpus_per_node,
                .gpu_memory_gb = o->gpu_memory,
                .gpu_memory_utilization = o->gpu_memory_utilization,
                .context = o->context,
                .batch = o->batch,
                .max_batched_tokens = o->max_batched_tokens,
                .kv_bits = planner::dtype_bits(o->kv_dtype),
                .act_bits = planner::dtype_bits(o->act_dtype),
                .expert_data_attention = o->expert_attention == "data",
                .interconnect_gbps = o->interconnect_gbps,
                .latency_us = o->latency_us,
                .gpu_tflops = o->gpu_tflops,
                .gpu_mem_bw_gbs = o->gpu_mem_bw,
                .prompt_tokens = o->prompt_tokens,
            };
            const std::string path = resolve_model_path(o->model);
            const planner::ModelSpec spec = planner::load_model_spec(path, o->dtype);
            const planner::Plan plan = planner::make_plan(spec, params);
            if (o->json)
              std::cout << planner::plan_to_json(spec, plan).dump(2) << "\n";
            else
              std::cout << planner::format_plan(spec, plan);
            return 0;
          }};
}

}  // namespace tessera::cli
