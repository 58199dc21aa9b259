// The 8-row interleaved weight layouts of the CPU's int8 path (src/ops/cpu/packed.h): packing
// round trips; the scalar packed kernel against a float64 dot of the dequantized weights with the
// original activations (within the int8 rounding bound); every SIMD packed kernel this CPU has
// against the scalar one, bitwise (they do the same fp32 operations in the same order); matmul
// through the ops under both activation modes, on the CPU and the guarded device; when a weight
// is packed and when it is left alone. The test names the kernels it ran.
#include <cstring>
#include <vector>

#include "../../src/ops/cpu/int8_dot.h"
#include "../../src/ops/cpu/packed.h"
#include "tessera/core/allocator.h"
#include "tessera/ops/backend.h"
#include "test_util.h"

namespace tessera::ops::test {
namespace {

using cpu::detail::ActBlock;
using cpu::detail::Int8Isa;

constexpr DType kBases[] = {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0, DType::kQ5_0,
                            DType::kQ5_1, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K};
constexpr Int8Isa kIsas[] = {Int8Isa::kScalar, Int8Isa::kAvx2, Int8Isa::kAvxVnni,
                             Int8Isa::kAvx512Vnni, Int8Isa::kAmx};

// Packing on, for a scope (restoring the process's setting after).
class PackScope {
 public:
  explicit PackScope(bool on) : saved_(cpu::pack_weights()) { cpu::set_pack_weights(on); }
  ~PackScope() { cpu::set_pack_weights(saved_); }
  PackScope(const PackScope&) = delete;
  PackScope& operator=(const PackScope&) = delete;

 private:
  bool saved_;
};

class PackedMatmulTest : public SeededTest {
 protected:
  static Tensor pack(const Tensor& w) {
    Tensor p = Tensor::empty(w.shape(), cpu::detail::packed_type(w.dtype()));
    cpu::detail::pack_rows(w.dtype(), static_cast<const uint8_t*>(w.data()), w.shape()[0],
                           w.shape()[1], static_cast<uint8_t*>(p.data()));
    return p;
  }
  static std::vector<ActBlock> quantize(const Tensor& x, int64_t m, int64_t k) {
    std::vector<ActBlock> out(static_cast<size_t>(m * k / 32));
    cpu::detail::quantize_act({x.data_as<float>(), static_cast<size_t>(m * k)}, out);
    return out;
  }
  // y[m, n] from the packed kernel of `isa` over rows [0, n), every activation row in one call
  // (as matmul calls it: the kernels group the rows themselves).
  static std::vector<float> run(Int8Isa isa, const Tensor& packed, std::span<const ActBlock> act,
                                int64_t m, const float* bias) {
    const int64_t n = packed.shape()[0], k = packed.shape()[1];
    std::vector<float> y(static_cast<size_t>(m * n), -1.0f);
    cpu::detail::Int8Args a;
    a.wtype = packed.dtype();
    a.w = static_cast<const uint8_t*>(packed.data());
    a.w_row_bytes = packed.row_bytes();
    a.x = act.data();
    a.m_count = static_cast<int>(m);
    a.k = k;
    a.y = y.data();
    a.ldy = n;
    a.bias = bias;
    cpu::detail::packed_rows(isa, a, 0, n);
    return y;
  }
};

TEST_F(PackedMatmulTest, PackingRoundTripsAndMovesEveryByte) {
  for (DType t : kBases) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const Tensor w = random_any_weight(t, 24, 256);
    const Tensor p = pack(w);
    // Q4_K's and Q5_K's scales take a byte each when packed (4 bytes more per 256 elements).
    const size_t base = static_cast<size_t>(dtype_info(t).block_bytes);
    EXPECT_EQ(p.nbytes(),
              t == DType::kQ4_K || t == DType::kQ5_K ? w.nbytes() / base * (base + 4) : w.nbytes());
    EXPECT_NE(std::memcmp(p.data(), w.data(), w.nbytes()), 0) << "packing changed nothing";
    std::vector<uint8_t> back(w.nbytes());
    cpu::detail::unpack_rows(t, static_cast<const uint8_t*>(p.data()), 24, 256, back.data());
    EXPECT_EQ(std::memcmp(back.data(), w.data(), w.nbytes()), 0);
  }
  const Tensor w = random_any_weight(DType::kQ4_1, 12, 64);  // 12 rows: not whole groups
  std::vector<uint8_t> out(w.nbytes());
  EXPECT_THROW(cpu::detail::pack_rows(DType::kQ4_1, static_cast<const uint8_t*>(w.data()), 12, 64,
                                      out.data()),
               Error);
}

// Each x_i is rounded by at most its block's d / 2, so a block moves w . x by at most
// sum |w_i| d / 2; 1e-5 of sum |w_i x_i| covers the fp32 scaling and summing.
TEST_F(PackedMatmulTest, ScalarKernelMatchesTheFloat64DotWithinTheRoundingBound) {
  for (DType t : kBases)
    for (auto [m, n, k] :
         {std::tuple<int64_t, int64_t, int64_t>{1, 16, 256}, {3, 8, 768}, {9, 24, 512}}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " M=" + std::to_string(m) +
                   " N=" + std::to_string(n) + " K=" + std::to_string(k));
      const Tensor w = random_any_weight(t, n, k);
      const Tensor x = random_f32({m, k});
      const Tensor bias = random_f32({n});
      const auto act = quantize(x, m, k);
      const auto y = run(Int8Isa::kScalar, pack(w), act, m, bias.data_as<float>());
      EXPECT_EQ(int8_result_error(w, x, bias, y.data()), "");
    }
}

TEST_F(PackedMatmulTest, SimdKernelsEqualTheScalarKernelBitwise) {
  std::string ran;
  for (Int8Isa isa : kIsas) {
    if (isa == Int8Isa::kScalar || !cpu::detail::cpu_has(isa)) continue;
    ran += std::string(" ") + cpu::detail::int8_isa_name(isa);
    for (DType t : kBases)
      for (int64_t m : {1, 2, 3, 4, 5, 8, 11, 16, 21, 32, 35}) {  // AMX: whole 16s + rest
        SCOPED_TRACE(std::string(cpu::detail::int8_isa_name(isa)) + " " +
                     std::string(dtype_name(t)) + " M=" + std::to_string(m));
        const int64_t n = 40, k = 768;
        const Tensor w = random_any_weight(t, n, k);
        const Tensor p = pack(w);
        const Tensor x = random_f32({m, k});
        const Tensor bias = random_f32({n});
        const auto act = quantize(x, m, k);
        for (const float* b : {static_cast<const float*>(nullptr),
                               static_cast<const float*>(bias.data_as<float>())}) {
          const auto want = run(Int8Isa::kScalar, p, act, m, b);
          const auto got = run(isa, p, act, m, b);
          for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << i;
        }
      }
  }
  if (ran.empty()) GTEST_SKIP() << "no SIMD integer kernel on this CPU";
  RecordProperty("kernels", ran);
  std::printf("packed int8 kernels run on this CPU:%s\n", ran.c_str());
}

// The largest products the kernels meet: every quant byte 0xff (the 4/5/6-bit types' top value,
// Q8_0's -1) or 0x80 (Q8_0's -128) and every activation 127 of the same sign, so each int16
// partial sum of the AVX2 kernels is at its bound (packed_kernel.h: Q4 8, Q5 4 maddubs results
// per sum). A sum that saturated or wrapped would leave the scalar kernel's exact value.
TEST_F(PackedMatmulTest, LargestProductsDoNotOverflowTheSimdSums) {
  for (uint8_t fill : {uint8_t{0xff}, uint8_t{0x80}})
    for (DType t : kBases) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " fill " + std::to_string(fill));
      const int64_t m = 3, n = 16, k = 512;
      Tensor w = Tensor::empty({n, k}, t);
      auto* p = static_cast<uint8_t*>(w.data());
      std::memset(p, fill, w.nbytes());
      const auto bytes = static_cast<size_t>(dtype_info(t).block_bytes);
      std::vector<size_t> halves;
      if (is_kquant(t))
        for (size_t at : kquant_half_fields(t)) halves.push_back(at);
      else if (t == DType::kQ4_1 || t == DType::kQ5_1)
        halves = {0, 2};  // d, m
      else
        halves = {0};  // d
      for (size_t b = 0; b < w.nbytes() / bytes; ++b)
        for (size_t at : halves) {
          const uint16_t h = 0x1c00;  // 2^-8
          std::memcpy(p + b * bytes + at, &h, 2);
        }
      Tensor x = Tensor::empty({m, k}, DType::kF32);
      for (float& v : x.f32()) v = 1.0f;
      const auto act = quantize(x, m, k);
      const Tensor pw = pack(w);
      const auto want = run(Int8Isa::kScalar, pw, act, m, nullptr);
      EXPECT_EQ(int8_result_error(w, x, Tensor(), want.data()), "");
      for (Int8Isa isa : kIsas) {
        if (isa == Int8Isa::kScalar || !cpu::detail::cpu_has(isa)) continue;
        const auto got = run(isa, pw, act, m, nullptr);
        for (size_t i = 0; i < want.size(); ++i)
          ASSERT_EQ(got[i], want[i]) << cpu::detail::int8_isa_name(isa) << " " << i;
      }
    }
}

// Which weights pack_target packs: Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K/Q6_K [N % 8 == 0, K] under
// int8 activations with packing on, on a CPU with an integer SIMD kernel; everything else stays as
// it is.
TEST_F(PackedMatmulTest, OnlyWholeGroupsOfTheBaseTypesPackAndOnlyForTheInt8Path) {
  if (cpu::detail::best_int8_isa() == Int8Isa::kScalar) GTEST_SKIP() << "no integer SIMD kernel";
  ActivationsScope int8(cpu::Activations::kInt8);
  PackScope on(true);
  for (DType t : kBases)
    EXPECT_EQ(cpu::pack_target(random_any_weight(t, 16, 256)), cpu::detail::packed_type(t));
  EXPECT_EQ(cpu::pack_target(random_any_weight(DType::kQ4_1, 12, 256)), DType::kQ4_1);
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ2_K, DType::kQ3_K})
    EXPECT_EQ(cpu::pack_target(random_any_weight(t, 16, 256)), t);
  {
    ActivationsScope f32(cpu::Activations::kF32);
    EXPECT_EQ(cpu::pack_target(random_any_weight(DType::kQ4_1, 16, 256)), DType::kQ4_1);
  }
  {
    PackScope off(false);
    EXPECT_EQ(cpu::pack_target(random_any_weight(DType::kQ4_1, 16, 256)), DType::kQ4_1);
  }
  // The reference backend reads weights row-major only; the CPU and guarded ones take packed
  // weights for matmul and nothing else.
  EXPECT_FALSE(ref_backend().supports(Op::kMatmul, DType::kQ4_1x8));
  EXPECT_TRUE(cpu_backend().supports(Op::kMatmul, DType::kQ4_1x8));
  EXPECT_FALSE(cpu_backend().supports(Op::kEmbedding, DType::kQ4_1x8));
}

// ops::pack_weight then ops::matmul: under int8 activations the packed kernel's values (equal
// whatever the row count, so a step may be split anywhere), under fp32 activations (a process
// that switched after loading) the row-major weight's fp32 values, bitwise; on the guarded
// device the same values as on the CPU.
TEST_F(PackedMatmulTest, MatmulThroughTheOpsOnCpuAndGuardedDevice) {
  if (cpu::detail::best_int8_isa() == Int8Isa::kScalar) GTEST_SKIP() << "no integer SIMD kernel";
  ActivationsScope int8(cpu::Activations::kInt8);
  PackScope on(true);
  for (DType t : kBases) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const int64_t m = 13, n = 200, k = 768;
    const Tensor w = random_any_weight(t, n, k);
    const Tensor x = random_f32({m, k});
    const Tensor bias = random_f32({n});
    const Tensor pw = ops::pack_weight(w, default_allocator(Device::cpu()));
    ASSERT_EQ(pw.dtype(), cpu::detail::packed_type(t));
    const auto act = quantize(x, m, k);
    const auto want = run(cpu::detail::best_int8_isa(), pw, act, m, bias.data_as<float>());
    Tensor y = Tensor::empty({m, n}, DType::kF32);
    ops::matmul(x, pw, bias, y);
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(y.data_as<float>()[i], want[i]) << i;
    // Row by row gives the same values.
    for (int64_t r = 0; r < m; ++r) {
      Tensor yr = Tensor::empty({1, n}, DType::kF32);
      ops::matmul(x.slice(r, r + 1), pw, bias, yr);
      for (int64_t j = 0; j < n; ++j)
        ASSERT_EQ(yr.data_as<float>()[j], want[static_cast<size_t>(r * n + j)]) << r << "," << j;
    }
    // The guarded device: packed in guarded memory, the same values.
    const auto galloc = default_allocator(Device::guarded(0));
    const Tensor gw = ops::pack_weight(to_device(w, galloc), galloc);
    ASSERT_EQ(gw.dtype(), pw.dtype());
    Tensor gy = Tensor::empty({m, n}, DType::kF32, galloc);
    ops::matmul(to_device(x, galloc), gw, to_device(bias, galloc), gy);
    const Tensor hy = to_host(gy);
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(hy.data_as<float>()[i], want[i]) << i;
    // fp32 activations: the packed weight gives the row-major weight's values.
    ActivationsScope f32(cpu::Activations::kF32);
    for (int64_t rows : {int64_t{1}, int64_t{5}, m}) {
      Tensor want_f = Tensor::empty({rows, n}, DType::kF32), got_f = want_f;
      got_f = Tensor::empty({rows, n}, DType::kF32);
      cpu::matmul(x.slice(0, rows), w, bias, want_f);
      cpu::matmul(x.slice(0, rows), pw, bias, got_f);
      for (int64_t i = 0; i < rows * n; ++i) {
        if (rows <= 8) {
          ASSERT_EQ(got_f.data_as<float>()[i], want_f.data_as<float>()[i]) << rows << " " << i;
        } else {  // the row-major weight takes sgemm above 8 rows: equal up to fp32 reordering
          const float r = want_f.data_as<float>()[i];
          ASSERT_NEAR(got_f.data_as<float>()[i], r, 1e-4f * (std::fabs(r) + 10.0f)) << i;
        }
      }
    }
  }
}

// ops::prefetch_weights' ranges: for each pool worker, the first bytes of the rows it streams
// first in the pass over the same targets (its own segment of the chunks), inside the weights'
// bytes, at most kPrefetchHintBytes per worker; nothing for a call that is not a parallel pass
// on the integer path. The hint changes no result, and a target without a weight is refused.
TEST_F(PackedMatmulTest, PrefetchHintNamesEachWorkersFirstRows) {
  if (cpu::detail::best_int8_isa() == Int8Isa::kScalar) GTEST_SKIP() << "no integer SIMD kernel";
  ActivationsScope int8(cpu::Activations::kInt8);
  PackScope on(true);
  const auto alloc = default_allocator(Device::cpu());
  const int64_t k = 576;
  // gate/up-like: two weights of 1536 rows (Q4_1: 360 B per row, 128 rows per 48 KiB chunk).
  const Tensor gate = ops::pack_weight(random_any_weight(DType::kQ4_1, 1536, k), alloc);
  const Tensor up = ops::pack_weight(random_any_weight(DType::kQ4_1, 1536, k), alloc);
  ASSERT_TRUE(is_packed(gate.dtype()));
  Tensor yg = Tensor::empty({1, 1536}, DType::kF32), yu = yg;
  yu = Tensor::empty({1, 1536}, DType::kF32);
  const Tensor none;
  const MatmulTarget both[] = {{&gate, &none, &yg}, {&up, &none, &yu}};
  const auto inside = [](const cpu::detail::PrefetchRange& r, const Tensor& w) {
    const auto* b = static_cast<const uint8_t*>(w.data());
    const auto* p = static_cast<const uint8_t*>(r.p);
    return p >= b && p + r.bytes <= b + w.nbytes();
  };
  // 2 threads: 24 chunks (12 per weight); the worker's segment starts at chunk 12, up's row 0.
  auto ranges = cpu::detail::prefetch_ranges(both, 2);
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0].worker, 0);
  EXPECT_EQ(ranges[0].p, up.data());
  EXPECT_EQ(ranges[0].bytes, cpu::detail::kPrefetchHintBytes);
  // 4 threads: segments start at chunks 6 (gate's row 768), 12 (up's row 0), 18 (up's row 768).
  ranges = cpu::detail::prefetch_ranges(both, 4);
  ASSERT_EQ(ranges.size(), 3u);
  const std::pair<const Tensor*, int64_t> first_rows[] = {{&gate, 768}, {&up, 0}, {&up, 768}};
  for (int wkr = 0; wkr < 3; ++wkr) {
    const auto& r = ranges[static_cast<size_t>(wkr)];
    EXPECT_EQ(r.worker, wkr);
    EXPECT_EQ(r.p, first_rows[wkr].first->row_ptr(first_rows[wkr].second)) << wkr;
    EXPECT_TRUE(inside(r, *first_rows[wkr].first)) << wkr;
    EXPECT_LE(r.bytes, cpu::detail::kPrefetchHintBytes);
  }
  // A worker's segment shorter than the budget: its whole segment and no byte beyond it.
  const Tensor small = ops::pack_weight(random_any_weight(DType::kQ4_1, 256, k), alloc);
  Tensor ys = Tensor::empty({1, 256}, DType::kF32);
  const MatmulTarget one[] = {{&small, &none, &ys}};
  ranges = cpu::detail::prefetch_ranges(one, 2);  // 90 KiB: 2 chunks of 128 rows
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0].p, small.row_ptr(128));
  EXPECT_EQ(ranges[0].bytes, 128 * small.row_bytes());
  // Nothing: one thread, a pass too small for the pool, fp32 activations.
  EXPECT_TRUE(cpu::detail::prefetch_ranges(both, 1).empty());
  const Tensor tiny = ops::pack_weight(random_any_weight(DType::kQ4_1, 32, k), alloc);
  Tensor yt = Tensor::empty({1, 32}, DType::kF32);
  const MatmulTarget tiny_t[] = {{&tiny, &none, &yt}};
  EXPECT_TRUE(cpu::detail::prefetch_ranges(tiny_t, 2).empty());
  {
    ActivationsScope f32(cpu::Activations::kF32);
    EXPECT_TRUE(cpu::detail::prefetch_ranges(both, 2).empty());
  }
  // Through the ops: the hint, then the matmul, gives the matmul's values.
  const Tensor x = random_f32({1, k});
  Tensor want_g = Tensor::empty({1, 1536}, DType::kF32), want_u = want_g;
  want_u = Tensor::empty({1, 1536}, DType::kF32);
  const MatmulTarget want[] = {{&gate, &none, &want_g}, {&up, &none, &want_u}};
  ops::matmul_many(x, want);
  ops::prefetch_weights(both);
  ops::matmul_many(x, both);
  EXPECT_EQ(std::memcmp(yg.data(), want_g.data(), yg.nbytes()), 0);
  EXPECT_EQ(std::memcmp(yu.data(), want_u.data(), yu.nbytes()), 0);
  const MatmulTarget no_weight[] = {{&none, &none, &yg}};
  EXPECT_THROW(ops::prefetch_weights(no_weight), Error);
}

}  // namespace
}  // namespace tessera::ops::test
