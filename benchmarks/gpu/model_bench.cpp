// model_bench: whole-model decode and prefill speed on one device, for the GPU proof
// (benchmarks/gpu/run.sh), beside the device-to-device copy bandwidth measured in the same run:
//   - copy: a --copy-mib buffer copied device to device; GB/s counts bytes read + written, as
//     the reference figures do;
//   - decode at each --batches size: that many sequences, each prefilled with --prompt tokens,
//     then --steps greedy-shaped steps of one token per sequence (token ids fixed, logits copied
//     to the host each step as a server would); tok/s = batch x steps / time; at batch 1 also
//     the weight bytes one step must read (LlamaModel::weight_bytes: every matrix and norm, the
//     embedding table only when it is also the LM head) / step time, as a fraction of the copy
//     bandwidth's read half; each batch twice where the model can take decode graphs (one rank,
//     dense: model/decode_graphs.h), op by op ("decode_no_graphs") and replayed ("decode", the
//     serving default on CUDA); --graphs off: op by op only;
//   - prefill: one sequence of --prefill tokens in one step; tok/s and TFLOP/s from the matmuls'
//     2 x params x tokens (attention's own FLOPs left out: < 5% at 512 tokens on these shapes).
// Prints a table and writes JSON (--json). Nothing is asserted: figures, not a test.
// State: none beyond main's locals.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tessera/core/error.h"
#include "tessera/model/local_runner.h"
#include "tessera/ops/backend.h"

namespace {

using tessera::Device;
using tessera::Tensor;
using tessera::model::LlamaModel;
using tessera::model::LocalRunner;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string model, device = "cuda:0", json;
  std::vector<int> batches{1, 8, 64};
  int steps = 32, prompt = 16, prefill = 512, copy_mib = 1024;
  bool graphs = true;  // also decode with graphs (model/decode_graphs.h) beside op by op
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

Device parse_device(const std::string& s) {
  const auto colon = s.find(':');
  const int index = colon == std::string::npos ? 0 : std::stoi(s.substr(colon + 1));
  return Device{tessera::parse_device_type(s.substr(0, colon)), index};
}

// Device-to-device copy bandwidth (read + written bytes per second): 5 back-to-back copies after
// a warm-up, timed to a small device-to-host copy behind them. The D2H copy is the sync: a CUDA
// device-to-device cudaMemcpy may return before the bytes land, a D2H one may not, and both run
// in the legacy stream's order.
double copy_gbps(const std::shared_ptr<tessera::Allocator>& alloc, int mib) {
  const int64_t n = int64_t(mib) * (1 << 20) / 4;
  const Tensor a = Tensor::empty({n}, tessera::DType::kF32, alloc);
  const Tensor b = Tensor::empty({n}, tessera::DType::kF32, alloc);
  const Tensor flag = Tensor::empty({1}, tessera::DType::kF32, alloc);
  tessera::copy(b, a);
  (void)tessera::to_host(flag);
  const int reps = 5;
  const auto t0 = Clock::now();
  for (int i = 0; i < reps; ++i) tessera::copy(b, a);
  (void)tessera::to_host(flag);
  return 2.0 * double(n) * 4 * reps / seconds_since(t0) / 1e9;
}

struct Decode {
  int batch = 0;
  double step_ms = 0, tok_s = 0;
};

// graphs: the decode steps replay device graphs recorded for batch sizes up to `batch`.
Decode decode(const LlamaModel& model, int batch, const Options& o, bool graphs) {
  const int block = 16;
  const int per_seq = (o.prompt + o.steps + 1 + block - 1) / block;
  LocalRunner runner(model, {.num_blocks = batch * per_seq + 1,
                             .block_size = block,
                             .graph_max_batch = graphs ? batch : 0});
  const int64_t vocab = model.config().vocab_size;
  std::vector<int> seqs;
  std::vector<std::vector<int32_t>> feed;
  for (int s = 0; s < batch; ++s) {
    seqs.push_back(runner.add_sequence());
    std::vector<int32_t> ids;
    for (int i = 0; i < o.prompt; ++i) ids.push_back(int32_t((3 + 131 * s + 17 * i) % vocab));
    feed.push_back(std::move(ids));
  }
  auto step = [&] {
    std::vector<LocalRunner::Chunk> chunks;
    for (int s = 0; s < batch; ++s) chunks.push_back({.seq = seqs[s], .tokens = feed[s]});
    (void)tessera::to_host(runner.step(chunks));  // the host has the logits: the step is done
    for (int s = 0; s < batch; ++s) feed[s] = {int32_t((feed[s][0] * 31 + 7) % vocab)};
  };
  step();  // prefill (untimed)
  step();  // first decode: warm-up (allocator cache, cuBLAS handles)
  const auto t0 = Clock::now();
  for (int i = 0; i < o.steps; ++i) step();
  const double t = seconds_since(t0);
  return {batch, 1e3 * t / o.steps, double(batch) * o.steps / t};
}

// FLOPs of the matmuls for `tokens` tokens (the LM head on the last token only).
double matmul_flops(const tessera::model::ModelConfig& c, int tokens) {
  const double h = c.hidden_size, kv = double(c.num_kv_heads) * c.head_dim,
               q = double(c.num_heads) * c.head_dim, f = c.intermediate_size;
  const double per_token = c.num_layers * (h * (q + 2 * kv) + q * h + 3 * h * f);
  return 2.0 * (per_token * tokens + h * c.vocab_size);
}

int run(const Options& o) {
  const Device device = parse_device(o.device);
  const auto alloc = tessera::ops::make_allocator(device);
  const double gbps = copy_gbps(alloc, o.copy_mib);
  const auto weights = tessera::model::open_weights(o.model);
  const auto t_load = Clock::now();
  const LlamaModel model(*weights, {}, nullptr, alloc);
  const double load_s = seconds_since(t_load);
  model.check_device_support();
  const double wbytes = double(model.weight_bytes());
  std::printf("model_bench: %s on %s; weights read per step %.3f GB; loaded in %.1f s\n",
              o.model.c_str(), device.str().c_str(), wbytes / 1e9, load_s);
  std::printf("copy d2d: %.1f GB/s (read + written)\n", gbps);
  std::ostringstream js;
  js << "{\"model\":\"" << o.model << "\",\"device\":\"" << device.str()
     << "\",\"weight_bytes\":" << wbytes << ",\"copy_gbps\":" << gbps << ",\"decode\":[";
  std::printf("%-6s %-7s %-10s %-12s %-14s %-10s\n", "batch", "graphs", "step ms", "tok/s",
              "weights GB/s", "of read bw");
  // "decode": the serving default (graphs where the model can take them), "decode_no_graphs": op by
  // op, for the launch overhead the graphs save.
  const bool graphs = o.graphs && model.graphable();
  std::ostringstream eager;
  for (size_t i = 0; i < o.batches.size(); ++i) {
    if (graphs) {
      const Decode e = decode(model, o.batches[i], o, false);
      std::printf("%-6d %-7s %-10.3f %-12.1f %-14.1f\n", e.batch, "off", e.step_ms, e.tok_s,
                  wbytes / (e.step_ms / 1e3) / 1e9);
      eager << (i ? "," : "") << "{\"batch\":" << e.batch << ",\"step_ms\":" << e.step_ms
            << ",\"tok_s\":" << e.tok_s << "}";
    }
    const Decode d = decode(model, o.batches[i], o, graphs);
    const double wgbps = wbytes / (d.step_ms / 1e3) / 1e9;
    // A copy reads half the bytes it moves: the fair ceiling for a pass that only reads weights.
    const double frac = wgbps / (gbps / 2);
    std::printf("%-6d %-7s %-10.3f %-12.1f %-14.1f %-10.2f\n", d.batch, graphs ? "on" : "off",
                d.step_ms, d.tok_s, wgbps, frac);
    js << (i ? "," : "") << "{\"batch\":" << d.batch << ",\"step_ms\":" << d.step_ms
       << ",\"tok_s\":" << d.tok_s << ",\"weight_gbps\":" << wgbps << ",\"of_read_bw\":" << frac
       << "}";
  }
  js << "],\"graphs\":" << (graphs ? "true" : "false") << ",\"decode_no_graphs\":[" << eager.str()
     << "]";
  if (o.prefill > 0) {
    const int block = 16;
    LocalRunner runner(model,
                       {.num_blocks = (o.prefill + block - 1) / block + 1, .block_size = block});
    std::vector<int32_t> ids(o.prefill);
    for (int i = 0; i < o.prefill; ++i) ids[i] = int32_t((5 + 97 * i) % model.config().vocab_size);
    double best = 1e30;
    for (int rep = 0; rep < 3; ++rep) {  // first rep warms up; each on a fresh sequence
      const int seq = runner.add_sequence();
      const LocalRunner::Chunk c{.seq = seq, .tokens = ids};
      const auto t0 = Clock::now();
      (void)tessera::to_host(runner.step({&c, 1}));
      if (rep > 0) best = std::min(best, seconds_since(t0));
      runner.free_sequence(seq);
    }
    const double tflops = matmul_flops(model.config(), o.prefill) / best / 1e12;
    std::printf("prefill %d tokens: %.2f ms, %.0f tok/s, %.2f TFLOP/s (matmuls)\n", o.prefill,
                best * 1e3, o.prefill / best, tflops);
    js << ",\"prefill\":{\"tokens\":" << o.prefill << ",\"ms\":" << best * 1e3
       << ",\"tok_s\":" << o.prefill / best << ",\"tflops\":" << tflops << "}";
  }
  js << "}\n";
  if (!o.json.empty()) std::ofstream(o.json) << js.str();
  return 0;
}

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s --model FILE [--device cuda:0] [--batches 1,8,64] [--steps N]\n"
               "          [--prompt N] [--prefill N (0: skip)] [--copy-mib N] [--json FILE]\n"
               "          [--graphs on|off (on: decode with decode graphs too)]\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage(argv[0]);
    const std::string v = argv[++i];
    if (a == "--model") {
      o.model = v;
    } else if (a == "--device") {
      o.device = v;
    } else if (a == "--json") {
      o.json = v;
    } else if (a == "--batches") {
      o.batches.clear();
      std::stringstream ss(v);
      for (std::string b; std::getline(ss, b, ',');) o.batches.push_back(std::atoi(b.c_str()));
    } else if (a == "--steps") {
      o.steps = std::atoi(v.c_str());
    } else if (a == "--prompt") {
      o.prompt = std::atoi(v.c_str());
    } else if (a == "--prefill") {
      o.prefill = std::atoi(v.c_str());
    } else if (a == "--copy-mib") {
      o.copy_mib = std::atoi(v.c_str());
    } else if (a == "--graphs") {
      if (v != "on" && v != "off") return usage(argv[0]);
      o.graphs = v == "on";
    } else {
      return usage(argv[0]);
    }
  }
  const bool bad_batch =
      std::any_of(o.batches.begin(), o.batches.end(), [](int b) { return b < 1; });
  if (o.model.empty() || o.steps < 1 || o.prompt < 1 || o.prefill < 0 || o.copy_mib < 1 ||
      o.batches.empty() || bad_batch)
    return usage(argv[0]);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "model_bench: %s\n", e.what());
    return 2;
  }
}
