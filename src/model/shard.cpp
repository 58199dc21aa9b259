#include "tessera/model/shard.h"

#include <sys/mman.h>
#include <unistd.h>

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

size_t resident_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;  // kB
  return 0;
}

}  // namespace tessera::model
