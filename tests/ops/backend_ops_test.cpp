// The device-parametrised op suite (in the spirit of llama.cpp's test-backend-ops): every op x
// dtype x shape family on every device available here (cpu, guarded; cuda when a GPU is present)
// against ops::ref on fresh random inputs. Inputs and index arrays are uploaded to the device, the
// op runs through ops::* (the dispatcher and the device's table) and the result is copied back.
// An (op, dtype) a device does not implement yet is listed, not failed: the CUDA issue fills them.
// Tolerances, argued from the precision:
//   exact          embedding, embedding_shard, gather_rows, kv_append, argmax, add: copies,
//                  dequantisation by the same formula, comparisons, one fp32 add per element;
//   1e-5 relative  rms_norm, silu_mul (reordered sums of up to a few thousand terms, ~2 ulp exp);
//   2e-5           rope (sincos within 2 ulp, FMA contraction);
//   3e-5 * sum|x*w| + 1e-6   matmul (fp32 accumulation in a different order, per output);
//                  with int8 activations (the CPU default for Q4_0..Q8_0), plus the activation
//                  rounding bound int8_rounding_bound (test_util.h); on CUDA the bound of the
//                  path the table takes (matmul_bounds.h: int8 GEMV, fp16/bf16 GEMM);
//   sample         tokens and adjusted logits exact; logprobs exact on the host devices, 1e-6
//                  relative on CUDA (a log-sum-exp in another order);
//   2e-5           paged_attention (convex combinations of N(0,1) values, online softmax);
//                  1e-5 relative + 1e-5 in the GQA / split-K / chunked-prefill cases.
// The seed of every case is printed on failure (SeededTest).
#include <algorithm>
#include <cmath>
#include <string>

#include "matmul_bounds.h"
#include "sample_util.h"
#include "tessera/ops/backend.h"
#include "test_util.h"

namespace tessera::ops::test {
namespace {

class BackendOps : public SeededTest, public ::testing::WithParamInterface<DeviceType> {
 protected:
  void SetUp() override {
    device_ = Device{GetParam(), 0};
    try {
      alloc_ = make_allocator(device_);
    } catch (const Error& e) {
      GTEST_SKIP() << device_.str() << " is not available here: " << e.what();
    }
  }
  Tensor dev(const Tensor& host) { return to_device(host, alloc_); }
  Tensor dev_idx(const std::vector<int32_t>& v) {
    Tensor host = Tensor::empty({static_cast<int64_t>(v.size())}, DType::kI32);
    std::copy(v.begin(), v.end(), host.data_as<int32_t>());
    return dev(host);
  }
  Tensor dev_zeros(Shape shape) { return Tensor::empty(std::move(shape), DType::kF32, alloc_); }
  // Whether the device implements (op, dtype); records the gap otherwise.
  bool runs(Op op, DType dtype) {
    if (backend_for(device_).supports(op, dtype)) return true;
    std::printf("[ not yet   ] %s: %s for %s\n", device_.str().c_str(),
                std::string(op_name(op)).c_str(), std::string(dtype_name(dtype)).c_str());
    return false;
  }
  void expect_close(const Tensor& want, const Tensor& got_dev, float rel, float abs,
                    const std::string& what) {
    const Tensor got = to_host(got_dev);
    ASSERT_EQ(got.shape(), want.shape()) << what;
    for (int64_t i = 0; i < want.numel(); ++i) {
      const float w = want.data_as<float>()[i], g = got.data_as<float>()[i];
      ASSERT_NEAR(g, w, abs + rel * std::abs(w)) << what << " [" << i << "]";
    }
  }
  void expect_equal(const Tensor& want, const Tensor& got_dev, const std::string& what) {
    expect_close(want, got_dev, 0.0f, 0.0f, what);
  }

  void kv_append_and_attention(DType kv);
  void rope_kv_append_cases(DType kv);

  Device device_;
  std::shared_ptr<Allocator> alloc_;
};

TEST_P(BackendOps, Embedding) {
  for (DType type : kWeightTypes) {
    if (!runs(Op::kEmbedding, type)) continue;
    for (auto [vocab, dim, n] : {std::tuple{50, 64, 1}, {37, 256, 19}, {1000, 576, 70}}) {
      const Tensor table = random_weight(type, vocab, dim);
      std::vector<int32_t> ids(static_cast<size_t>(n));
      for (auto& id : ids) id = randint(0, vocab - 1);
      ids[0] = vocab - 1;  // the last row: catches off-by-one row addressing
      Tensor want = Tensor::empty({n, dim}, DType::kF32);
      ref::embedding(table, ids, want);
      Tensor got = dev_zeros({n, dim});
      ops::embedding(dev(table), dev_idx(ids), got);
      expect_equal(want, got, std::string(dtype_name(type)) + " vocab " + std::to_string(vocab));
    }
  }
}

TEST_P(BackendOps, EmbeddingShardZeroesRowsOfOtherShards) {
  for (DType type : {DType::kF32, DType::kQ8_0, DType::kQ4_1}) {
    if (!runs(Op::kEmbeddingShard, type)) continue;
    const int64_t first = 40, rows = 30, dim = 64;
    const Tensor shard = random_weight(type, rows, dim);
    std::vector<int32_t> ids{0, 39, 40, 55, 69, 70, 100, 41};
    Tensor want = Tensor::empty({8, dim}, DType::kF32);
    ref::embedding_shard(shard, ids, first, want);
    for (int64_t c = 0; c < dim; ++c) ASSERT_EQ(want.data_as<float>()[c], 0.0f);  // id 0: not ours
    Tensor got = dev_zeros({8, dim});
    ops::embedding_shard(dev(shard), dev_idx(ids), first, got);
    expect_equal(want, got, std::string(dtype_name(type)));
  }
}

TEST_P(BackendOps, RmsNormSiluMulAddSoftmax) {
  for (auto [rows, cols] : {std::pair{1, 576}, {7, 1000}, {65, 1536}}) {
    const Tensor x = random_f32({rows, cols}), w = random_f32({cols}), y = random_f32({rows, cols});
    if (runs(Op::kRmsNorm, DType::kF32)) {
      Tensor want = Tensor::empty({rows, cols}, DType::kF32);
      ref::rms_norm(x, w, 1e-5f, want);
      Tensor got = dev_zeros({rows, cols});
      ops::rms_norm(dev(x), dev(w), 1e-5f, got);
      expect_close(want, got, 1e-5f, 1e-6f, "rms_norm");
    }
    if (runs(Op::kSiluMul, DType::kF32)) {
      Tensor want = Tensor::empty({rows, cols}, DType::kF32);
      ref::silu_mul(x, y, want);
      Tensor got = dev_zeros({rows, cols});
      ops::silu_mul(dev(x), dev(y), got);
      expect_close(want, got, 1e-5f, 1e-7f, "silu_mul");
    }
    if (runs(Op::kAdd, DType::kF32)) {
      Tensor want = clone(x);
      ref::add(want, y);
      Tensor got = dev(x);
      ops::add(got, dev(y));
      expect_equal(want, got, "add");
    }
    if (runs(Op::kSoftmax, DType::kF32)) {
      Tensor want = clone(x);
      ref::softmax(want);
      Tensor got = dev(x);
      ops::softmax(got);
      expect_close(want, got, 2e-6f, 1e-7f, "softmax");
    }
  }
}

TEST_P(BackendOps, ArgmaxWithPlantedTies) {
  if (!runs(Op::kArgmax, DType::kF32)) return;
  for (auto [rows, cols] : {std::pair{1, 49152}, {9, 1000}}) {
    Tensor x = random_f32({rows, cols});
    // Row 0: the maximum twice; the first one wins.
    const int a = randint(0, cols / 2 - 1), b = randint(cols / 2, cols - 1);
    x.data_as<float>()[a] = x.data_as<float>()[b] = 100.0f;
    const auto want = ref::argmax(x);
    ASSERT_EQ(want[0], a);
    EXPECT_EQ(ops::argmax(dev(x)), want);
  }
}

// Every rule of the sampling op at once (random rows: greedy, temperature, top-k/p, min-p, edits,
// masks, logprobs) on the device against the reference: tokens equal, adjusted logits equal (the
// same fp32 operations), logprobs exact on the host devices and within 1e-6 relative on CUDA
// (its log-sum-exp adds in another order, in double). A CUDA token could differ only where
// u * mass or a top-p cut falls within double rounding of a boundary (~1e-16 here).
TEST_P(BackendOps, SampleRowsMatchReference) {
  if (!runs(Op::kSample, DType::kF32)) return;
  for (auto [rows, vocab] : {std::pair{40, 1000}, {4, 49152}}) {
    std::vector<SampleRow> rs;
    for (int r = 0; r < rows; ++r) rs.push_back(random_sample_row(rng(), vocab));
    const Tensor logits = sample_logits(rng(), rows, vocab);
    const SampleOut want = run_sample(logits, rs, make_allocator(Device::cpu()), true);
    const SampleOut got = run_sample(logits, rs, alloc_);
    ASSERT_EQ(std::memcmp(got.tokens.data(), want.tokens.data(), want.tokens.nbytes()), 0)
        << "tokens, vocab " << vocab;
    ASSERT_EQ(std::memcmp(got.logits.data(), want.logits.data(), want.logits.nbytes()), 0)
        << "adjusted logits, vocab " << vocab;
    const float rel = device_.is_cuda() ? 1e-6f : 0.0f;
    for (int64_t i = 0; i < want.logprobs.numel(); ++i) {
      const float w = want.logprobs.data_as<float>()[i], g = got.logprobs.data_as<float>()[i];
      if (std::isinf(w))
        ASSERT_EQ(g, w) << i;
      else
        ASSERT_NEAR(g, w, rel * std::abs(w)) << "logprob [" << i << "], vocab " << vocab;
    }
  }
}

TEST_P(BackendOps, GatherRows) {
  if (!runs(Op::kGatherRows, DType::kF32)) return;
  const Tensor src = random_f32({13, 576});
  const std::vector<int32_t> rows{12, 0, 5, 5, 7};
  Tensor want = Tensor::empty({5, 576}, DType::kF32);
  ref::gather_rows(src, rows, want);
  Tensor got = dev_zeros({5, 576});
  ops::gather_rows(dev(src), dev_idx(rows), got);
  expect_equal(want, got, "gather_rows");
}

TEST_P(BackendOps, Rope) {
  if (!runs(Op::kRope, DType::kF32)) return;
  struct Case {
    int tokens, heads, head_dim, rotary_dim;
    RopeStyle style;
  };
  for (const Case c :
       {Case{1, 9, 64, 0, RopeStyle::kInterleaved}, Case{7, 8, 64, 0, RopeStyle::kNeox},
        Case{33, 4, 128, 64, RopeStyle::kNeox}}) {
    RopeParams p{
        .head_dim = c.head_dim, .rotary_dim = c.rotary_dim, .theta = 10000.0f, .style = c.style};
    std::vector<int32_t> pos(static_cast<size_t>(c.tokens));
    for (auto& v : pos) v = randint(0, 8191);
    const Tensor x = random_f32({c.tokens, c.heads * c.head_dim});
    Tensor want = clone(x);
    ref::rope(want, c.heads, pos, p);
    Tensor got = dev(x);
    ops::rope(got, c.heads, dev_idx(pos), p);
    expect_close(want, got, 2e-5f, 2e-5f, "rope heads " + std::to_string(c.heads));
  }
}

// The fused K path against the two reference ops it stands for: k rotated in place and, rotated,
// in its cache slots; v in its slots; every other slot untouched. Partial rotary dims (the pass-
// through dims) and both pair layouts. Tolerance as rope's (2e-5: sincos within 2 ulp, FMA);
// the v cache and the untouched slots are exact copies.
// On every cache type; an F16/BF16 cache is compared widened, to within one rounding unit of the
// type (the rotated k may differ by fp32 noise, which can move a rounding by one unit).
TEST_P(BackendOps, RopeKvAppendEqualsRopeThenKvAppend) {
  for (DType kv : {DType::kF32, DType::kF16, DType::kBF16}) {
    SCOPED_TRACE(std::string("kv cache ") + std::string(dtype_name(kv)));
    rope_kv_append_cases(kv);
  }
}

void BackendOps::rope_kv_append_cases(DType kv) {
  if (!runs(Op::kRopeKvAppend, kv)) return;
  const auto cache = [&](Shape shape) {  // random values stored as kv
    const Tensor f = random_f32(shape);
    if (kv == DType::kF32) return f;
    Tensor c = Tensor::empty(shape, kv);
    for (int64_t i = 0; i < f.numel(); ++i)
      c.data_as<uint16_t>()[i] = kv == DType::kF16 ? f32_to_fp16(f.data_as<float>()[i])
                                                   : f32_to_bf16(f.data_as<float>()[i]);
    return c;
  };
  const auto widen = [&](const Tensor& c) {
    const Tensor h = to_host(c);
    if (kv == DType::kF32) return h;
    Tensor f = Tensor::empty(h.shape(), DType::kF32);
    for (int64_t i = 0; i < h.numel(); ++i)
      f.data_as<float>()[i] = kv == DType::kF16 ? fp16_to_f32(h.data_as<uint16_t>()[i])
                                                : bf16_to_f32(h.data_as<uint16_t>()[i]);
    return f;
  };
  const float unit = kv == DType::kF32 ? 0.0f : kv == DType::kF16 ? 0x1p-10f : 0x1p-7f;
  struct Case {
    int tokens, kv_heads, head_dim, rotary_dim;
    RopeStyle style;
  };
  const int bs = 8, blocks = 12;
  for (const Case c :
       {Case{1, 3, 64, 0, RopeStyle::kNeox}, Case{7, 2, 64, 0, RopeStyle::kInterleaved},
        Case{19, 4, 128, 64, RopeStyle::kNeox}}) {
    RopeParams p{
        .head_dim = c.head_dim, .rotary_dim = c.rotary_dim, .theta = 10000.0f, .style = c.style};
    std::vector<int32_t> pos(static_cast<size_t>(c.tokens)),
        slots(static_cast<size_t>(blocks * bs));
    for (auto& x : pos) x = randint(0, 8191);
    for (int i = 0; i < blocks * bs; ++i) slots[static_cast<size_t>(i)] = i;
    std::shuffle(slots.begin(), slots.end(), rng());
    slots.resize(static_cast<size_t>(c.tokens));
    if (c.tokens == 7) slots[2] = slots[6] = -1;  // padding rows: k rotated, nothing cached
    const Tensor k = random_f32({c.tokens, c.kv_heads * c.head_dim});
    const Tensor v = random_f32({c.tokens, c.kv_heads * c.head_dim});
    const Tensor kc = cache({blocks, bs, c.kv_heads, c.head_dim});
    const Tensor vc = cache({blocks, bs, c.kv_heads, c.head_dim});
    Tensor want_k = clone(k), want_kc = clone(kc), want_vc = clone(vc);
    ref::rope(want_k, c.kv_heads, pos, p);
    ref::kv_append(want_k, v, slots, want_kc, want_vc);
    Tensor got_k = dev(k), got_kc = dev(kc), got_vc = dev(vc);
    ops::rope_kv_append(got_k, dev(v), c.kv_heads, dev_idx(pos), p, dev_idx(slots), got_kc, got_vc);
    const std::string what =
        "heads " + std::to_string(c.kv_heads) + " rot " + std::to_string(c.rotary_dim);
    expect_close(want_k, got_k, 2e-5f, 2e-5f, "k " + what);
    expect_close(widen(want_kc), widen(got_kc), 2e-5f + unit, 2e-5f, "k cache " + what);
    expect_equal(widen(want_vc), widen(got_vc), "v cache " + what);
  }
}

TEST_P(BackendOps, Matmul) {
  // Both CPU activation modes; the integer one only changes the quantized weight types' results.
  for (const cpu::Activations mode : {cpu::Activations::kF32, cpu::Activations::kInt8}) {
    ActivationsScope scope(mode);
    const bool int8 = mode == cpu::Activations::kInt8 && device_.type != DeviceType::kCUDA;
    for (DType type : kWeightTypes) {
      if (!runs(Op::kMatmul, type)) continue;
      for (auto [m, n, k] : {std::tuple{1, 96, 576}, {5, 64, 1536}, {33, 49, 256}}) {
        const Tensor x = random_f32({m, k}), w = random_weight(type, n, k), bias = random_f32({n});
        Tensor want = Tensor::empty({m, n}, DType::kF32);
        ref::matmul(x, w, bias, want);
        Tensor got = dev_zeros({m, n});
        ops::matmul(dev(x), dev(w), dev(bias), got);
        // Per-output bound: 3e-5 of sum |x*w| over K (the reference's terms).
        Tensor wf = Tensor::empty({n, k}, DType::kF32);
        for (int64_t r = 0; r < n; ++r)
          ref::dequantize_row(type, w.row_ptr(r), wf.data_as<float>() + r * k, k);
        const Tensor g = to_host(got);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            const float* xr = x.data_as<float>() + i * k;
            const float* wr = wf.data_as<float>() + j * k;
            float sum_abs = 0;
            for (int64_t t = 0; t < k; ++t) sum_abs += std::abs(xr[t] * wr[t]);
            const double q = int8 && is_quantized(type) ? int8_rounding_bound(xr, wr, k) : 0.0;
            const float r = want.data_as<float>()[i * n + j];
            const double tol =
                device_.type == DeviceType::kCUDA
                    ? matmul_bound(cuda_bound(type, m), type, xr, wr, w.row_ptr(j), k, r)
                    : 3e-5 * sum_abs + q + 1e-6;
            ASSERT_NEAR(g.data_as<float>()[i * n + j], r, tol)
                << dtype_name(type) << " " << cpu::activations_name(mode) << " y[" << i << "," << j
                << "]";
          }
        // matmul_add: the device's product added to a residual, bit for bit on the host devices
        // (matmul then add) and in CUDA's GEMV epilogue; cuBLAS adds the bias after the residual
        // (one more rounding: 2 ulp of the larger term).
        const Tensor residual = random_f32({m, n});
        Tensor acc = dev(clone(residual)), scratch = dev_zeros({m, n});  // dev() may not copy
        ops::matmul_add(dev(x), dev(w), dev(bias), scratch, acc);
        const Tensor a = to_host(acc);
        for (int64_t i = 0; i < m * n; ++i) {
          const float want_sum = residual.data_as<float>()[i] + g.data_as<float>()[i];
          const float slack = device_.is_cuda()
                                  ? 2.5e-7f * (std::abs(residual.data_as<float>()[i]) +
                                               std::abs(g.data_as<float>()[i]))
                                  : 0.0f;
          ASSERT_NEAR(a.data_as<float>()[i], want_sum, slack)
              << dtype_name(type) << " matmul_add [" << i << "]";
        }
      }
    }
  }
}

// matmul_many (q, k, v in one call: one activation quantization, one parallel pass) gives every
// target bit for bit what its own matmul gives, in both CPU activation modes, with weights of
// different types (merged only when all take the int8 path) and rows from decode to prefill.
TEST_P(BackendOps, MatmulManyEqualsSeparateCalls) {
  for (const cpu::Activations mode : {cpu::Activations::kF32, cpu::Activations::kInt8}) {
    ActivationsScope scope(mode);
    for (const std::vector<DType>& types :
         std::vector<std::vector<DType>>{{DType::kQ4_1, DType::kQ4_1, DType::kQ4_1},
                                         {DType::kQ4_0, DType::kQ8_0, DType::kQ5_1},
                                         {DType::kQ4_K, DType::kQ6_K},
                                         {DType::kQ8_0, DType::kF32}}) {
      bool all = true;
      for (DType t : types) all = all && runs(Op::kMatmul, t);
      if (!all) continue;
      for (int m : {1, 3, 40}) {
        const int k = 512;
        const Tensor x = dev(random_f32({m, k}));
        std::vector<Tensor> ws, bs, ys, want;
        for (size_t i = 0; i < types.size(); ++i) {
          const int n = 64 + 8 * static_cast<int>(i);
          ws.push_back(pack_weight(dev(random_any_weight(types[i], n, k)), alloc_));
          bs.push_back(i == 1 ? Tensor() : dev(random_f32({n})));
          ys.push_back(dev_zeros({m, n}));
          want.push_back(dev_zeros({m, n}));
          ops::matmul(x, ws.back(), bs.back(), want.back());
        }
        std::vector<MatmulTarget> targets;
        for (size_t i = 0; i < types.size(); ++i) targets.push_back({&ws[i], &bs[i], &ys[i]});
        ops::matmul_many(x, targets);
        for (size_t i = 0; i < types.size(); ++i) {
          const Tensor a = to_host(ys[i]), b = to_host(want[i]);
          ASSERT_EQ(std::memcmp(a.data(), b.data(), a.nbytes()), 0)
              << dtype_name(types[i]) << " target " << i << " m " << m << " "
              << cpu::activations_name(mode);
        }
      }
    }
  }
}

// The decode fusions give the bits of the ops they stand for on every device: the host tables
// compose them, and CUDA's int8 GEMV quantizes rows computed with rms_norm's and silu_mul's own
// arithmetic (its norm reduction included), so fused and composed agree bit for bit there too.
// Decode sizes (1, 3 rows: fused on CUDA where every weight takes the int8 GEMV) and a prefill size
// (12 rows: composed everywhere); F32 weights, which no int8 GEMV takes, composed.
TEST_P(BackendOps, DecodeFusionsEqualTheOpsTheyFuse) {
  for (const cpu::Activations mode : {cpu::Activations::kF32, cpu::Activations::kInt8}) {
    ActivationsScope scope(mode);
    for (DType type : {DType::kQ4_1, DType::kQ8_0, DType::kQ4_0, DType::kF32}) {
      if (!runs(Op::kMatmul, type)) continue;
      for (int m : {1, 3, 12}) {
        const int k = 256, n = 72;
        const std::string what = std::string(dtype_name(type)) + " m " + std::to_string(m) + " " +
                                 cpu::activations_name(mode);
        const Tensor x = dev(random_f32({m, k})), norm = dev(random_f32({k}));
        const Tensor wq = pack_weight(dev(random_any_weight(type, n, k)), alloc_);
        const Tensor wk = pack_weight(dev(random_any_weight(type, n / 2, k)), alloc_);
        const Tensor bias = dev(random_f32({n})), none;
        // rms_norm then matmul_many, against the fused call.
        Tensor normed = dev_zeros({m, k}), want_q = dev_zeros({m, n}),
               want_k = dev_zeros({m, n / 2});
        ops::rms_norm(x, norm, 1e-5f, normed);
        const MatmulTarget composed[] = {{&wq, &bias, &want_q}, {&wk, &none, &want_k}};
        ops::matmul_many(normed, composed);
        Tensor scratch = dev_zeros({m, k}), got_q = dev_zeros({m, n}),
               got_k = dev_zeros({m, n / 2});
        const MatmulTarget fused[] = {{&wq, &bias, &got_q}, {&wk, &none, &got_k}};
        ops::rms_norm_matmul_many(x, norm, 1e-5f, scratch, fused);
        expect_equal(to_host(want_q), to_host(got_q), "rms_norm_matmul_many q " + what);
        expect_equal(to_host(want_k), to_host(got_k), "rms_norm_matmul_many k " + what);
        // silu_mul then matmul / matmul_add (y's old value + the product), against the fused call.
        const Tensor gate0 = random_f32({m, k}), up = dev(random_f32({m, k}));
        const Tensor wd = pack_weight(dev(random_any_weight(type, n, k)), alloc_);
        const Tensor y0 = random_f32({m, n});
        for (bool accumulate : {false, true}) {
          Tensor gate = dev(clone(gate0)), want = dev(clone(y0)), proj = dev_zeros({m, n});
          ops::silu_mul(gate, up, gate);
          if (accumulate)
            ops::matmul_add(gate, wd, bias, proj, want);
          else
            ops::matmul(gate, wd, bias, want);
          Tensor gate2 = dev(clone(gate0)), got = dev(clone(y0)), proj2 = dev_zeros({m, n});
          ops::silu_mul_matmul(gate2, up, wd, bias, proj2, got, accumulate);
          expect_equal(to_host(want), to_host(got),
                       "silu_mul_matmul " + what + (accumulate ? " accumulate" : ""));
        }
      }
    }
  }
}

// Every KV cache type: the device's cache bytes equal the reference's (F16/BF16 rounded to nearest
// even on both), attention within the fp32 tolerance (both read the same stored values).
TEST_P(BackendOps, KvAppendAndPagedAttentionOverMixedBatches) {
  for (DType kv : {DType::kF32, DType::kF16, DType::kBF16}) {
    SCOPED_TRACE(std::string("kv cache ") + std::string(dtype_name(kv)));
    kv_append_and_attention(kv);
  }
}

void BackendOps::kv_append_and_attention(DType kv) {
  if (!runs(Op::kKvAppend, kv) || !runs(Op::kPagedAttention, kv)) return;
  const int heads = 6, kv_heads = 2, hd = 32, bs = 4, blocks = 40;
  const AttentionParams p{.num_heads = heads,
                          .num_kv_heads = kv_heads,
                          .head_dim = hd,
                          .block_size = bs,
                          .scale = 1.0f / std::sqrt(32.0f)};
  // Three sequences: a prefill chunk, a decode with a long context, a short decode.
  const std::vector<int> q_lens{9, 1, 1}, ctx{9, 37, 2};
  std::vector<int32_t> qstart{0}, slots, tables;
  const int max_blocks = 10;
  std::vector<int32_t> free_blocks(blocks);
  for (int i = 0; i < blocks; ++i) free_blocks[static_cast<size_t>(i)] = blocks - 1 - i;
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng());
  size_t next = 0;
  Tensor kc = Tensor::zeros({blocks, bs, kv_heads, hd}, kv), vc = clone(kc);
  for (size_t s = 0; s < q_lens.size(); ++s) {
    std::vector<int32_t> table(max_blocks, 0);
    for (int b = 0; b < (ctx[s] + bs - 1) / bs; ++b)
      table[static_cast<size_t>(b)] = free_blocks[next++];
    // The context before this step's rows is already in the cache.
    for (int t = 0; t < ctx[s] - q_lens[s]; ++t) {
      const int32_t slot = table[static_cast<size_t>(t / bs)] * bs + t % bs;
      const Tensor k = random_f32({1, kv_heads * hd}), v = random_f32({1, kv_heads * hd});
      ref::kv_append(k, v, std::vector<int32_t>{slot}, kc, vc);
    }
    for (int t = ctx[s] - q_lens[s]; t < ctx[s]; ++t)
      slots.push_back(table[static_cast<size_t>(t / bs)] * bs + t % bs);
    qstart.push_back(qstart.back() + q_lens[s]);
    tables.insert(tables.end(), table.begin(), table.end());
  }
  const int T = qstart.back();
  const Tensor k = random_f32({T, kv_heads * hd}), v = random_f32({T, kv_heads * hd});
  const Tensor q = random_f32({T, heads * hd});
  Tensor dkc = dev(kc), dvc = dev(vc);
  ref::kv_append(k, v, slots, kc, vc);
  ops::kv_append(dev(k), dev(v), dev_idx(slots), dkc, dvc);
  ASSERT_EQ(std::memcmp(to_host(dkc).data(), kc.data(), kc.nbytes()), 0) << "k cache";
  ASSERT_EQ(std::memcmp(to_host(dvc).data(), vc.data(), vc.nbytes()), 0) << "v cache";

  std::vector<int32_t> ctx32(ctx.begin(), ctx.end());
  Tensor want = Tensor::empty({T, heads * hd}, DType::kF32);
  ref::paged_attention(q, kc, vc, AttentionBatch{qstart, ctx32, tables, max_blocks}, p, want);
  Tensor got = dev_zeros({T, heads * hd});
  ops::paged_attention(dev(q), dkc, dvc,
                       AttentionBatch{dev_idx(qstart), dev_idx(ctx32), dev_idx(tables), max_blocks},
                       p, got);
  expect_close(want, got, 2e-5f, 2e-5f, "paged_attention");
}

// The CUDA table's flash attention (kernels/flash_attention.cu) across the shapes its plan treats
// differently: GQA ratios 1, 3 and 8 (one CTA a KV head and its whole group), contexts crossing
// block boundaries, a 5000-token decode alone (split-K: few CTAs, long context) and in a batch with
// chunked prefills (query rows tiled, causal inside the chunk) and a sequence without rows this
// step, head_dim 64 and 128. Tolerance:
// fp32 throughout with reordered sums only (online softmax per tile, splits merged), outputs are
// convex combinations of N(0,1) values: 1e-5 relative plus 1e-5 absolute, while a wrong key, head
// or mask moves an output by ~1e-2 or more.
TEST_P(BackendOps, PagedAttentionGqaSplitKAndChunkedPrefill) {
  if (!runs(Op::kPagedAttention, DType::kF32)) return;
  struct Case {
    int heads, kv_heads, hd;
    std::vector<int> q_lens, ctx;
  };
  const int bs = 16;
  for (const Case& c :
       {Case{4, 4, 64, {1}, {5000}}, Case{6, 2, 128, {1}, {5000}}, Case{16, 2, 64, {1}, {5000}},
        Case{4, 4, 128, {1, 40, 1, 33}, {5000, 140, 17, 33}},
        Case{9, 3, 64, {1, 40, 0, 1, 33}, {5000, 140, 20, 17, 33}},
        Case{16, 2, 128, {1, 40, 1, 33}, {4097, 140, 17, 33}}}) {
    const int S = static_cast<int>(c.ctx.size());
    int max_blocks = 0, blocks = 3;  // spare blocks no table uses
    for (int n : c.ctx) {
      max_blocks = std::max(max_blocks, (n + bs - 1) / bs);
      blocks += (n + bs - 1) / bs;
    }
    std::vector<int32_t> ids(static_cast<size_t>(blocks));
    for (int i = 0; i < blocks; ++i) ids[static_cast<size_t>(i)] = i;
    std::shuffle(ids.begin(), ids.end(), rng());
    std::vector<int32_t> tables(static_cast<size_t>(S * max_blocks), 0), qstart{0};
    size_t next = 0;
    for (int s = 0; s < S; ++s) {
      for (int b = 0; b < (c.ctx[static_cast<size_t>(s)] + bs - 1) / bs; ++b)
        tables[static_cast<size_t>(s * max_blocks + b)] = ids[next++];
      qstart.push_back(qstart.back() + c.q_lens[static_cast<size_t>(s)]);
    }
    // Random K/V in every slot (unused ones too: reading one would show).
    const Tensor kc = random_f32({blocks, bs, c.kv_heads, c.hd});
    const Tensor vc = random_f32({blocks, bs, c.kv_heads, c.hd});
    const int T = qstart.back();
    const Tensor q = random_f32({T, c.heads * c.hd});
    const AttentionParams p{.num_heads = c.heads,
                            .num_kv_heads = c.kv_heads,
                            .head_dim = c.hd,
                            .block_size = bs,
                            .scale = 1.0f / std::sqrt(static_cast<float>(c.hd))};
    std::vector<int32_t> ctx32(c.ctx.begin(), c.ctx.end());
    Tensor want = Tensor::empty({T, c.heads * c.hd}, DType::kF32);
    ref::paged_attention(q, kc, vc, AttentionBatch{qstart, ctx32, tables, max_blocks}, p, want);
    Tensor got = dev_zeros({T, c.heads * c.hd});
    ops::paged_attention(
        dev(q), dev(kc), dev(vc),
        AttentionBatch{dev_idx(qstart), dev_idx(ctx32), dev_idx(tables), max_blocks}, p, got);
    expect_close(want, got, 1e-5f, 1e-5f,
                 "heads " + std::to_string(c.heads) + "/" + std::to_string(c.kv_heads) + " hd " +
                     std::to_string(c.hd) + " seqs " + std::to_string(S));
  }
}

// The dispatcher refuses tensors of two devices (index arrays included), naming both.
TEST_P(BackendOps, MixedDevicesAreRefused) {
  if (device_.is_cpu()) GTEST_SKIP() << "needs a second device";
  const Tensor x = random_f32({2, 8});
  Tensor out = dev_zeros({2, 8});
  try {
    ops::silu_mul(x, dev(x), out);
    FAIL() << "mixed devices accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("different devices"), std::string::npos) << e.what();
  }
  const Tensor table = random_f32({10, 8});
  EXPECT_THROW(ops::embedding(dev(table), std::vector<int32_t>{1, 2}, out), Error);  // host ids
}

INSTANTIATE_TEST_SUITE_P(Devices, BackendOps,
                         ::testing::Values(DeviceType::kCPU, DeviceType::kGuarded,
                                           DeviceType::kCUDA),
                         [](const auto& info) {
                           return std::string(info.param == DeviceType::kCPU       ? "cpu"
                                              : info.param == DeviceType::kGuarded ? "guarded"
                                                                                   : "cuda");
                         });

}  // namespace
}  // namespace tessera::ops::test
