#include "tessera/model/shard.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <numeric>
#include <string>

#include "tessera/core/error.h"

namespace tessera::model {

TpLayout tp_layout(const ModelConfig& c, int r, int T) {
  if (T < 1 || r < 0 || r >= T) fail(ErrorCode::kInvalidArgument, "tp rank ", r, " of ", T);
  auto divisors = [](int n) {
    std::string s;
    for (int d = 1; d <= n; ++d)
      if (n % d == 0) s += (s.empty() ? "" : ", ") + std::to_string(d);
    return s;
  };
  if (c.num_heads % T != 0)
    fail(ErrorCode::kInvalidArgument, "parallel.tensor = ", T, " does not divide the ", c.num_heads,
         " attention heads of ", c.name.empty() ? c.architecture : c.name,
         " (valid: ", divisors(c.num_heads), ")");
  if (c.num_kv_heads % T != 0 && T % c.num_kv_heads != 0)
    fail(ErrorCode::kInvalidArgument, "parallel.tensor = ", T,
         " neither divides nor is a multiple of the ", c.num_kv_heads, " KV heads");
  if (c.intermediate_size % T != 0)
    fail(ErrorCode::kInvalidArgument, "parallel.tensor = ", T,
         " does not divide the intermediate size ", c.intermediate_size);
  if (c.is_moe() &&
      (c.expert_intermediate_size % T != 0 || c.shared_expert_intermediate_size % T != 0))
    fail(ErrorCode::kInvalidArgument, "parallel.tensor = ", T,
         " does not divide the experts' width ", c.expert_intermediate_size,
         c.shared_expert_intermediate_size
             ? " and the shared expert's " + std::to_string(c.shared_expert_intermediate_size)
             : std::string());
  TpLayout t;
  t.heads = c.num_heads / T;
  t.first_head = r * t.heads;
  if (c.num_kv_heads % T == 0) {
    t.kv_heads = c.num_kv_heads / T;
    t.first_kv_head = r * t.kv_heads;
  } else {  // T > num_kv_heads: each KV head is replicated on T / num_kv_heads ranks
    t.kv_heads = 1;
    t.first_kv_head = r / (T / c.num_kv_heads);
  }
  t.ffn = c.intermediate_size / T;
  t.first_ffn = r * t.ffn;
  t.vocab_per_rank = (c.vocab_size + T - 1) / T;
  t.first_vocab = std::min<int64_t>(r * t.vocab_per_rank, c.vocab_size);
  t.vocab = std::min<int64_t>(t.vocab_per_rank, c.vocab_size - t.first_vocab);
  return t;
}

std::vector<std::pair<int, int>> stage_ranges(int L, int P, const std::vector<int>& split) {
  if (P < 1 || P > L)
    fail(ErrorCode::kInvalidArgument, "parallel.pipeline = ", P, " stages for ", L,
         " layers (valid: 1..", L, ")");
  std::vector<int> counts = split;
  if (counts.empty()) {
    for (int s = 0; s < P; ++s) counts.push_back(L / P + (s < L % P ? 1 : 0));
  }
  if (static_cast<int>(counts.size()) != P)
    fail(ErrorCode::kInvalidArgument, "parallel.layer_split has ", counts.size(), " entries for ",
         P, " stages");
  int first = 0;
  std::vector<std::pair<int, int>> out;
  for (int n : counts) {
    if (n < 1)
      fail(ErrorCode::kInvalidArgument, "parallel.layer_split: a stage with ", n, " layers");
    out.emplace_back(first, n);
    first += n;
  }
  if (first != L)
    fail(ErrorCode::kInvalidArgument, "parallel.layer_split sums to ", first,
         " layers, the model has ", L);
  return out;
}

std::vector<int> balanced_split(const WeightSource& w, int P) {
  const ModelConfig& c = w.config();
  const int L = c.num_layers;
  stage_ranges(L, P, {});  // validates P
  std::vector<double> layer(static_cast<size_t>(L), 0.0);
  for (int l = 0; l < L; ++l)
    for (const char* t : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                          "ffn_down", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps",
                          "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"}) {
      const std::string name = "blk." + std::to_string(l) + "." + t + ".weight";
      if (w.has(name)) layer[static_cast<size_t>(l)] += static_cast<double>(w.get(name).nbytes());
    }
  const std::string head = c.tied_embeddings ? "token_embd.weight" : "output.weight";
  const double head_bytes = w.has(head) ? static_cast<double>(w.get(head).nbytes()) : 0.0;
  // best[s][i]: the smallest possible largest stage when the first i layers form s stages.
  std::vector<double> prefix(static_cast<size_t>(L) + 1, 0.0);
  for (int l = 0; l < L; ++l)
    prefix[static_cast<size_t>(l) + 1] =
        prefix[static_cast<size_t>(l)] + layer[static_cast<size_t>(l)];
  const double inf = 1e300;
  std::vector<std::vector<double>> best(static_cast<size_t>(P) + 1,
                                        std::vector<double>(static_cast<size_t>(L) + 1, inf));
  std::vector<std::vector<int>> cut(best.size(), std::vector<int>(static_cast<size_t>(L) + 1, 0));
  best[0][0] = 0.0;
  for (int s = 1; s <= P; ++s)
    for (int i = s; i <= L - (P - s); ++i)
      for (int j = s - 1; j < i; ++j) {
        const double stage = prefix[static_cast<size_t>(i)] - prefix[static_cast<size_t>(j)] +
                             (s == P ? head_bytes : 0.0);
        const double v = std::max(best[static_cast<size_t>(s) - 1][static_cast<size_t>(j)], stage);
        if (v < best[static_cast<size_t>(s)][static_cast<size_t>(i)]) {
          best[static_cast<size_t>(s)][static_cast<size_t>(i)] = v;
          cut[static_cast<size_t>(s)][static_cast<size_t>(i)] = j;
        }
      }
  std::vector<int> split(static_cast<size_t>(P));
  for (int s = P, i = L; s > 0; --s) {
    const int j = cut[static_cast<size_t>(s)][static_cast<size_t>(i)];
    split[static_cast<size_t>(s) - 1] = i - j;
    i = j;
  }
  return split;
}

Tensor shard_rows(const Tensor& w, int64_t begin, int64_t end) { return w.slice(begin, end); }

Tensor shard_cols(const Tensor& w, int64_t begin, int64_t end, const std::string& name) {
  if (w.ndim() != 2 || !w.is_contiguous())
    fail(ErrorCode::kInvalidArgument, "shard_cols: ", name, " is ", w.str(),
         ", expected contiguous 2-D");
  const auto& info = dtype_info(w.dtype());
  const int64_t rows = w.dim(0), cols = w.dim(1);
  if (begin < 0 || end > cols || begin >= end)
    fail(ErrorCode::kInvalidArgument, "shard_cols: columns [", begin, ", ", end, ") of ", name, " ",
         w.str());
  if (begin % info.block_elems != 0 || end % info.block_elems != 0)
    fail(ErrorCode::kUnsupported, "cannot split ", name, " (", info.name, ", blocks of ",
         info.block_elems, ") at columns ", begin, "..", end,
         ": choose a tensor-parallel size that keeps each rank's share a "
         "multiple of ",
         info.block_elems);
  Tensor out = Tensor::empty({rows, end - begin}, w.dtype());
  const size_t off = row_bytes(w.dtype(), begin), n = row_bytes(w.dtype(), end - begin);
  const size_t src_row = w.row_bytes(), dst_row = out.row_bytes();
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(static_cast<uint8_t*>(out.data()) + r * dst_row, w.row_ptr(r) + off, n);
  if (!w.storage()->owned()) {
    // Drop the source pages from this process: a mapped, read-only file re-reads them on demand.
    const long page = sysconf(_SC_PAGESIZE);
    const auto lo = reinterpret_cast<uintptr_t>(w.data());
    const uintptr_t start = (lo + page - 1) / page * page,
                    stop = (lo + rows * src_row) / page * page;
    if (stop > start) madvise(reinterpret_cast<void*>(start), stop - start, MADV_DONTNEED);
  }
  return out;
}

Tensor shard_expert_rows(const Tensor& w, int64_t begin, int64_t end, const std::string& name) {
  if (w.ndim() != 3 || !w.is_contiguous())
    fail(ErrorCode::kInvalidArgument, "shard_expert_rows: ", name, " is ", w.str(),
         ", expected contiguous [experts, rows, cols]");
  const int64_t E = w.dim(0), R = w.dim(1), C = w.dim(2);
  if (begin < 0 || end > R || begin >= end)
    fail(ErrorCode::kInvalidArgument, "shard_expert_rows: rows [", begin, ", ", end, ") of ", name,
         " ", w.str());
  Tensor out = Tensor::empty({E, end - begin, C}, w.dtype());
  const size_t rb = row_bytes(w.dtype(), C), n = rb * static_cast<size_t>(end - begin);
  const auto* src = static_cast<const uint8_t*>(w.data());
  for (int64_t e = 0; e < E; ++e)
    std::memcpy(static_cast<uint8_t*>(out.data()) + static_cast<size_t>(e) * n,
                src + (static_cast<size_t>(e * R + begin)) * rb, n);
  return out;
}

Tensor shard_expert_cols(const Tensor& w, int64_t begin, int64_t end, const std::string& name) {
  if (w.ndim() != 3 || !w.is_contiguous())
    fail(ErrorCode::kInvalidArgument, "shard_expert_cols: ", name, " is ", w.str(),
         ", expected contiguous [experts, rows, cols]");
  const int64_t E = w.dim(0), R = w.dim(1);
  // Every row of every expert loses the same columns: one 2-D column split over E * R rows.
  return shard_cols(w.view({E * R, w.dim(2)}), begin, end, name).view({E, R, end - begin});
}

size_t resident_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;  // kB
  return 0;
}

std::pair<int, int> expert_range(int num_experts, int ep_rank, int ep_size) {
  if (ep_size < 1 || ep_rank < 0 || ep_rank >= ep_size || num_experts % ep_size != 0)
    fail(ErrorCode::kInvalidArgument, "expert parallelism: ", ep_size, " ranks (rank ", ep_rank,
         ") cannot split ", num_experts, " experts evenly (valid expert sizes divide ", num_experts,
         ")");
  const int n = num_experts / ep_size;
  return {ep_rank * n, n};
}

}  // namespace tessera::model
