// CUDA launchers for Mixture-of-Experts routing and the experts' weighted combine. Raw device
// pointers, sizes and a stream; nothing allocated, no state. Semantics are ops::ref::moe_route's
// (include/tessera/ops/ops.h) and the last step of ops::moe_experts.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace tessera::kernels {

// logits [num_tokens, num_experts] -> ids / weights [num_tokens, k]. softmax_topk: the softmax
// over all experts, the k most probable (ties to the lower id), renormalised to sum 1 when
// `renormalize`; otherwise (k == num_experts == 1) the sigmoid gate: id 0, weight sigmoid(logit).
cudaError_t launch_moe_route(int32_t* ids, float* weights, const float* logits, int num_tokens,
                             int num_experts, int k, bool renormalize, bool softmax_topk,
                             cudaStream_t stream);

// out[rows[i], :] += scale[i] * src[i, :] for i < n (src [n, cols]); the rows must be distinct
// within one launch (one expert's tokens), so no two threads add to one element.
cudaError_t launch_scale_add_rows(float* out, const float* src, const int32_t* rows,
                                  const float* scale, int n, int64_t cols, cudaStream_t stream);

}  // namespace tessera::kernels
