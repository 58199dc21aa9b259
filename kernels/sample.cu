// The sampling op on the GPU (ops/sample.h; launcher in sample.h): one CTA per logit row does the
// whole row, so only token ids and logprobs leave the device. Where the host ranks by sorting,
// this kernel finds the kept set by bisecting the 64-bit rank key (sample_layout.h): the k-th
// best key by counts, the top-p cut by masses, min-p by a per-token test, each a pass of block
// reductions over the row (the row, at most a few hundred KB, stays in L2 across passes). The
// draw is an inverse CDF in token-id order: per-thread contiguous chunks, a block scan of their
// masses, one thread walks its chunk. Sums are in double; they differ from the host's serial
// order only by rounding, so a token can differ from the host's only where u * mass lands within
// rounding of a boundary (the parity suite allows for it).
#include <cfloat>
#include <climits>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "tessera/kernels/sample.h"
#include "tessera/kernels/sample_layout.h"

namespace tessera::kernels {
namespace {

namespace lay = sample;
constexpr int kThreads = 512;

struct RowState {
  const int32_t* words;
  lay::Row row;
  const float* l;
  int vocab;
};

// One block-wide reduction at a time: every helper ends with a barrier, so the shared storage
// can be reused by the next call.
union Temp {
  typename cub::BlockReduce<unsigned long long, kThreads>::TempStorage u64;
  typename cub::BlockReduce<double, kThreads>::TempStorage f64;
  typename cub::BlockReduce<int, kThreads>::TempStorage i32;
  typename cub::BlockScan<double, kThreads>::TempStorage scan;
};

struct MaxOp {
  __device__ unsigned long long operator()(unsigned long long a, unsigned long long b) const {
    return a > b ? a : b;
  }
};
struct SumOp {
  template <class T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};

// op over the block's v, returned to every thread. The storage is the union's (sized for every
// type); the trailing barrier lets the next reduction reuse it.
template <class T, class Op>
__device__ T block_all(Temp& t, T v, Op op) {
  using Reduce = cub::BlockReduce<T, kThreads>;
  __shared__ T out;
  const T r = Reduce(reinterpret_cast<typename Reduce::TempStorage&>(t)).Reduce(v, op);
  if (threadIdx.x == 0) out = r;
  __syncthreads();
  const T o = out;
  __syncthreads();
  return o;
}
__device__ unsigned long long block_max(Temp& t, unsigned long long v) {
  return block_all(t, v, MaxOp());
}
__device__ double block_sum(Temp& t, double v) { return block_all(t, v, SumOp()); }
__device__ int block_count(Temp& t, int v) { return block_all(t, v, SumOp()); }

// Allowed tokens ranked at or above `floor`: how many, and their weight.
__device__ int count_at_least(Temp& t, const RowState& s, unsigned long long floor) {
  int c = 0;
  for (int i = threadIdx.x; i < s.vocab; i += kThreads)
    c += lay::allowed(s.words, s.row, i) && lay::rank_key(s.l[i], i) >= floor;
  return block_count(t, c);
}
__device__ double mass_at_least(Temp& t, const RowState& s, unsigned long long floor, float mx) {
  double m = 0.0;
  for (int i = threadIdx.x; i < s.vocab; i += kThreads)
    if (lay::allowed(s.words, s.row, i) && lay::rank_key(s.l[i], i) >= floor)
      m += lay::weight(s.l[i], mx, s.row.temperature);
  return block_sum(t, m);
}

// The largest key K in [lo, hi) with pred(K), given pred(lo) and not pred(hi); pred is monotone
// (true below the cut). Every thread runs the same loop (pred reduces over the block).
template <class Pred>
__device__ unsigned long long bisect(unsigned long long lo, unsigned long long hi, Pred pred) {
  while (hi - lo > 1) {
    const unsigned long long mid = lo + (hi - lo) / 2;
    if (pred(mid))
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

__device__ int32_t draw(Temp& t, const RowState& s, unsigned long long best) {
  const lay::Row& row = s.row;
  const float mx = s.l[lay::rank_id(best)];
  const int n = count_at_least(t, s, 0);
  const int k = row.top_k > 0 && row.top_k < n ? row.top_k : n;
  unsigned long long floor = 0;
  if (k < n)
    floor = bisect(0, best + 1, [&](unsigned long long K) { return count_at_least(t, s, K) >= k; });
  const double total = mass_at_least(t, s, floor, mx);
  if (row.top_p < 1.0f)
    floor = bisect(floor, best + 1, [&](unsigned long long K) {
      return mass_at_least(t, s, K, mx) / total >= static_cast<double>(row.top_p);
    });
  const double best_w = lay::weight(mx, mx, row.temperature);
  const auto kept = [&](int i) {
    if (!lay::allowed(s.words, row, i)) return false;
    const unsigned long long key = lay::rank_key(s.l[i], i);
    if (key < floor) return false;
    return row.min_p == 0.0f || key == best ||
           lay::min_p_keeps(lay::weight(s.l[i], mx, row.temperature), best_w, total, row.min_p);
  };
  // Contiguous chunks in id order; a block scan of their masses places u * mass in one of them.
  const int chunk = (s.vocab + kThreads - 1) / kThreads;
  const int begin = min(s.vocab, static_cast<int>(threadIdx.x) * chunk);
  const int end = min(s.vocab, begin + chunk);
  double mine = 0.0;
  int last = -1;
  for (int i = begin; i < end; ++i)
    if (kept(i)) {
      mine += lay::weight(s.l[i], mx, row.temperature);
      last = i;
    }
  double before = 0.0;
  cub::BlockScan<double, kThreads>(t.scan).ExclusiveSum(mine, before);
  __syncthreads();
  const double mass = block_sum(t, mine);
  const int last_kept =
      static_cast<int>(block_max(t, static_cast<unsigned long long>(last + 1))) - 1;
  __shared__ int chosen;
  if (threadIdx.x == 0) chosen = INT_MAX;
  __syncthreads();
  double r = row.u * mass;
  if (mine > 0.0 && r >= before && r < before + mine) {
    r -= before;
    for (int i = begin; i < end; ++i)
      if (kept(i)) {
        r -= lay::weight(s.l[i], mx, row.temperature);
        if (r < 0) {
          atomicMin(&chosen, i);
          break;
        }
      }
  }
  __syncthreads();
  const int c = chosen;
  __syncthreads();
  return c == INT_MAX ? last_kept : c;  // rounding past the end: the last kept token
}

__global__ void __launch_bounds__(kThreads)
    sample_kernel(float* logits, const int32_t* words, int32_t* tokens, float* logprobs, int vocab,
                  int cols) {
  __shared__ Temp temp;
  const int r = blockIdx.x;
  RowState s{words, lay::read_row(words, r), logits + static_cast<int64_t>(r) * vocab, vocab};
  float* l = logits + static_cast<int64_t>(r) * vocab;
  for (int i = threadIdx.x; i < vocab; i += kThreads)
    if (!lay::allowed(words, s.row, i)) l[i] = -INFINITY;
  __syncthreads();
  for (int e = threadIdx.x; e < s.row.edit_count; e += kThreads) {
    const int32_t* ed = words + s.row.edit_begin + e * lay::kEditWords;
    l[ed[0]] = lay::edited(l[ed[0]], ed, s.row.repetition_penalty);
  }
  __syncthreads();
  unsigned long long best = 0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    const unsigned long long key = lay::rank_key(l[i], i);
    best = key > best ? key : best;
  }
  best = block_max(temp, best);
  const int32_t chosen = s.row.temperature == 0.0f ? lay::rank_id(best) : draw(temp, s, best);
  int32_t* tok = tokens + static_cast<int64_t>(r) * cols;
  float* lp = logprobs + static_cast<int64_t>(r) * cols;
  for (int j = threadIdx.x; j < cols; j += kThreads) {
    tok[j] = -1;
    lp[j] = 0.0f;
  }
  __syncthreads();
  if (threadIdx.x == 0) tok[0] = chosen;
  if (!s.row.logprobs && s.row.top_logprobs == 0) return;
  const float mx = l[lay::rank_id(best)];
  double sum = 0.0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) sum += exp(static_cast<double>(l[i] - mx));
  const double lse = static_cast<double>(mx) + log(block_sum(temp, sum));
  if (threadIdx.x == 0) lp[0] = static_cast<float>(l[chosen] - lse);
  unsigned long long prev = ULLONG_MAX;
  for (int j = 0; j < s.row.top_logprobs; ++j) {
    unsigned long long next = 0;
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      const unsigned long long key = lay::rank_key(l[i], i);
      if (key < prev && key > next) next = key;
    }
    next = block_max(temp, next);
    if (next == 0) break;  // fewer tokens than alternatives asked for
    if (threadIdx.x == 0) {
      tok[1 + j] = lay::rank_id(next);
      lp[1 + j] = static_cast<float>(l[lay::rank_id(next)] - lse);
    }
    prev = next;
  }
}

}  // namespace

cudaError_t launch_sample(float* logits, const int32_t* words, int32_t* tokens, float* logprobs,
                          int rows, int vocab, int cols, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  sample_kernel<<<rows, kThreads, 0, stream>>>(logits, words, tokens, logprobs, vocab, cols);
  return cudaGetLastError();
}

}  // namespace tessera::kernels
