// ops::cpu::paged_attention: flash-style online softmax over the paged cache. A work item is
// (sequence, kv head, chunk of query rows); the query heads that share the kv head (GQA group)
// are handled together so every K/V row fetched through the block table is widened once for up to
// three heads of the group. Keys are visited in chunks of kKeyChunk: scores for the chunk, then one
// rescale of the running max/sum/accumulator, then the value accumulation (attention_avx2.cpp:
// up to 3 heads x 4 keys per pass, the accumulators in registers across the chunk). An
// F16/BF16 cache's rows are widened to fp32 in registers by those loops (head sizes that are a
// multiple of 8) or converted to fp32 scratch first (other sizes, kv_load_row_avx2): either way
// the arithmetic is the F32 cache's on the same values. A decode row with a long context is cut
// into parts of kSplitKeys keys, merged after (merge_parts).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../check.h"
#include "../kv_rows.h"
#include "parallel.h"
#include "simd.h"

namespace tessera::ops::cpu {
namespace {

constexpr int64_t kKeyChunk = 64;
constexpr int64_t kQueryChunk = 16;
// Query-key products (times heads x head size) from which a call is split across threads: at
// 2^14 (a context of ~28 for 9 heads of 64) one decode step's attention took ~10 us on one core
// of the AMD EPYC VM, several pool dispatches' worth.
constexpr int64_t kParallelMinWork = 1 << 14;
// A decode row (a sequence with one query row) with a longer context is split into parts of this
// many keys, each an item of its own, merged after (flash-decoding): at batch 1 a step otherwise
// has one item per kv head (or per query head), too few for the threads at long contexts, where
// attention is most of the step. The parts depend on the context only, never on the thread count,
// so results are the same for every thread count.
constexpr int64_t kSplitKeys = 256;

struct WorkItem {
  int64_t seq;
  int kv_head;
  int64_t j0, j1;  // query rows [j0, j1) of the sequence
  int g0, g1;      // query heads [g0, g1) of the kv head's group
  // A part of a split decode row: keys [k0, k1), its unnormalised result written to the partial
  // records instead of `out`. k1 < 0: the whole row, into `out`.
  int64_t k0 = 0, k1 = -1;
};

struct Ctx {
  const Tensor* q;
  const char* kc;
  const char* vc;
  DType kv_type;
  size_t head_bytes;  // one head's row of one slot
  float* out;
  float* partial;  // per item: group x (max, sum, acc[hd]) for the parts of split rows
  const ops::detail::HostBatch* batch;
  const AttentionParams* p;
};

void run_item(const Ctx& c, const WorkItem& it, int64_t index, std::vector<float>& scratch) {
  const AttentionParams& p = *c.p;
  const int hd = p.head_dim, group = it.g1 - it.g0;
  const int64_t q0 = c.batch->query_start[it.seq];
  const int64_t q_len = c.batch->query_start[it.seq + 1] - q0;
  const int64_t ctx = c.batch->context_lens[it.seq];
  const int32_t* table = c.batch->block_tables.data() + it.seq * c.batch->max_blocks_per_seq;
  // Head sizes that fill whole registers take the batched loops of attention_avx2.cpp, which read
  // F16/BF16 rows in place (widened in registers); other sizes convert a chunk's rows first.
  const bool vec8 = hd % 8 == 0;
  // scratch: scores [group][kKeyChunk], acc [group][hd], max [group], sum [group]
  // then, for an F16/BF16 cache read by the scalar loops, the chunk's K and V rows as fp32
  // [kKeyChunk][hd] each
  const bool convert = c.kv_type != DType::kF32 && !vec8;
  scratch.resize(
      static_cast<size_t>(group * (kKeyChunk + hd + 2) + (convert ? 2 * kKeyChunk * hd : 0)));
  float* scores = scratch.data();
  float* acc = scores + group * kKeyChunk;
  float* mx = acc + group * hd;
  float* sum = mx + group;
  float* kbuf = sum + group;
  float* vbuf = kbuf + kKeyChunk * hd;
  const void* kvk[kKeyChunk];
  const void* kvv[kKeyChunk];
  for (int64_t j = it.j0; j < it.j1; ++j) {
    const int64_t pos = ctx - q_len + j;
    const float* qrow = c.q->data_as<float>() + (q0 + j) * p.num_heads * hd;
    const int h0 = it.kv_head * (p.num_heads / p.num_kv_heads) + it.g0;
    std::fill(acc, acc + group * hd, 0.0f);
    std::fill(mx, mx + group, -INFINITY);
    std::fill(sum, sum + group, 0.0f);
    const int64_t kbeg = it.k1 >= 0 ? it.k0 : 0, kend = it.k1 >= 0 ? it.k1 : pos + 1;
    for (int64_t t0 = kbeg; t0 < kend; t0 += kKeyChunk) {
      const int64_t n = std::min(kKeyChunk, kend - t0);
      // The key's block and offset advance with it: no division per key.
      int64_t blk = t0 / p.block_size, in_blk = t0 % p.block_size;
      for (int64_t i = 0; i < n; ++i, ++in_blk) {
        if (in_blk == p.block_size) {
          ++blk;
          in_blk = 0;
        }
        const int64_t slot = int64_t{table[blk]} * p.block_size + in_blk;
        const auto at = static_cast<size_t>(slot * p.num_kv_heads + it.kv_head) * c.head_bytes;
        if (convert) {
          detail::kv_load_row_avx2(c.kv_type, c.kc + at, kbuf + i * hd, hd);
          detail::kv_load_row_avx2(c.kv_type, c.vc + at, vbuf + i * hd, hd);
          kvk[i] = kbuf + i * hd;
          kvv[i] = vbuf + i * hd;
        } else {
          kvk[i] = c.kc + at;
          kvv[i] = c.vc + at;
        }
      }
      // The chunk's value rows in the cache, requested now to arrive while the scores are computed
      // (the value loop then reads them in passes of a few registers of lanes per row). Converted
      // rows are already in scratch.
      if (vec8)
        for (int64_t i = 0; i < n; ++i)
          for (size_t b = 0; b < c.head_bytes; b += 64)
            _mm_prefetch(static_cast<const char*>(kvv[i]) + b, _MM_HINT_T0);
      if (vec8) {
        detail::dot_keys_avx2(c.kv_type, qrow + h0 * hd, group, kvk, n, hd, p.scale, scores,
                              kKeyChunk);
      } else {
        for (int g = 0; g < group; ++g)
          for (int64_t i = 0; i < n; ++i)
            scores[g * kKeyChunk + i] =
                detail::dot_f32_avx2(qrow + (h0 + g) * hd, static_cast<const float*>(kvk[i]), hd) *
                p.scale;
      }
      for (int g = 0; g < group; ++g) {
        float* sc = scores + g * kKeyChunk;
        const float cmax = detail::max_avx2(sc, n, mx[g]);
        if (cmax > mx[g]) {  // rescale what was accumulated under the old maximum
          const float corr = std::exp(mx[g] - cmax);
          sum[g] *= corr;
          detail::scale_avx2(corr, acc + g * hd, hd);
          mx[g] = cmax;
        }
        sum[g] += detail::exp_sum_inplace_avx2(sc, n, mx[g]);
      }
      if (vec8) {
        detail::axpy_keys_avx2(c.kv_type, scores, kKeyChunk, group, kvv, n, hd, acc);
      } else {
        for (int g = 0; g < group; ++g)
          for (int64_t i = 0; i < n; ++i)
            detail::axpy_avx2(scores[g * kKeyChunk + i], static_cast<const float*>(kvv[i]),
                              acc + g * hd, hd);
      }
    }
    if (it.k1 >= 0) {  // a part: its maximum, sum and unnormalised accumulator per head
      float* rec = c.partial + index * (p.num_heads / p.num_kv_heads) * (hd + 2);
      for (int g = 0; g < group; ++g, rec += hd + 2) {
        rec[0] = mx[g];
        rec[1] = sum[g];
        std::copy(acc + g * hd, acc + (g + 1) * hd, rec + 2);
      }
      continue;
    }
    for (int g = 0; g < group; ++g) {
      float* o = c.out + ((q0 + j) * p.num_heads + h0 + g) * hd;
      const float inv = 1.0f / sum[g];
      for (int i = 0; i < hd; ++i) o[i] = acc[g * hd + i] * inv;
    }
  }
}

// Combines the parts of the split decode rows into `out`, each head's parts in ascending key
// order (the order the items were made in), as the online softmax combines key chunks:
// M' = max(M, m), L = L e^(M - M') + l e^(m - M'), O = O e^(M - M') + acc e^(m - M'); then O / L.
void merge_parts(const std::vector<WorkItem>& items, const std::vector<float>& partial,
                 const ops::detail::HostBatch& batch, const AttentionParams& p, float* out) {
  const int hd = p.head_dim, group = p.num_heads / p.num_kv_heads;
  const auto num_seqs = static_cast<int64_t>(batch.context_lens.size());
  std::vector<float> big_m(static_cast<size_t>(num_seqs * p.num_heads), -INFINITY);
  std::vector<float> big_l(static_cast<size_t>(num_seqs * p.num_heads), 0.0f);
  for (size_t i = 0; i < items.size(); ++i) {
    const WorkItem& it = items[i];
    if (it.k1 < 0) continue;
    const float* rec = partial.data() + i * static_cast<size_t>(group * (hd + 2));
    const int64_t row = batch.query_start[it.seq];
    for (int g = it.g0; g < it.g1; ++g, rec += hd + 2) {
      const int64_t h = int64_t{it.kv_head} * group + g;
      float* o = out + (row * p.num_heads + h) * hd;
      float& M = big_m[static_cast<size_t>(it.seq * p.num_heads + h)];
      float& L = big_l[static_cast<size_t>(it.seq * p.num_heads + h)];
      if (it.k0 == 0) {  // the first part
        M = rec[0];
        L = rec[1];
        std::copy(rec + 2, rec + 2 + hd, o);
        continue;
      }
      const float m = std::max(M, rec[0]);
      const float a = std::exp(M - m), b = std::exp(rec[0] - m);
      L = L * a + rec[1] * b;
      for (int d = 0; d < hd; ++d) o[d] = o[d] * a + rec[2 + d] * b;
      M = m;
    }
  }
  for (size_t i = 0; i < items.size(); ++i) {  // normalise once, after each row's last part
    const WorkItem& it = items[i];
    if (it.k1 < 0 || it.k1 != batch.context_lens[it.seq]) continue;
    const int64_t row = batch.query_start[it.seq];
    for (int g = it.g0; g < it.g1; ++g) {
      const int64_t h = int64_t{it.kv_head} * group + g;
      float* o = out + (row * p.num_heads + h) * hd;
      const float inv = 1.0f / big_l[static_cast<size_t>(it.seq * p.num_heads + h)];
      for (int d = 0; d < hd; ++d) o[d] *= inv;
    }
  }
}

}  // namespace

void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                     const AttentionBatch& ab, const AttentionParams& p, Tensor& out) {
  if (!detail::have_avx2()) return ref::paged_attention(q, k_cache, v_cache, ab, p, out);
  const char* op = "paged_attention";
  ops::detail::require_host(op, {&q, &k_cache, &v_cache, &out, &ab.query_start.tensor(),
                                 &ab.context_lens.tensor(), &ab.block_tables.tensor()});
  const int64_t num_seqs = ops::detail::check_attention(op, q, k_cache, v_cache, ab, p, out);
  const ops::detail::HostBatch batch = ops::detail::host_batch(op, ab);
  ops::detail::check_attention_values(op, q, k_cache, batch, p);
  std::vector<WorkItem> items;
  int64_t work = 0;
  const int group = p.num_heads / p.num_kv_heads;
  bool any_split = false;
  for (int64_t s = 0; s < num_seqs; ++s) {
    const int64_t q_len = batch.query_start[s + 1] - batch.query_start[s];
    const int64_t ctx = batch.context_lens[s];
    work += q_len * ctx;
    for (int h = 0; h < p.num_kv_heads; ++h) {
      if (q_len == 1 && ctx > kSplitKeys) {
        any_split = true;
        for (int64_t k0 = 0; k0 < ctx; k0 += kSplitKeys)
          items.push_back({s, h, 0, 1, 0, group, k0, std::min(ctx, k0 + kSplitKeys)});
        continue;
      }
      for (int64_t j0 = 0; j0 < q_len; j0 += kQueryChunk)
        items.push_back({s, h, j0, std::min(q_len, j0 + kQueryChunk), 0, group});
    }
  }
  // Fewer items than threads (a decode step of one sequence with a short context and fewer kv
  // heads than threads, multi-query attention above all): one item per query head instead, so
  // every thread has one. A group's K/V rows are then read and widened once per head (each head's
  // arithmetic is the same as in its group's item). Only then: with 9 heads on 3 kv heads and 2
  // threads, splitting whenever items < 2 x threads made a decode step's attention 20-25% slower
  // than the 3 grouped items (ops_bench BM_PagedAttentionDecode, F16, contexts 32-256, Xeon VM:
  // ctx 96 5.2-5.3 -> 3.8-4.1 us, ctx 256 10.6-10.7 -> 8.6-8.8 us).
  const int threads = detail::max_threads();
  if (group > 1 && threads > 1 && static_cast<int64_t>(items.size()) < threads) {
    std::vector<WorkItem> split;
    for (const WorkItem& it : items)
      for (int g = 0; g < group; ++g)
        split.push_back({it.seq, it.kv_head, it.j0, it.j1, g, g + 1, it.k0, it.k1});
    items = std::move(split);
  }
  const auto n_items = static_cast<int64_t>(items.size());
  std::vector<float> partial(any_split ? static_cast<size_t>(n_items * group * (p.head_dim + 2))
                                       : size_t{0});
  const Ctx c{&q,
              static_cast<const char*>(k_cache.data()),
              static_cast<const char*>(v_cache.data()),
              k_cache.dtype(),
              row_bytes(k_cache.dtype(), p.head_dim),
              out.data_as<float>(),
              partial.data(),
              &batch,
              &p};
  detail::parallel_for(
      n_items,
      [&](int64_t i) {
        thread_local std::vector<float> scratch;  // per pool thread, reused across calls
        run_item(c, items[static_cast<size_t>(i)], i, scratch);
      },
      work * p.num_heads * p.head_dim >= kParallelMinWork);
  if (any_split) merge_parts(items, partial, batch, p, out.data_as<float>());
}

}  // namespace tessera::ops::cpu
