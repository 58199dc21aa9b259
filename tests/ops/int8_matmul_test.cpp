// The integer dot-product path of the CPU matmul (src/ops/cpu/int8_dot.h): the activation
// quantizer, every int8 kernel this CPU can run against a float64 dot of the dequantized weights
// with the original activations, the SIMD kernels against the scalar integer kernel, and the
// process-wide choice between the int8 and fp32 paths. The test names the kernels it ran.
#include <omp.h>

#include <cfloat>
#include <vector>

#include "../../src/ops/cpu/int8_dot.h"
#include "tessera/core/half.h"
#include "tessera/ops/backend.h"
#include "test_util.h"

namespace tessera::ops::test {
namespace {

using cpu::detail::ActBlock;
using cpu::detail::Int8Isa;

constexpr DType kInt8Types[] = {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1, DType::kQ5_0,
                                DType::kQ5_1};
constexpr Int8Isa kIsas[] = {Int8Isa::kScalar, Int8Isa::kAvx2, Int8Isa::kAvxVnni,
                             Int8Isa::kAvx512Vnni, Int8Isa::kAmx};

class Int8MatmulTest : public SeededTest {
 protected:
  // x[m, k] quantized to activation blocks.
  static std::vector<ActBlock> quantize(const Tensor& x, int64_t m, int64_t k) {
    std::vector<ActBlock> out(static_cast<size_t>(m * k / 32));
    cpu::detail::quantize_act({x.data_as<float>(), static_cast<size_t>(m * k)}, out);
    return out;
  }
  // y[m, n] from the int8 kernel of `isa`, over rows [0, n) in one call.
  static std::vector<float> run(Int8Isa isa, const Tensor& w, std::span<const ActBlock> act,
                                int64_t m, int64_t n, int64_t k) {
    std::vector<float> y(static_cast<size_t>(m * n));
    for (int64_t m0 = 0; m0 < m; m0 += cpu::detail::kInt8MaxRows) {
      cpu::detail::Int8Args a;
      a.wtype = w.dtype();
      a.w = static_cast<const uint8_t*>(w.data());
      a.w_row_bytes = w.row_bytes();
      a.x = act.data() + m0 * (k / 32);
      a.m_count = static_cast<int>(std::min<int64_t>(cpu::detail::kInt8MaxRows, m - m0));
      a.k = k;
      a.y = y.data() + m0 * n;
      a.ldy = n;
      cpu::detail::int8_rows(isa, a, 0, n);
    }
    return y;
  }
};

TEST_F(Int8MatmulTest, QuantizerRoundsToNearestAndBothVersionsAgreeBitwise) {
  const int64_t k = 32 * 40;
  std::vector<float> x = normal_vec(static_cast<size_t>(k));
  for (int i = 64; i < 96; ++i) x[static_cast<size_t>(i)] = 0.0f;      // an all-zero block: d = 0
  for (int i = 96; i < 128; ++i) x[static_cast<size_t>(i)] *= 1e-30f;  // tiny: no overflow of 1/d
  std::vector<ActBlock> a(static_cast<size_t>(k / 32)), b(a.size());
  cpu::detail::quantize_act_scalar(x, a);
  for (size_t i = 0; i < a.size(); ++i) {
    int sum = 0, amax = 0;
    for (int j = 0; j < 32; ++j) {
      const float xv = x[i * 32 + static_cast<size_t>(j)];
      const int q = a[i].qs[j];
      sum += q;
      amax = std::max(amax, std::abs(q));
      // Round to nearest: |x - d q| <= d / 2, up to the fp32 rounding of x / d.
      EXPECT_LE(std::fabs(xv - a[i].d * static_cast<float>(q)), a[i].d * (0.5f + 1e-5f)) << i;
    }
    EXPECT_EQ(a[i].s, a[i].d * static_cast<float>(sum)) << i;
    EXPECT_EQ(amax, i == 2 ? 0 : 127) << i;  // the largest |x| maps to 127, zeros to 0
  }
  if (!cpu::detail::cpu_has(Int8Isa::kAvx2)) GTEST_SKIP() << "no AVX2: scalar quantizer only";
  cpu::detail::quantize_act_avx2(x, b);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].d, b[i].d) << i;
    EXPECT_EQ(a[i].s, b[i].s) << i;
    for (int j = 0; j < 32; ++j) EXPECT_EQ(a[i].qs[j], b[i].qs[j]) << i << " " << j;
  }
}

// Every kernel against sum_i w_i x_i in float64, w the dequantized weights and x the activations
// before quantization. Activation rounding moves each x_i by at most d/2 (d the block's scale),
// so a block's error is at most sum_i |w_i| d / 2: that sum over blocks is the tolerance, plus
// 1e-5 of sum |w_i x_i| for the fp32 scaling and summing (observed ~1e-7 of it). A wrong nibble,
// fifth bit, sign, scale or offset moves a result by ~|w_i x_i| summed over a block, far beyond.
TEST_F(Int8MatmulTest, EveryKernelMatchesTheFloat64DotWithinTheRoundingBound) {
  std::string ran;
  for (Int8Isa isa : kIsas) {
    if (!cpu::detail::cpu_has(isa)) continue;
    ran += std::string(" ") + cpu::detail::int8_isa_name(isa);
    for (DType t : kInt8Types)
      for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 37, 256},
                             {3, 19, 576},
                             {6, 8, 1536},
                             {1, 5, 32}}) {
        SCOPED_TRACE(std::string(cpu::detail::int8_isa_name(isa)) + " " +
                     std::string(dtype_name(t)) + " M=" + std::to_string(m) +
                     " N=" + std::to_string(n) + " K=" + std::to_string(k));
        Tensor w = random_weight(t, n, k);
        Tensor x = random_f32({m, k});
        const auto act = quantize(x, m, k);
        const auto y = run(isa, w, act, m, n, k);
        std::vector<float> wrow(static_cast<size_t>(k));
        const float* xp = x.data_as<float>();
        for (int64_t j = 0; j < n; ++j) {
          ref::dequantize_row(t, w.row_ptr(j), wrow.data(), k);
          for (int64_t i = 0; i < m; ++i) {
            double want = 0, sum_abs = 0, bound = 0;
            for (int64_t b = 0; b < k / 32; ++b) {
              double wabs = 0;
              for (int64_t c = b * 32; c < b * 32 + 32; ++c) {
                const double wc = wrow[static_cast<size_t>(c)], xc = xp[i * k + c];
                want += wc * xc;
                sum_abs += std::fabs(wc * xc);
                wabs += std::fabs(wc);
              }
              bound += wabs * act[static_cast<size_t>(i * (k / 32) + b)].d / 2;
            }
            ASSERT_NEAR(y[static_cast<size_t>(i * n + j)], want, bound + 1e-5 * sum_abs + 1e-6)
                << "y[" << i << "," << j << "]";
          }
        }
      }
  }
  RecordProperty("kernels", ran);
  std::printf("int8 kernels run on this CPU:%s\n", ran.c_str());
}

// The SIMD kernels form the same exact int32 sum per block as the scalar kernel; only the fp32
// scaling and summing order differs. Each of the ~nb + 8 fp32 operations on the way to a result
// rounds by at most FLT_EPSILON / 2 of the running sum, which is bounded by S, the sum over blocks
// of |dw| dx qmax sum|a_i| + |c| dx sum|a_i| (qmax: the largest unsigned weight quant). So the
// kernels agree within (nb + 8) FLT_EPSILON S; a block with a wrong quant differs by >= dw dx.
TEST_F(Int8MatmulTest, SimdKernelsAgreeWithTheScalarIntegerKernel) {
  int compared = 0;
  for (Int8Isa isa : kIsas) {
    if (isa == Int8Isa::kScalar || !cpu::detail::cpu_has(isa)) continue;
    for (DType t : kInt8Types) {
      for (const int64_t m : {int64_t{1}, int64_t{5}}) {  // 1: decode's single-row path
        SCOPED_TRACE(std::string(cpu::detail::int8_isa_name(isa)) + " " +
                     std::string(dtype_name(t)) + " M=" + std::to_string(m));
        const int64_t n = 23, k = 768, nb = k / 32;
        Tensor w = random_weight(t, n, k);
        Tensor x = random_f32({m, k});
        const auto act = quantize(x, m, k);
        const auto want = run(Int8Isa::kScalar, w, act, m, n, k);
        const auto got = run(isa, w, act, m, n, k);
        const auto bytes = static_cast<size_t>(dtype_info(t).block_bytes);
        const double qmax = t == DType::kQ8_0                          ? 128
                            : (t == DType::kQ4_0 || t == DType::kQ4_1) ? 15
                                                                       : 31;
        for (int64_t j = 0; j < n; ++j)
          for (int64_t i = 0; i < m; ++i) {
            double s = 0;
            for (int64_t b = 0; b < nb; ++b) {
              const uint8_t* blk = w.row_ptr(j) + static_cast<size_t>(b) * bytes;
              uint16_t h[2];
              std::memcpy(h, blk, 4);
              const double dw = fp16_to_f32(h[0]);
              const double c = t == DType::kQ4_0   ? -8 * dw
                               : t == DType::kQ5_0 ? -16 * dw
                               : t == DType::kQ8_0 ? 0
                                                   : fp16_to_f32(h[1]);
              const ActBlock& a = act[static_cast<size_t>(i * nb + b)];
              double asum = 0;
              for (int e = 0; e < 32; ++e) asum += std::abs(a.qs[e]);
              s += (std::fabs(dw) * qmax + std::fabs(c)) * a.d * asum;
            }
            const size_t at = static_cast<size_t>(i * n + j);
            ASSERT_NEAR(got[at], want[at], static_cast<double>(nb + 8) * FLT_EPSILON * s)
                << "y[" << i << "," << j << "]";
            ++compared;
          }
      }
    }
  }
  if (compared == 0) GTEST_SKIP() << "no SIMD integer kernel on this CPU";
}

// cpu::matmul and ops::matmul take the integer path under kInt8 (the same values as the kernel
// called directly on the same quantized activations, with bias, threads and M > kInt8MaxRows) and
// the exact path under kF32 (the reference within fp32 reordering).
TEST_F(Int8MatmulTest, TheActivationModeSelectsThePath) {
  for (DType t : kInt8Types) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const int64_t m = 9, n = 300, k = 576;
    Tensor w = random_weight(t, n, k);
    Tensor x = random_f32({m, k});
    Tensor bias = random_f32({n});
    Tensor want_ref = Tensor::empty({m, n}, DType::kF32);
    Tensor y = Tensor::empty({m, n}, DType::kF32);
    ref::matmul(x, w, bias, want_ref);
    const auto act = quantize(x, m, k);
    auto want_int8 = run(cpu::detail::best_int8_isa(), w, act, m, n, k);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        want_int8[static_cast<size_t>(i * n + j)] += bias.data_as<float>()[j];
    {
      ActivationsScope mode(cpu::Activations::kInt8);
      for (auto fn : {&cpu::matmul, &ops::matmul}) {
        fn(x, w, bias, y);
        for (size_t i = 0; i < want_int8.size(); ++i)
          ASSERT_EQ(y.data_as<float>()[i], want_int8[i]) << i;
      }
    }
    {
      ActivationsScope mode(cpu::Activations::kF32);
      cpu::matmul(x, w, bias, y);
      int differs = 0;
      for (size_t i = 0; i < want_int8.size(); ++i) {
        const float r = want_ref.data_as<float>()[i];
        ASSERT_NEAR(y.data_as<float>()[i], r, 1e-4f * (std::fabs(r) + 10.0f)) << i;
        differs += y.data_as<float>()[i] != want_int8[i];
      }
      EXPECT_GT(differs, 0) << "the fp32 path gave the int8 path's values";
    }
  }
}

TEST_F(Int8MatmulTest, ActivationNamesParseAndUnknownOnesThrow) {
  EXPECT_EQ(cpu::parse_activations("int8"), cpu::Activations::kInt8);
  EXPECT_EQ(cpu::parse_activations("fp32"), cpu::Activations::kF32);
  EXPECT_STREQ(cpu::activations_name(cpu::Activations::kInt8), "int8");
  EXPECT_STREQ(cpu::activations_name(cpu::Activations::kF32), "fp32");
  EXPECT_THROW(cpu::parse_activations("f16"), Error);
  EXPECT_THROW(cpu::parse_activations(""), Error);
  EXPECT_EQ(cpu::detail::best_int8_isa() == Int8Isa::kScalar,
            !cpu::detail::cpu_has(Int8Isa::kAvx2));
}

// set_int8_isa picks the kernels ops::matmul runs: each path this CPU has takes effect (the SIMD
// ones bitwise equal on row-major and packed weights, scalar equal on packed ones), one it lacks
// is refused as unsupported, an unknown name as invalid, and "auto" restores the widest.
TEST_F(Int8MatmulTest, SetInt8IsaSelectsTheKernelsMatmulRuns) {
  const std::string widest = cpu::detail::int8_isa_name(cpu::detail::best_int8_isa());
  ActivationsScope mode(cpu::Activations::kInt8);
  const auto& cpu_alloc = default_allocator(Device::cpu());
  // 19 rows: AMX tiles 16, the rest go to VNNI; 1536 rows: several pool chunks, most not at row 0.
  const int64_t m = 19, n = 1536, k = 576;
  const Tensor x = random_f32({m, k});
  const Tensor w = random_weight(DType::kQ4_1, n, k);
  const Tensor packed = ops::pack_weight(w, cpu_alloc);
  std::vector<float> first_rows, first_packed;
  std::string ran;
  for (Int8Isa isa : kIsas) {
    const char* name = cpu::detail::int8_isa_name(isa);
    if (!cpu::detail::cpu_has(isa)) {
      try {
        cpu::set_int8_isa(name);
        ADD_FAILURE() << name << " accepted on a CPU without it";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kUnsupported) << e.what();
      }
      EXPECT_EQ(cpu::int8_isa(), widest);
      continue;
    }
    cpu::set_int8_isa(name);
    EXPECT_STREQ(cpu::int8_isa(), name);
    ran += std::string(" ") + name;
    Tensor y = Tensor::empty({m, n}, DType::kF32), yp = Tensor::empty({m, n}, DType::kF32);
    ops::matmul(x, w, Tensor(), y);
    ops::matmul(x, packed, Tensor(), yp);
    const std::vector<float> rows(y.f32().begin(), y.f32().end());
    const std::vector<float> pk(yp.f32().begin(), yp.f32().end());
    if (first_packed.empty()) first_packed = pk;
    EXPECT_EQ(pk, first_packed) << name << ": packed weights";
    if (isa == Int8Isa::kScalar) continue;
    if (first_rows.empty()) first_rows = rows;
    EXPECT_EQ(rows, first_rows) << name << ": row-major weights";
  }
  std::printf("int8 kernels selected and run:%s\n", ran.c_str());
  EXPECT_THROW(cpu::set_int8_isa("avx1024"), Error);
  try {
    cpu::set_int8_isa("");
    ADD_FAILURE() << "empty name accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
  }
  cpu::set_int8_isa("auto");
  EXPECT_EQ(cpu::int8_isa(), widest);
}

// MatmulTarget::fine_activations: each row's 32 largest outputs get the rounding residual of the
// activations as a second int8 digit. Its scale is at most 1/254 of the first digit's, so those
// outputs stay within int8_rounding_bound / 254 (plus fp32 scaling and summing) of the float64 dot
// of the original activations, for every integer weight type, row-major and packed, with bias, on
// 1 row (decode), 3 and 9 (more than one packed row group); their largest error is a small
// fraction of the one-digit path's on the same inputs (a refinement that added nothing would fail
// both); and every other output is the one-digit path's, bit for bit. Mixed targets in one
// matmul_many each get their own path, bitwise as alone.
TEST_F(Int8MatmulTest, FineActivationsAddTheResidualToEachRowsLargestOutputs) {
  ActivationsScope mode(cpu::Activations::kInt8);
  const auto& cpu_alloc = default_allocator(Device::cpu());
  std::vector<DType> types(std::begin(kInt8Types), std::end(kInt8Types));
  if (cpu::detail::cpu_has(Int8Isa::kAvx2))  // the K-quants' integer kernels are AVX2 ones
    types.insert(types.end(), std::begin(kKquantTypes), std::end(kKquantTypes));
  constexpr int kTop = 32;
  for (DType t : types)
    for (bool pack : {false, true})
      for (int64_t m : {1, 3, 9}) {
        const int64_t n = 96, k = 512;
        SCOPED_TRACE(std::string(dtype_name(t)) + (pack ? " packed" : " row-major") +
                     " M=" + std::to_string(m));
        const Tensor w = random_any_weight(t, n, k);
        const Tensor wp = pack ? ops::pack_weight(w, cpu_alloc) : w;
        const Tensor x = random_f32({m, k});
        const Tensor bias = random_f32({n});
        Tensor fine = Tensor::empty({m, n}, DType::kF32), one = Tensor::empty({m, n}, DType::kF32);
        const MatmulTarget tf{&wp, &bias, &fine, true}, t1{&wp, &bias, &one};
        ops::matmul_many(x, {&tf, 1});
        ops::matmul_many(x, {&t1, 1});
        std::vector<float> wrow(static_cast<size_t>(k));
        const float* xp = x.data_as<float>();
        double worst_fine = 0, worst_one = 0;
        for (int64_t i = 0; i < m; ++i) {
          const float* o = one.data_as<float>() + i * n;
          const float* f = fine.data_as<float>() + i * n;
          std::vector<int64_t> order(static_cast<size_t>(n));
          for (int64_t j = 0; j < n; ++j) order[static_cast<size_t>(j)] = j;
          std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
            return o[a] > o[b];  // ties: the lower index first
          });
          std::vector<bool> top(static_cast<size_t>(n), false);
          for (int r = 0; r < kTop; ++r)
            top[static_cast<size_t>(order[static_cast<size_t>(r)])] = true;
          for (int64_t j = 0; j < n; ++j) {
            if (!top[static_cast<size_t>(j)]) {
              ASSERT_EQ(f[j], o[j]) << "y[" << i << "," << j << "] is not among the largest";
              continue;
            }
            ref::dequantize_row(t, w.row_ptr(j), wrow.data(), k);
            double want = bias.data_as<float>()[j], sum_abs = 0;
            for (int64_t c = 0; c < k; ++c) {
              const double p = static_cast<double>(wrow[static_cast<size_t>(c)]) * xp[i * k + c];
              want += p;
              sum_abs += std::fabs(p);
            }
            const double tol =
                int8_rounding_bound(xp + i * k, wrow.data(), k) / 254 + 1e-5 * sum_abs + 1e-6;
            const double err = std::fabs(f[j] - want);
            ASSERT_LE(err, tol) << "y[" << i << "," << j << "] float64 " << want;
            worst_fine = std::max(worst_fine, err);
            worst_one = std::max(worst_one, std::fabs(o[j] - want));
          }
        }
        EXPECT_LT(worst_fine * 8, worst_one) << "the second digit gained too little";
      }
  // One fine and one plain target in one call: as two calls of their own, bit for bit.
  const int64_t m = 2, n = 64, k = 256;
  const Tensor w = ops::pack_weight(random_weight(DType::kQ8_0, n, k), cpu_alloc);
  const Tensor x = random_f32({m, k}), none;
  Tensor a = Tensor::empty({m, n}, DType::kF32), b = Tensor::empty({m, n}, DType::kF32);
  Tensor a1 = Tensor::empty({m, n}, DType::kF32), b1 = Tensor::empty({m, n}, DType::kF32);
  const MatmulTarget both[] = {{&w, &none, &a, true}, {&w, &none, &b, false}};
  ops::matmul_many(x, both);
  const MatmulTarget alone[] = {{&w, &none, &a1, true}, {&w, &none, &b1, false}};
  ops::matmul_many(x, {&alone[0], 1});
  ops::matmul_many(x, {&alone[1], 1});
  EXPECT_EQ(std::memcmp(a.data(), a1.data(), a.nbytes()), 0);
  EXPECT_EQ(std::memcmp(b.data(), b1.data(), b.nbytes()), 0);
  EXPECT_NE(std::memcmp(a.data(), b.data(), a.nbytes()), 0);
}

}  // namespace
}  // namespace tessera::ops::test
