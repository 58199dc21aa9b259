// The int8 path of cpu::matmul for Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 weights (int8_dot.h), and the
// process's choice between it and the fp32-activation kernels (ops.h: cpu::set_activations). The
// activation rows are quantized once per call, then every weight row is streamed once, still
// quantized, against groups of up to kInt8MaxRows activation rows while its chunk sits in L1.
// State: the activation mode is one process-wide setting, written at startup by the command that
// runs the model (like the op thread count, which the OpenMP runtime holds), read by every matmul.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "int8_dot.h"
#include "packed.h"
#include "parallel.h"
#include "simd.h"
#include "tessera/core/error.h"
#include "tessera/kernels/sample_layout.h"
#include "tessera/ops/ops.h"

namespace tessera::ops::cpu {
namespace {

// Weight bytes per pool chunk: big enough that each thread streams long contiguous runs (with 2
// threads on the AMD EPYC VM, batch-1 decode took ~5.0 ms per token with 48 KiB chunks against
// ~5.6 ms with 16 KiB, interleaved A/B runs; a thread's stream restarts the hardware prefetcher at
// every chunk it claims), small enough to balance threads and stay in L2 while the activation
// groups pass over it.
constexpr int64_t kChunkBytes = 48 << 10;
// Below this many weight bytes a call is too small to be worth waking the pool.
constexpr int64_t kParallelMinBytes = 32 << 10;
// Activation elements from which the quantization of the rows is split across threads.
constexpr int64_t kParallelQuantElems = 1 << 16;
// Outputs per row that MatmulTarget::fine_activations refines: the argmax and the tokens a sampler
// would pick, at the cost of reading 8 x kFineTop weight rows again per activation row (the full
// second pass cost the LM head ~20% of a batch-8 decode step at one thread, where it is
// compute-bound).
constexpr int kFineTop = 32;

std::atomic<Activations>& mode() {
  static std::atomic<Activations> m{Activations::kInt8};
  return m;
}

std::atomic<bool>& packing() {
  static std::atomic<bool> on{true};
  return on;
}

// The integer kernels in use: the widest the CPU runs unless set_int8_isa chose a narrower one.
std::atomic<detail::Int8Isa>& isa_in_use() {
  static std::atomic<detail::Int8Isa> isa{detail::best_int8_isa()};
  return isa;
}

}  // namespace

void set_activations(Activations a) { mode().store(a, std::memory_order_relaxed); }
Activations activations() { return mode().load(std::memory_order_relaxed); }

const char* activations_name(Activations a) { return a == Activations::kInt8 ? "int8" : "fp32"; }

Activations parse_activations(std::string_view s) {
  if (s == "int8") return Activations::kInt8;
  if (s == "fp32") return Activations::kF32;
  fail(ErrorCode::kInvalidArgument, "activations '", s, "': expected int8 or fp32");
}

void set_pack_weights(bool on) { packing().store(on, std::memory_order_relaxed); }
bool pack_weights() { return packing().load(std::memory_order_relaxed); }

DType pack_target(const Tensor& w) {
  const DType p = detail::packed_type(w.dtype());
  if (p == w.dtype() || !pack_weights() || activations() != Activations::kInt8 ||
      detail::int8_isa_in_use() == detail::Int8Isa::kScalar || w.ndim() != 2 ||
      !w.is_contiguous() || w.shape()[0] % kPackRows != 0 ||
      w.shape()[1] % dtype_info(w.dtype()).block_elems != 0)
    return w.dtype();
  return p;
}

void pack_weight_into(const Tensor& w, Tensor& out) {
  const DType p = pack_target(w);
  TESSERA_CHECK(out.dtype() == p && out.shape() == w.shape(), "pack_weight_into: ", out.str(),
                " for ", w.str());
  if (p == w.dtype()) {
    std::memcpy(out.data(), w.data(), w.nbytes());
    return;
  }
  detail::pack_rows(w.dtype(), static_cast<const uint8_t*>(w.data()), w.shape()[0], w.shape()[1],
                    static_cast<uint8_t*>(out.data()));
}

const char* int8_isa() { return detail::int8_isa_name(detail::int8_isa_in_use()); }

void set_int8_isa(std::string_view name) {
  using detail::Int8Isa;
  if (name == "auto") {
    isa_in_use().store(detail::best_int8_isa(), std::memory_order_relaxed);
    return;
  }
  for (Int8Isa i :
       {Int8Isa::kAmx, Int8Isa::kAvx512Vnni, Int8Isa::kAvxVnni, Int8Isa::kAvx2, Int8Isa::kScalar}) {
    if (name != detail::int8_isa_name(i)) continue;
    if (!detail::cpu_has(i))
      fail(ErrorCode::kUnsupported, "int8 kernels '", name, "': this CPU lacks them (it runs ",
           detail::int8_isa_name(detail::best_int8_isa()), ")");
    isa_in_use().store(i, std::memory_order_relaxed);
    return;
  }
  fail(ErrorCode::kInvalidArgument, "int8 kernels '", name,
       "': expected auto, amx, avx512vnni, avxvnni, avx2 or scalar");
}

namespace detail {

Int8Isa int8_isa_in_use() { return isa_in_use().load(std::memory_order_relaxed); }

bool use_int8(DType w) {
  if (activations() != Activations::kInt8) return false;
  return int8_weight_type(w) || is_packed(w) || (int8_kquant_type(w) && have_avx2());
}

void matmul_int8(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y, int64_t m,
                 int64_t n, int64_t k) {
  (void)n;
  const MatmulTarget t{&w, &bias, &y};
  matmul_int8_many(x, {&t, 1}, m, k);
}

namespace {

// The kernel of weight rows [n0, n1) for the activation rows a.x .. (a.m_count of them).
void run_rows(Int8Isa isa, bool packed, bool kquant, Int8Args& a, int64_t n0, int64_t n1) {
  if (packed)
    packed_rows(isa, a, n0, n1);
  else if (kquant)
    kquant_int8_rows_avx2(a, n0, n1);
  else
    int8_rows(isa, a, n0, n1);
}

int64_t next_above_scalar(const float* y, int64_t j, int64_t n, float thr) {
  for (; j < n; ++j)
    if (!(y[j] <= thr)) return j;
  return n;
}

// The first j in [j0, n) with y[j] > thr or y[j] NaN, or n.
__attribute__((target("avx2"))) int64_t next_above_avx2(const float* y, int64_t j, int64_t n,
                                                        float thr) {
  const __m256 t = _mm256_set1_ps(thr);
  for (; j + 8 <= n; j += 8) {
    const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(y + j), t, _CMP_NLE_UQ));
    if (mask) return j + __builtin_ctz(static_cast<unsigned>(mask));
  }
  return next_above_scalar(y, j, n, thr);
}

// The k best of y[0, n) in the sampler's ranking (kernels::sample::rank_key: larger first, ties to
// the lower index), as keys, in no order: a min-heap of k, and a vector scan for the next value
// that could rank above its top (most of a vocabulary never does). So the outputs refined are the
// ones a sampler ranks first.
void top_k(const float* y, int64_t n, int k, std::vector<uint64_t>& out) {
  namespace sample = kernels::sample;
  out.clear();
  const int64_t first = std::min<int64_t>(k, n);
  for (int64_t j = 0; j < first; ++j)
    out.push_back(sample::rank_key(y[j], static_cast<int32_t>(j)));
  std::make_heap(out.begin(), out.end(), std::greater<>());  // top: the lowest ranked
  if (out.empty()) return;
  const bool avx2 = have_avx2();
  for (int64_t j = first; j < n; ++j) {
    const float thr = y[sample::rank_id(out.front())];
    j = avx2 ? next_above_avx2(y, j, n, thr) : next_above_scalar(y, j, n, thr);
    if (j == n) break;
    const uint64_t key = sample::rank_key(y[j], static_cast<int32_t>(j));
    if (key <= out.front()) continue;  // (the NaN the scan lets through, ranked against the top)
    std::pop_heap(out.begin(), out.end(), std::greater<>());
    out.back() = key;
    std::push_heap(out.begin(), out.end(), std::greater<>());
  }
}

// How matmul_int8_many cuts its targets' weight rows into pool chunks (each chunk one target's
// rows); prefetch_weights cuts them the same way, to know which rows each thread reads first.
struct Plan {
  const MatmulTarget* t;
  int64_t n, rows_per_chunk, first_chunk;
  bool packed, kquant;
};
struct ChunkPlan {
  std::vector<Plan> plans;
  int64_t chunks = 0, bytes = 0;
};
// Weight rows per chunk of w. Packed weights come in groups of kPackRows rows, and the AVX-512 /
// AMX kernels take two groups at a time (a chunk's odd last group falls back to the 256-bit
// kernel: with 17 groups per chunk, 1/17 of a prefill's rows took 13% of its matmul time), so
// chunks hold pairs.
int64_t rows_per_chunk(const Tensor& w) {
  const auto row_bytes = static_cast<int64_t>(w.row_bytes());
  const int64_t unit = is_packed(w.dtype()) ? 2 * kPackRows : 1;
  return std::max<int64_t>(is_packed(w.dtype()) ? unit : 4,
                           kChunkBytes / std::max<int64_t>(1, row_bytes) / unit * unit);
}

ChunkPlan chunk_plan(std::span<const MatmulTarget> targets) {
  ChunkPlan cp;
  for (const MatmulTarget& t : targets) {
    const Tensor& w = *t.w;
    const int64_t rpc = rows_per_chunk(w), n = w.dim(0);
    cp.plans.push_back({&t, n, rpc, cp.chunks, is_packed(w.dtype()), int8_kquant_type(w.dtype())});
    cp.chunks += (n + rpc - 1) / rpc;
    cp.bytes += n * static_cast<int64_t>(w.row_bytes());
  }
  return cp;
}

// The plan of chunk c (a handful of targets: a scan).
const Plan& plan_of(const std::vector<Plan>& plans, int64_t c) {
  size_t i = plans.size() - 1;
  while (plans[i].first_chunk > c) --i;
  return plans[i];
}

}  // namespace

// The activation rows are quantized once for every target; then one parallel pass over the
// chunks of all targets' weight rows (each chunk one target's rows), so q, k and v (or gate and
// up) cost one pool dispatch, not three. Each output is computed exactly as by a call of its own.
// With fine_activations (every target alike) each row's rounding residual is quantized too, and
// after the pass each row's kFineTop largest outputs get the residual's product added: only their
// weight rows (their packed groups) are read again, against one activation row.
void matmul_int8_many(const Tensor& x, std::span<const MatmulTarget> targets, int64_t m, int64_t k,
                      const ActRows& act_rows, float* add_to) {
  const int64_t nb = k / 32;
  const bool fine = targets[0].fine_activations;
  for (const MatmulTarget& t : targets)
    TESSERA_CHECK(t.fine_activations == fine, "matmul_int8_many: mixed fine_activations");
  TESSERA_CHECK(!add_to || (targets.size() == 1 && !fine),
                "matmul_int8_many: add_to takes one target without fine_activations");
  const int64_t rows = fine ? 2 * m : m;  // rows m..2m-1: the residuals
  // One buffer per calling thread, reused: no allocation per call once it has grown. The lambdas
  // below get the pointer, since on a pool thread the name would mean that thread's own buffer.
  thread_local std::vector<ActBlock> act;
  if (act.size() < static_cast<size_t>(rows * nb)) act.resize(static_cast<size_t>(rows * nb));
  ActBlock* ap = act.data();
  const float* xp = x.data_as<float>();
  const auto blocks = [&](int64_t r) { return std::span<ActBlock>(ap + r * nb, nb); };
  parallel_for(
      m,
      [&](int64_t r) {
        const float* src = xp + r * k;
        if (act_rows.kind != ActRows::Kind::kPlain) {
          thread_local std::vector<float> row;  // per thread: rows may run on the pool
          if (row.size() < static_cast<size_t>(k)) row.resize(static_cast<size_t>(k));
          if (act_rows.kind == ActRows::Kind::kRmsNorm)
            rms_norm_row_avx2(src, act_rows.norm, act_rows.eps, k, row.data());
          else
            silu_mul_avx2(src, act_rows.up + r * k, row.data(), k);
          src = row.data();
        }
        const std::span<const float> xr(src, static_cast<size_t>(k));
        quantize_act(xr, blocks(r));
        if (fine) quantize_act_residual(xr, blocks(r), blocks(m + r));
      },
      m * k >= kParallelQuantElems);

  const Int8Isa isa = int8_isa_in_use();
  const ChunkPlan cp = chunk_plan(targets);
  const std::vector<Plan>& plans = cp.plans;
  const int64_t chunks = cp.chunks;
  const auto args = [&](const Plan& p, int64_t m0, int64_t count, float* y) {
    const Tensor& w = *p.t->w;
    Int8Args a;
    a.wtype = w.dtype();
    a.w = static_cast<const uint8_t*>(w.data());
    a.w_row_bytes = w.row_bytes();
    a.x = ap + m0 * nb;
    a.m_count = static_cast<int>(count);
    a.k = k;
    a.y = y;
    a.ldy = p.n;
    return a;
  };
  parallel_for(
      chunks,
      [&](int64_t c) {
        const Plan& p = plan_of(plans, c);
        const int64_t n0 = (c - p.first_chunk) * p.rows_per_chunk;
        const int64_t n1 = std::min(p.n, n0 + p.rows_per_chunk);
        float* yp = p.t->y->data_as<float>();
        const float* bias = p.t->bias->defined() ? p.t->bias->data_as<float>() : nullptr;
        // Packed kernels take every activation row in one call (they group the rows themselves:
        // the AMX one 16 at a time); the row-major ones at most kInt8MaxRows.
        const int64_t m_step = p.packed ? m : kInt8MaxRows;
        for (int64_t m0 = 0; m0 < m; m0 += m_step) {
          Int8Args a = args(p, m0, std::min<int64_t>(m_step, m - m0), yp + m0 * p.n);
          a.bias = bias;
          run_rows(isa, p.packed, p.kquant, a, n0, n1);
        }
        if (add_to)  // this chunk's outputs, still in cache, into the residual
          for (int64_t r = 0; r < m; ++r)
            add_avx2(add_to + r * p.n + n0, yp + r * p.n + n0, n1 - n0);
      },
      cp.bytes >= kParallelMinBytes);
  if (!fine) return;

  // The second digit for each (target, row)'s largest outputs. The set depends on the row's own
  // one-digit outputs only, so a row's result does not depend on the rows beside it.
  parallel_for(
      static_cast<int64_t>(plans.size()) * m,
      [&](int64_t item) {
        const Plan& p = plans[static_cast<size_t>(item / m)];
        const int64_t r = item % m;
        float* y = p.t->y->data_as<float>() + r * p.n;
        thread_local std::vector<uint64_t> top;
        thread_local std::vector<float> lo;  // the residual's products, by weight row
        if (lo.size() < static_cast<size_t>(p.n)) lo.resize(static_cast<size_t>(p.n));
        top_k(y, p.n, kFineTop, top);
        thread_local std::vector<int64_t> rows_of_top;  // ascending: neighbours share a group
        rows_of_top.clear();
        for (const uint64_t key : top) rows_of_top.push_back(kernels::sample::rank_id(key));
        std::sort(rows_of_top.begin(), rows_of_top.end());
        const int64_t group = p.packed ? kPackRows : 1;
        Int8Args a = args(p, m + r, 1, lo.data());
        int64_t done = -1;  // the group computed last (the sorted candidates share groups)
        for (const int64_t j : rows_of_top) {
          const int64_t g0 = j / group * group;
          if (g0 != done) run_rows(isa, p.packed, p.kquant, a, g0, std::min(p.n, g0 + group));
          done = g0;
          y[j] += lo[static_cast<size_t>(j)];
        }
      },
      m * static_cast<int64_t>(plans.size()) > 1);
}

PrefetchRanges prefetch_ranges(std::span<const MatmulTarget> targets, int threads) {
  // Called four times per layer on the caller's serial path: no allocation (the chunks are walked
  // target by target with chunk_plan's cut, not planned into a vector).
  PrefetchRanges out;
  if (threads < 2 || targets.empty()) return out;
  int64_t chunks = 0, bytes = 0;
  for (const MatmulTarget& t : targets) {
    if (!t.w || !t.w->defined() || !use_int8(t.w->dtype()) || t.w->ndim() != 2 ||
        !t.w->storage()->host_addressable())
      return out;
    const int64_t rpc = rows_per_chunk(*t.w);
    chunks += (t.w->dim(0) + rpc - 1) / rpc;
    bytes += t.w->dim(0) * static_cast<int64_t>(t.w->row_bytes());
  }
  if (bytes < kParallelMinBytes) return out;  // not a parallel pass
  const int segments = static_cast<int>(std::min<int64_t>(threads, chunks));
  for (int s = 1; s < segments && out.n < kMaxPrefetchRanges; ++s) {
    size_t left = kPrefetchHintBytes;
    int64_t c = segment_begin(s, chunks, segments);
    const int64_t end = segment_begin(s + 1, chunks, segments);
    int64_t first = 0;  // the first chunk of the target being walked
    for (const MatmulTarget& t : targets) {
      const Tensor& w = *t.w;
      const int64_t rpc = rows_per_chunk(w), n = w.dim(0);
      const int64_t last = first + (n + rpc - 1) / rpc;  // one past this target's chunks
      for (; c < std::min(end, last) && left > 0 && out.n < kMaxPrefetchRanges; ++c) {
        const int64_t n0 = (c - first) * rpc, n1 = std::min(n, n0 + rpc);
        const size_t b = std::min(left, static_cast<size_t>(n1 - n0) * w.row_bytes());
        const uint8_t* at = w.row_ptr(n0);
        PrefetchRange* back = out.n > 0 ? &out.r[out.n - 1] : nullptr;
        // Consecutive chunks of one weight are one contiguous run.
        if (back && back->worker == s - 1 &&
            static_cast<const uint8_t*>(back->p) + back->bytes == at)
          back->bytes += b;
        else
          out.r[out.n++] = {s - 1, at, b};
        left -= b;
      }
      first = last;
    }
  }
  return out;
}
}  // namespace detail

void prefetch_weights(std::span<const MatmulTarget> targets) {
  const detail::PrefetchRanges ranges = detail::prefetch_ranges(targets, detail::max_threads());
  detail::hint_prefetch(ranges.span());
}

}  // namespace tessera::ops::cpu
