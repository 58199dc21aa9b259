// CUDA launchers for the per-layer model ops that are not plain element-wise math: rotary
// embedding, paged KV-cache append, paged attention and argmax. Like the
// element-wise launchers they take raw device pointers, sizes and a stream; they allocate nothing,
// infer no shapes and keep no state. Every pointer (index arrays included) must be device memory.
// Semantics are those of ops::ref (include/tessera/ops/ops.h); accumulation is fp32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "tessera/kernels/attention_plan.h"

namespace tessera::kernels {

// The paged KV cache's element type (ops: F32, F16, BF16): stores round to nearest even, loads
// widen to fp32; attention computes in fp32 either way.
enum class KvType : int { kF32 = 0, kF16 = 1, kBF16 = 2 };

// The most rotary pairs (rotary_dim / 2) a rope launch takes: head_dim up to 512.
inline constexpr int kMaxRotaryPairs = 256;

// Rotates x [num_tokens, num_heads * head_dim] in place; token t sits at positions[t]. inv_freq
// (HOST memory, copied into the launch's arguments) holds rotary_dim/2 <= kMaxRotaryPairs inverse
// frequencies (ops::rope_inv_freq, so every scaling is already in).
// neox: pairs (i, i + rotary_dim/2); otherwise interleaved pairs (2i, 2i+1).
cudaError_t launch_rope(float* x, const int32_t* positions, const float* inv_freq, int num_tokens,
                        int num_heads, int head_dim, int rotary_dim, bool neox,
                        cudaStream_t stream);

// k_cache/v_cache [num_blocks * block_size, width] of kv_type: row slots[t] = k[t] / v[t]
// (width values, rounded to kv_type).
cudaError_t launch_kv_append(void* k_cache, void* v_cache, KvType kv_type, const float* k,
                             const float* v, const int32_t* slots, int num_tokens, int64_t width,
                             cudaStream_t stream);

// launch_rope (inv_freq in host memory, as there) on k [num_tokens, num_kv_heads * head_dim]
// (left rotated in place) and
// launch_kv_append of the rotated k and of v, in one kernel: k is read once and written twice
// (in place and to its cache slot) instead of read twice and written twice by two launches.
cudaError_t launch_rope_kv_append(float* k, const float* v, void* k_cache, void* v_cache,
                                  KvType kv_type, const int32_t* positions, const int32_t* slots,
                                  const float* inv_freq, int num_tokens, int num_kv_heads,
                                  int head_dim, int rotary_dim, bool neox, cudaStream_t stream);

// Everything one paged-attention launch needs; see ops::AttentionBatch for the batch layout.
struct PagedAttentionArgs {
  float* out = nullptr;           // [num_tokens, num_heads * head_dim]
  const float* q = nullptr;       // [num_tokens, num_heads * head_dim]
  const void* k_cache = nullptr;  // [num_blocks, block_size, num_kv_heads, head_dim] of kv_type
  const void* v_cache = nullptr;  // same shape and type as k_cache
  KvType kv_type = KvType::kF32;
  const int32_t* query_start = nullptr;   // num_seqs + 1, query_start[num_seqs] == num_tokens
  const int32_t* context_lens = nullptr;  // num_seqs
  const int32_t* block_tables = nullptr;  // num_seqs * max_blocks_per_seq
  int num_seqs = 0;
  int num_tokens = 0;
  int max_blocks_per_seq = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 0;
  float scale = 0.0f;
};

// Causal paged attention over each sequence's context, GQA (num_heads % num_kv_heads == 0).
cudaError_t launch_paged_attention(const PagedAttentionArgs& a, cudaStream_t stream);

// The same attention by flash decoding (flash_attention.cu): plan from attn::plan_attention (its
// ok must be true: head_dim <= 128), device workspace of attn::workspace_bytes.
cudaError_t launch_flash_attention(const PagedAttentionArgs& a, const attn::AttentionPlan& plan,
                                   void* workspace, cudaStream_t stream);

// out[r] = first index of the largest value in logits row r ([rows, cols]).
cudaError_t launch_argmax(int32_t* out, const float* logits, int rows, int64_t cols,
                          cudaStream_t stream);

}  // namespace tessera::kernels
