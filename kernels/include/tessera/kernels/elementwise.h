// CUDA launchers for the row-wise element ops. Kernels are launchers only: raw device pointers,
// sizes and a stream; no allocation, no shape inference. fp32 accumulation throughout.
#pragma once

#include <cuda_runtime.h>

namespace tessera::kernels {

// out[r, :] = x[r, :] / rms(x[r, :]) * weight  (rows x cols, fp32)
cudaError_t launch_rms_norm(float* out, const float* x, const float* weight, int rows, int cols,
                            float eps, cudaStream_t stream);
// out[i] = silu(gate[i]) * up[i]
cudaError_t launch_silu_mul(float* out, const float* gate, const float* up, long n,
                            cudaStream_t stream);

}  // namespace tessera::kernels
