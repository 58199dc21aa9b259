// CUDA launcher of the sampling op (ops::sample, include/tessera/ops/sample.h): raw device
// pointers, sizes and a stream; allocates nothing, keeps no state. `words` is the packed
// metadata of sample_layout.h (validated by the host's SampleBatch before the upload).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace tessera::kernels {

// logits [rows, vocab] (left adjusted: mask and edits applied); tokens / logprobs [rows, cols]
// with cols = 1 + the header's max_top.
cudaError_t launch_sample(float* logits, const int32_t* words, int32_t* tokens, float* logprobs,
                          int rows, int vocab, int cols, cudaStream_t stream);

}  // namespace tessera::kernels
