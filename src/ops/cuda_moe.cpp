// The CUDA table's Mixture-of-Experts ops. moe_route is one kernel (kernels/moe.cu). moe_experts
// groups like the CPU's (src/ops/cpu/moe.cpp): the (token, choice) ids come back to the host once
// (T x k ints), the pairs are bucketed by held expert, and per expert with tokens its rows are
// gathered into one block that goes through the CUDA matmul on the expert's [F, H] / [H, F]
// slice of the stacked weights (still quantized), silu_mul, and a weighted scatter-add into out,
// experts in ascending order (the CPU's summation order). Scratch is stream-ordered and sized by
// the busiest expert. None of this has run on a GPU yet; the cuda instances of
// tests/ops/moe_ops_test.cpp are its parity cases.
#include "check_moe.h"  // outside the #if: a build without CUDA compiles a non-empty file

#if TESSERA_HAVE_CUDA
#include <algorithm>
#include <vector>

#include "cuda_common.h"
#include "tessera/kernels/elementwise.h"
#include "tessera/kernels/moe.h"
#include "tessera/kernels/weight_ops.h"

namespace tessera::ops::cuda {
namespace {

// A device F32 tensor over `bytes` of scratch at `at` (borrowed: the Scratch outlives it).
Tensor scratch_tensor(uint8_t* at, Shape shape, Device device, DType dtype = DType::kF32) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  auto storage =
      Storage::borrow(at, static_cast<size_t>(n) * dtype_info(dtype).block_bytes, nullptr, device);
  return Tensor::from_storage(std::move(storage), 0, std::move(shape), dtype);
}

}  // namespace

void moe_route(const Tensor& logits, const MoeRouteParams& p, Tensor& ids, Tensor& weights) {
  DeviceScope scope("moe_route", logits);
  const int64_t T = detail::rows_of(logits), E = detail::cols_of(logits);
  check(kernels::launch_moe_route(ids.data_as<int32_t>(), weights.data_as<float>(),
                                  logits.data_as<float>(), narrow(T, "moe_route", "tokens"),
                                  narrow(E, "moe_route", "experts"), p.k, p.renormalize,
                                  p.router == MoeRouter::kSoftmaxTopK, scope.stream()),
        "moe_route", "launch");
}

void moe_experts(const Tensor& x, const Tensor& w_gate, const Tensor& w_up, const Tensor& w_down,
                 const Indices& idx, const Tensor& weights, int first_expert, Tensor& out) {
  constexpr const char* kOp = "moe_experts";
  DeviceScope scope(kOp, x);
  const int64_t E = w_gate.dim(0), T = x.dim(0), F = w_gate.dim(1), H = w_gate.dim(2);
  check(cudaMemsetAsync(out.data(), 0, out.nbytes(), scope.stream()), kOp, "cudaMemsetAsync");
  if (T == 0) return;
  // The choices and their weights, on the host (the one device-to-host copy of the op).
  const int64_t pairs = idx.size();
  const int64_t k = pairs / T;
  std::vector<int32_t> ids(static_cast<size_t>(pairs));
  std::vector<float> wts(static_cast<size_t>(pairs));
  check(cudaMemcpyAsync(ids.data(), idx.tensor().data(), ids.size() * sizeof(int32_t),
                        cudaMemcpyDeviceToHost, scope.stream()),
        kOp, "cudaMemcpyAsync ids");
  check(cudaMemcpyAsync(wts.data(), weights.data(), wts.size() * sizeof(float),
                        cudaMemcpyDeviceToHost, scope.stream()),
        kOp, "cudaMemcpyAsync weights");
  check(cudaStreamSynchronize(scope.stream()), kOp, "cudaStreamSynchronize");

  // The pairs grouped by held expert (token order within an expert), as the CPU groups them.
  const detail::ExpertGroups g = detail::group_by_expert(ids, first_expert, E);
  const std::vector<int64_t>& start = g.start;
  const int64_t busiest = g.busiest, total = start[static_cast<size_t>(E)];
  if (busiest == 0) return;
  std::vector<int32_t> rows(static_cast<size_t>(total));  // the token of each pair
  std::vector<float> scale(static_cast<size_t>(total));   // its weight
  for (int64_t at = 0; at < total; ++at) {
    const int64_t i = g.pair[static_cast<size_t>(at)];
    rows[static_cast<size_t>(at)] = static_cast<int32_t>(i / k);
    scale[static_cast<size_t>(at)] = wts[static_cast<size_t>(i)];
  }

  // One scratch allocation: the pairs' rows and weights, then the busiest expert's blocks.
  const size_t meta = static_cast<size_t>(total) * (sizeof(int32_t) + sizeof(float));
  const size_t meta_aligned = (meta + 255) & ~size_t{255};
  const size_t block = static_cast<size_t>(busiest) * sizeof(float);
  Scratch scratch(meta_aligned + block * static_cast<size_t>(2 * H + 2 * F), kOp, scope.stream());
  auto* d_rows = reinterpret_cast<int32_t*>(scratch.get());
  auto* d_scale = reinterpret_cast<float*>(scratch.get() + total * sizeof(int32_t));
  check(cudaMemcpyAsync(d_rows, rows.data(), total * sizeof(int32_t), cudaMemcpyHostToDevice,
                        scope.stream()),
        kOp, "cudaMemcpyAsync rows");
  check(cudaMemcpyAsync(d_scale, scale.data(), total * sizeof(float), cudaMemcpyHostToDevice,
                        scope.stream()),
        kOp, "cudaMemcpyAsync weights");
  uint8_t* base = scratch.get() + meta_aligned;
  const Device dev = x.device();
  Tensor xs = scratch_tensor(base, {busiest, H}, dev);
  Tensor gate = scratch_tensor(base + block * static_cast<size_t>(H), {busiest, F}, dev);
  Tensor up = scratch_tensor(base + block * static_cast<size_t>(H + F), {busiest, F}, dev);
  Tensor down = scratch_tensor(base + block * static_cast<size_t>(H + 2 * F), {busiest, H}, dev);
  for (int64_t e = 0; e < E; ++e) {
    const int64_t s = start[static_cast<size_t>(e)], n = start[static_cast<size_t>(e + 1)] - s;
    if (n == 0) continue;
    const int rows_n = narrow(n, kOp, "tokens of an expert");
    check(kernels::launch_gather_rows(xs.data_as<float>(), x.data_as<float>(), d_rows + s, rows_n,
                                      H, scope.stream()),
          kOp, "gather_rows");
    const Tensor xe = xs.slice(0, n);
    Tensor ge = gate.slice(0, n), ue = up.slice(0, n), de = down.slice(0, n);
    cuda::matmul_on(scope.stream(), xe, w_gate.slice(e, e + 1).view({F, H}), ge);
    cuda::matmul_on(scope.stream(), xe, w_up.slice(e, e + 1).view({F, H}), ue);
    check(kernels::launch_silu_mul(ge.data_as<float>(), ge.data_as<float>(), ue.data_as<float>(),
                                   static_cast<long>(n * F), scope.stream()),
          kOp, "silu_mul");
    cuda::matmul_on(scope.stream(), ge, w_down.slice(e, e + 1).view({H, F}), de);
    check(kernels::launch_scale_add_rows(out.data_as<float>(), de.data_as<float>(), d_rows + s,
                                         d_scale + s, rows_n, H, scope.stream()),
          kOp, "scale_add_rows");
  }
}

}  // namespace tessera::ops::cuda

#endif  // TESSERA_HAVE_CUDA
