// Private to the CPU ops: the integer dot-product path for the legacy quantized weight types
// (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0). Activations are quantized once per matmul into ActBlocks (int8
// per 32 elements, one fp32 scale), each weight block is unpacked to 8-bit integers in registers,
// the 32 products are summed in int32, and the sum is scaled once per block:
//   w . x over a block ~= dw * dx * sum(q_i * a_i) + c * sx
// where a_i = round(x_i / dx), sx = dx * sum(a_i), and c is the weight's offset per unit of
// quant (Q4_0: -8 dw, Q5_0: -16 dw, Q4_1/Q5_1: the block minimum m, Q8_0: 0). The weight quants q_i
// here are the unsigned nibbles (0..15 / 0..31) for the 4/5-bit types, the signed int8 for Q8_0.
// Kernels: a scalar integer one (the exactness baseline) and AVX2 / AVX-VNNI / AVX-512 VNNI ones,
// each compiled under its own target pragma and called only when cpu_isa() says the CPU has it.
// Holds no state beyond the immutable CPU probe.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "parallel.h"
#include "tessera/core/dtype.h"
#include "tessera/core/tensor.h"
#include "tessera/ops/ops.h"

namespace tessera::ops::cpu::detail {

// One quantized block of 32 activations. d = max|x| / 127 (0 for an all-zero block); s = d *
// sum(qs) (the block sum the offset/minimum term needs, kept in fp32 like ggml's Q8_1).
struct ActBlock {
  float d;
  float s;
  int8_t qs[32];
};
static_assert(sizeof(ActBlock) == 40);

// The integer kernels, widest first. Picked once from CPUID; kScalar runs anywhere.
// kAmx: AMX-INT8 tiles for the packed weights' prefill-sized calls (matvec_int8_amx.cpp), the
// AVX-512 VNNI kernels for everything else.
enum class Int8Isa : uint8_t { kScalar, kAvx2, kAvxVnni, kAvx512Vnni, kAmx };
const char* int8_isa_name(Int8Isa isa);
// The widest integer path this CPU runs (probed once).
Int8Isa best_int8_isa();
// Can this CPU run `isa`?
bool cpu_has(Int8Isa isa);
// The kernels matmul runs: best_int8_isa() unless cpu::set_int8_isa picked a narrower one.
Int8Isa int8_isa_in_use();

// Weight types the integer path handles.
bool int8_weight_type(DType t);

// Quantizes x (n % 32 == 0) into n / 32 blocks. Both versions give bitwise the same blocks (same
// fp32 operations: scale 127 / amax, multiply, round half to even).
void quantize_act_scalar(std::span<const float> x, std::span<ActBlock> out);
void quantize_act_avx2(std::span<const float> x, std::span<ActBlock> out);  // needs AVX2
void quantize_act(std::span<const float> x, std::span<ActBlock> out);       // best available
// The second digit of MatmulTarget::fine_activations: out = quantize_act(x - dequantized first),
// the rounding residual of `first` (x's blocks) quantized in its own blocks. |residual| <= d / 2
// per block, so its scale is at most 1/254 of the first's: the two digits carry x to ~15 bits.
void quantize_act_residual(std::span<const float> x, std::span<const ActBlock> first,
                           std::span<ActBlock> out);

// y[m, n] for n in [n0, n1), m < m_count: weight row n against activation rows m.
struct Int8Args {
  DType wtype = DType::kQ8_0;
  const uint8_t* w = nullptr;  // row n at w + n * w_row_bytes
  size_t w_row_bytes = 0;
  const ActBlock* x = nullptr;  // [m_count, k / 32]
  int m_count = 0;              // 1..kInt8MaxRows
  int64_t k = 0;
  float* y = nullptr;  // row m at y + m * ldy
  int64_t ldy = 0;
  const float* bias = nullptr;  // [n] or null
};
inline constexpr int kInt8MaxRows = 8;  // activation rows one kernel call holds in registers

void int8_rows_scalar(const Int8Args& a, int64_t n0, int64_t n1);
void int8_rows_avx2(const Int8Args& a, int64_t n0, int64_t n1);
void int8_rows_avxvnni(const Int8Args& a, int64_t n0, int64_t n1);
void int8_rows_avx512vnni(const Int8Args& a, int64_t n0, int64_t n1);
// The kernel of `isa` (which the CPU must have).
void int8_rows(Int8Isa isa, const Int8Args& a, int64_t n0, int64_t n1);
// The K-quants Q2_K..Q6_K (kquant_avx2.cpp; AVX2, k % 256 == 0). Q2_K's minimum is per 16
// elements (an activation block carries one sum per 32): the kernel forms the 16-element sums.
bool int8_kquant_type(DType t);
void kquant_int8_rows_avx2(const Int8Args& a, int64_t n0, int64_t n1);

// cpu::matmul's integer path (matmul_int8.cpp): taken when use_int8(w's dtype), i.e. the process
// runs int8 activations (cpu::activations()) and int8_weight_type(w). y[m, n] = x[m, k] . w^T + b.
bool use_int8(DType w);
// How matmul_int8_many makes each activation row before quantizing it: x's row as it is, or the
// row of an op fused in front (the decode fusions: rms_norm's with the norm weights and eps, or
// silu_mul's with x the gate and `up` beside it), computed by that op's own row kernel into a
// per-thread row, so the quantized blocks are those of the two ops run one after the other.
struct ActRows {
  enum class Kind : uint8_t { kPlain, kRmsNorm, kSiluMul };
  Kind kind = Kind::kPlain;
  const float* norm = nullptr;  // kRmsNorm: k weights
  float eps = 0.0f;
  const float* up = nullptr;  // kSiluMul: [m, k] beside x
};
// ops::matmul_many on this path: every target's weight must be use_int8; one x of m rows, k wide.
// With add_to (one target, no fine_activations), each chunk's outputs, once the target's y holds
// them, are added into add_to ([m, n] like y) by the thread that computed them: matmul then add,
// without a serial add after the pass.
void matmul_int8_many(const Tensor& x, std::span<const MatmulTarget> targets, int64_t m, int64_t k,
                      const ActRows& rows = {}, float* add_to = nullptr);
// cpu::prefetch_weights: the bytes each pool worker of a `threads`-thread pass over `targets`
// reads first (its own segment of the chunks, cut as matmul_int8_many cuts them), up to
// kPrefetchHintBytes per worker, prefetched by the idle workers while the caller runs the serial
// work in front of the matmul (norms, rope, quantization: at two threads the worker idled through
// 16-18% of a decode step's layers). Empty where the call would not be a parallel pass on this
// path.
// kPrefetchHintBytes: ~8 us of one core's ~16 GB/s stream, a sixteenth of Intel's 2 MiB L2.
inline constexpr size_t kPrefetchHintBytes = 128 << 10;
struct PrefetchRanges {
  std::array<PrefetchRange, kMaxPrefetchRanges> r{};
  size_t n = 0;
  std::span<const PrefetchRange> span() const { return {r.data(), n}; }
  size_t size() const { return n; }
  bool empty() const { return n == 0; }
  const PrefetchRange& operator[](size_t i) const { return r[i]; }
};
PrefetchRanges prefetch_ranges(std::span<const MatmulTarget> targets, int threads);
void matmul_int8(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y, int64_t m,
                 int64_t n, int64_t k);

}  // namespace tessera::ops::cpu::detail
