// ops::cpu::rope: the angles of a row are computed once (same fp32 formula as the reference, so
// cos/sin are bit-identical) and applied to every head of that row; chunks of rows go to the pool
// (parallel.h).
#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "../check.h"
#include "parallel.h"

namespace tessera::ops::cpu {

void rope(Tensor& x, int num_heads, const Indices& idx, const RopeParams& p) {
  ops::detail::require_host("rope", {&x, &idx.tensor()});
  const int rot = ops::detail::check_rope("rope", x, num_heads, idx, p);
  const auto positions = ops::detail::host_span("rope", "positions", idx);
  std::vector<float> inv_scratch;
  const std::span<const float> inv = rope_frequencies(p, inv_scratch);
  const int half = rot / 2;
  const bool interleaved = p.style == RopeStyle::kInterleaved;
  float* base = x.data_as<float>();
  const auto rows = static_cast<int64_t>(positions.size());
  constexpr int64_t kRowsPerChunk = 8;
  detail::parallel_for(
      (rows + kRowsPerChunk - 1) / kRowsPerChunk,
      [&](int64_t chunk) {
        // A decode step rotates one row per layer: no allocation for the angles' cos and sin.
        constexpr int kOnStack = 128;
        float cs_stack[kOnStack], sn_stack[kOnStack];
        std::vector<float> cs_heap, sn_heap;
        float* cs = cs_stack;
        float* sn = sn_stack;
        if (half > kOnStack) {
          cs_heap.resize(static_cast<size_t>(half));
          sn_heap.resize(static_cast<size_t>(half));
          cs = cs_heap.data();
          sn = sn_heap.data();
        }
        for (int64_t t = chunk * kRowsPerChunk; t < std::min(rows, (chunk + 1) * kRowsPerChunk);
             ++t) {
          for (int i = 0; i < half; ++i) {
            const float angle = static_cast<float>(positions[t]) * inv[static_cast<size_t>(i)];
            cs[i] = std::cos(angle);
            sn[i] = std::sin(angle);
          }
          for (int h = 0; h < num_heads; ++h) {
            float* v = base + (t * num_heads + h) * p.head_dim;
            if (interleaved) {
              for (int i = 0; i < half; ++i) {
                const float x0 = v[2 * i], x1 = v[2 * i + 1];
                v[2 * i] = x0 * cs[i] - x1 * sn[i];
                v[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
              }
            } else {
              float* lo = v;
              float* hi = v + half;
              for (int i = 0; i < half; ++i) {  // contiguous halves: auto-vectorised
                const float x0 = lo[i], x1 = hi[i];
                lo[i] = x0 * cs[i] - x1 * sn[i];
                hi[i] = x0 * sn[i] + x1 * cs[i];
              }
            }
          }
        }
      },
      rows >= 16);
}

}  // namespace tessera::ops::cpu
