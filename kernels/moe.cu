// Mixture-of-Experts kernels (moe.h): the router (one thread per token: E is at most a few
// hundred, and k a handful, so a per-token loop is cheaper than a block-wide sort) and the
// weighted scatter-add of one expert's outputs into their tokens' rows.
#include "tessera/kernels/moe.h"

namespace tessera::kernels {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxBlocks = 65535;

__global__ void moe_route_kernel(int32_t* ids, float* weights, const float* logits, int T, int E,
                                 int k, bool renormalize, bool softmax_topk) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= T) return;
  const float* row = logits + static_cast<int64_t>(t) * E;
  if (!softmax_topk) {
    ids[t] = 0;
    weights[t] = 1.0f / (1.0f + expf(-row[0]));
    return;
  }
  float mx = row[0];
  for (int e = 1; e < E; ++e) mx = fmaxf(mx, row[e]);
  float sum = 0.0f;
  for (int e = 0; e < E; ++e) sum += expf(row[e] - mx);
  // The k best by repeated scans: the j-th pick is the most probable expert not picked yet, the
  // lower id on a tie (prob[e] > prob[best] strictly, scanning up), as the reference picks.
  float chosen = 0.0f;
  int32_t* id = ids + static_cast<int64_t>(t) * k;
  float* wt = weights + static_cast<int64_t>(t) * k;
  for (int j = 0; j < k; ++j) {
    int best = -1;
    float best_p = 0.0f;
    for (int e = 0; e < E; ++e) {
      bool taken = false;
      for (int i = 0; i < j; ++i) taken = taken || id[i] == e;
      if (taken) continue;
      const float p = expf(row[e] - mx) / sum;
      if (best < 0 || p > best_p) {
        best = e;
        best_p = p;
      }
    }
    id[j] = best;
    wt[j] = best_p;
    chosen += best_p;
  }
  if (renormalize)
    for (int j = 0; j < k; ++j) wt[j] /= chosen;
}

__global__ void scale_add_rows_kernel(float* out, const float* src, const int32_t* rows,
                                      const float* scale, int n, int64_t cols) {
  for (int i = blockIdx.x; i < n; i += gridDim.x) {
    float* o = out + static_cast<int64_t>(rows[i]) * cols;
    const float* s = src + static_cast<int64_t>(i) * cols;
    const float w = scale[i];
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) o[c] += w * s[c];
  }
}

}  // namespace

cudaError_t launch_moe_route(int32_t* ids, float* weights, const float* logits, int num_tokens,
                             int num_experts, int k, bool renormalize, bool softmax_topk,
                             cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  const int blocks = (num_tokens + kThreads - 1) / kThreads;
  moe_route_kernel<<<blocks, kThreads, 0, stream>>>(ids, weights, logits, num_tokens, num_experts,
                                                    k, renormalize, softmax_topk);
  return cudaGetLastError();
}

cudaError_t launch_scale_add_rows(float* out, const float* src, const int32_t* rows,
                                  const float* scale, int n, int64_t cols, cudaStream_t stream) {
  if (n == 0 || cols == 0) return cudaSuccess;
  scale_add_rows_kernel<<<n < kMaxBlocks ? n : kMaxBlocks, kThreads, 0, stream>>>(out, src, rows,
                                                                                 scale, n, cols);
  return cudaGetLastError();
}

}  // namespace tessera::kernels
