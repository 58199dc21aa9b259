// Reference paged attention: for every query row, gather its keys/values through the block table,
// take a full (two-pass) softmax of the scaled scores and sum the values. Straight from the
// AttentionBatch definition in ops.h. K/V rows of an F16/BF16 cache are read back as fp32
// (kv_rows.h) first.
#include <cmath>
#include <vector>

#include "check.h"
#include "kv_rows.h"

namespace tessera::ops::ref {

void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                     const AttentionBatch& ab, const AttentionParams& p, Tensor& out) {
  const char* op = "paged_attention";
  detail::require_host(op, {&q, &k_cache, &v_cache, &out, &ab.query_start.tensor(),
                            &ab.context_lens.tensor(), &ab.block_tables.tensor()});
  const int64_t num_seqs = detail::check_attention(op, q, k_cache, v_cache, ab, p, out);
  const detail::HostBatch batch = detail::host_batch(op, ab);
  detail::check_attention_values(op, q, k_cache, batch, p);
  const int hd = p.head_dim;
  const int group = p.num_heads / p.num_kv_heads;
  const auto* kc = static_cast<const char*>(k_cache.data());
  const auto* vc = static_cast<const char*>(v_cache.data());
  const DType kv_type = k_cache.dtype();
  const size_t head_bytes = row_bytes(kv_type, hd);
  // Head kvh of slot s: its hd values as fp32.
  std::vector<float> kv(static_cast<size_t>(hd));
  const auto load = [&](const char* cache, int64_t slot, int kvh) {
    detail::kv_load_row(kv_type,
                        cache + static_cast<size_t>(slot * p.num_kv_heads + kvh) * head_bytes,
                        kv.data(), hd);
    return kv.data();
  };
  std::vector<float> scores;
  for (int64_t s = 0; s < num_seqs; ++s) {
    const int64_t q0 = batch.query_start[s], q_len = batch.query_start[s + 1] - q0;
    const int64_t ctx = batch.context_lens[s];
    const int32_t* table = batch.block_tables.data() + s * batch.max_blocks_per_seq;
    for (int64_t j = 0; j < q_len; ++j) {
      const int64_t pos = ctx - q_len + j;
      for (int h = 0; h < p.num_heads; ++h) {
        const int kvh = h / group;
        const float* qv = q.data_as<float>() + ((q0 + j) * p.num_heads + h) * hd;
        float* ov = out.data_as<float>() + ((q0 + j) * p.num_heads + h) * hd;
        scores.assign(static_cast<size_t>(pos + 1), 0.0f);
        float max = -INFINITY;
        for (int64_t t = 0; t <= pos; ++t) {
          const int64_t slot = int64_t{table[t / p.block_size]} * p.block_size + t % p.block_size;
          const float* kr = load(kc, slot, kvh);
          float dot = 0.0f;
          for (int i = 0; i < hd; ++i) dot += qv[i] * kr[i];
          scores[static_cast<size_t>(t)] = dot * p.scale;
          max = std::fmax(max, dot * p.scale);
        }
        float sum = 0.0f;
        for (float& sc : scores) {
          sc = std::exp(sc - max);
          sum += sc;
        }
        for (int i = 0; i < hd; ++i) ov[i] = 0.0f;
        for (int64_t t = 0; t <= pos; ++t) {
          const int64_t slot = int64_t{table[t / p.block_size]} * p.block_size + t % p.block_size;
          const float* vv = load(vc, slot, kvh);
          const float w = scores[static_cast<size_t>(t)] / sum;
          for (int i = 0; i < hd; ++i) ov[i] += w * vv[i];
        }
      }
    }
  }
}

}  // namespace tessera::ops::ref
