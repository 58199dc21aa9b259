// CUDA embedding, RoPE, kv_append, argmax, rms_norm and silu_mul through the ops::* dispatch,
// against ops::ref on fresh random inputs; plus the dispatch's device checks. Skipped without a
// GPU. Tolerances: embedding, kv_append and argmax are exact (pure copies / comparisons); RoPE 2e-5
// absolute + 2e-5 relative (sincosf is within 2 ulp of the CPU's cosf/sinf and the GPU may fuse
// the rotation into FMAs); rms_norm 1e-4 and silu_mul 1e-5 relative as in elementwise_cuda_test.
#include <algorithm>
#include <limits>
#include <numeric>

#include "cuda_test_util.h"
#include "tessera/core/half.h"

namespace tessera::ops::test {
namespace {

class CudaOpsTest : public SeededTest {};

TEST_F(CudaOpsTest, EmbeddingMatchesReferenceForFloatTables) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  struct Shape {
    int vocab, dim, ids;
  };
  for (const Shape s : {Shape{1000, 64, 1}, Shape{37, 4099, 19}, Shape{32000, 576, 300}}) {
    for (DType type : {DType::kF32, DType::kF16, DType::kBF16}) {
      SCOPED_TRACE(std::string(dtype_name(type)) + " vocab=" + std::to_string(s.vocab) +
                   " dim=" + std::to_string(s.dim));
      Tensor table = Tensor::empty({s.vocab, s.dim}, type);
      const auto vals = normal_vec(static_cast<size_t>(s.vocab) * s.dim);
      for (size_t i = 0; i < vals.size(); ++i) {
        if (type == DType::kF32) table.data_as<float>()[i] = vals[i];
        if (type == DType::kF16) table.data_as<uint16_t>()[i] = f32_to_fp16(vals[i]);
        if (type == DType::kBF16) table.data_as<uint16_t>()[i] = f32_to_bf16(vals[i]);
      }
      std::vector<int32_t> ids(static_cast<size_t>(s.ids));
      for (auto& id : ids) id = randint(0, s.vocab - 1);
      ids[0] = s.vocab - 1;  // last row: catches off-by-one row addressing
      Tensor expect = Tensor::empty({s.ids, s.dim}, DType::kF32);
      ref::embedding(table, ids, expect);
      Tensor dtable = to_device(table);
      Tensor dout = to_device(Tensor::zeros({s.ids, s.dim}, DType::kF32));
      ops::embedding(dtable, ids, dout);
      Tensor got = to_host(dout);
      for (int64_t i = 0; i < expect.numel(); ++i)
        ASSERT_EQ(got.data_as<float>()[i], expect.data_as<float>()[i]) << i;
    }
  }
}

TEST_F(CudaOpsTest, RopeMatchesReference) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  struct Case {
    int tokens, heads, head_dim, rotary_dim;
    RopeStyle style;
    bool llama3;
  };
  const Case cases[] = {
      {1, 32, 128, 0, RopeStyle::kInterleaved, false},  // one decode token
      {7, 8, 64, 0, RopeStyle::kNeox, false},
      {130, 4, 128, 64, RopeStyle::kNeox, false},  // partial rotary (rest left alone)
      {33, 6, 80, 32, RopeStyle::kInterleaved, false},
      {65, 8, 128, 0, RopeStyle::kNeox, true},  // Llama-3 scaled frequencies
      {17, 3, 64, 0, RopeStyle::kInterleaved, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("tokens=" + std::to_string(c.tokens) + " heads=" + std::to_string(c.heads) +
                 " hd=" + std::to_string(c.head_dim) + " rot=" + std::to_string(c.rotary_dim) +
                 (c.style == RopeStyle::kNeox ? " neox" : " interleaved") +
                 (c.llama3 ? " llama3" : ""));
    RopeParams p;
    p.head_dim = c.head_dim;
    p.rotary_dim = c.rotary_dim;
    p.theta = c.llama3 ? 500000.0f : 10000.0f;
    p.style = c.style;
    if (c.llama3) p.llama3_factor = 8.0f;
    std::vector<int32_t> pos(static_cast<size_t>(c.tokens));
    for (auto& x : pos) x = randint(0, 16384);
    pos[0] = 0;
    Tensor x = random_f32({c.tokens, c.heads * c.head_dim});
    Tensor expect = clone(x);
    ref::rope(expect, c.heads, pos, p);
    Tensor dx = to_device(x);
    ops::rope(dx, c.heads, pos, p);
    Tensor got = to_host(dx);
    for (int64_t i = 0; i < x.numel(); ++i) {
      const float e = expect.data_as<float>()[i];
      ASSERT_NEAR(got.data_as<float>()[i], e, 2e-5f + 2e-5f * std::abs(e)) << i;
    }
  }
}

TEST_F(CudaOpsTest, KvAppendWritesExactlyTheGivenSlots) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  struct Case {
    int blocks, block_size, kv_heads, head_dim, tokens;
  };
  for (const Case c : {Case{8, 16, 2, 64, 1}, Case{20, 16, 8, 128, 77}, Case{5, 32, 1, 80, 160}}) {
    SCOPED_TRACE("tokens=" + std::to_string(c.tokens) +
                 " width=" + std::to_string(c.kv_heads * c.head_dim));
    const int width = c.kv_heads * c.head_dim;
    std::vector<int32_t> all(static_cast<size_t>(c.blocks * c.block_size));
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng());
    const std::vector<int32_t> slots(all.begin(), all.begin() + c.tokens);  // scattered, distinct
    // Caches start random so that untouched slots are checked to stay untouched.
    Tensor kc = random_f32({c.blocks, c.block_size, c.kv_heads, c.head_dim});
    Tensor vc = random_f32({c.blocks, c.block_size, c.kv_heads, c.head_dim});
    Tensor k = random_f32({c.tokens, width}), v = random_f32({c.tokens, width});
    Tensor dkc = to_device(kc), dvc = to_device(vc);
    // Inputs stay alive (named) until to_host has synchronised.
    Tensor dk = to_device(k), dv = to_device(v);
    ops::kv_append(dk, dv, slots, dkc, dvc);
    ref::kv_append(k, v, slots, kc, vc);
    Tensor gk = to_host(dkc), gv = to_host(dvc);
    for (int64_t i = 0; i < kc.numel(); ++i) {
      ASSERT_EQ(gk.data_as<float>()[i], kc.data_as<float>()[i]) << "k " << i;
      ASSERT_EQ(gv.data_as<float>()[i], vc.data_as<float>()[i]) << "v " << i;
    }
  }
}

TEST_F(CudaOpsTest, ArgmaxMatchesReferenceIncludingTies) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  struct Case {
    int rows, cols;
  };
  for (const Case c : {Case{1, 1}, Case{5, 7}, Case{33, 32000}, Case{3, 128256}, Case{70000, 3}}) {
    SCOPED_TRACE("rows=" + std::to_string(c.rows) + " cols=" + std::to_string(c.cols));
    Tensor logits = random_f32({c.rows, c.cols});
    float* l = logits.data_as<float>();
    if (c.cols > 2) {
      // Row 0: a tie for the maximum at two random places (the first must win); last row: all
      // equal (index 0 must win).
      const int a = randint(0, c.cols - 1), b = randint(0, c.cols - 1);
      l[a] = l[b] = 100.0f;
      for (int i = 0; i < c.cols; ++i) l[static_cast<int64_t>(c.rows - 1) * c.cols + i] = -3.5f;
      if (c.rows > 2) {  // row 1: all -inf
        for (int i = 0; i < c.cols; ++i) l[c.cols + i] = -std::numeric_limits<float>::infinity();
      }
    }
    const std::vector<int32_t> expect = ref::argmax(logits);
    const std::vector<int32_t> got = ops::argmax(to_device(logits));
    ASSERT_EQ(got, expect);
  }
}

TEST_F(CudaOpsTest, RmsNormAndSiluMulDispatchMatchReference) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  for (const int rows : {1, 37}) {
    for (const int cols : {64, 4099}) {
      SCOPED_TRACE("rows=" + std::to_string(rows) + " cols=" + std::to_string(cols));
      Tensor x = random_f32({rows, cols}), w = random_f32({cols});
      Tensor expect = Tensor::empty({rows, cols}, DType::kF32);
      ref::rms_norm(x, w, 1e-5f, expect);
      Tensor dout = to_device(Tensor::zeros({rows, cols}, DType::kF32));
      Tensor dx = to_device(x), dw = to_device(w);
      ops::rms_norm(dx, dw, 1e-5f, dout);
      Tensor got = to_host(dout);
      for (int64_t i = 0; i < x.numel(); ++i) {
        const float e = expect.data_as<float>()[i];
        ASSERT_NEAR(got.data_as<float>()[i], e, 1e-4f * (1 + std::abs(e))) << i;
      }
      Tensor g = random_f32({rows, cols}), u = random_f32({rows, cols});
      ref::silu_mul(g, u, expect);
      Tensor dg = to_device(g), du = to_device(u);
      ops::silu_mul(dg, du, dout);
      got = to_host(dout);
      for (int64_t i = 0; i < x.numel(); ++i) {
        const float e = expect.data_as<float>()[i];
        ASSERT_NEAR(got.data_as<float>()[i], e, 1e-5f + 1e-5f * std::abs(e)) << i;
      }
    }
  }
}

// Bad calls on CUDA tensors fail like CPU ones, before any kernel runs.
TEST_F(CudaOpsTest, DispatchRejectsBadCudaCalls) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  auto code_of = [](auto&& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return static_cast<int>(e.code());
    }
    return -1;
  };
  Tensor dtable = to_device(random_f32({10, 8}));
  Tensor dout = to_device(Tensor::zeros({2, 8}, DType::kF32));
  Tensor hout = Tensor::zeros({2, 8}, DType::kF32);
  const std::vector<int32_t> bad_ids = {1, 10}, ids = {1, 2};
  EXPECT_EQ(code_of([&] { ops::embedding(dtable, bad_ids, dout); }),
            static_cast<int>(ErrorCode::kOutOfRange));
  EXPECT_EQ(code_of([&] { ops::embedding(dtable, ids, hout); }),  // mixed devices
            static_cast<int>(ErrorCode::kInvalidArgument));
  EXPECT_EQ(code_of([&] { ops::add(dout, dout); }),  // no CUDA add yet
            static_cast<int>(ErrorCode::kUnsupported));
  Tensor dq = to_device(random_f32({2, 8})), dkc = to_device(random_f32({4, 4, 1, 8}));
  const std::vector<int32_t> qs = {0, 2}, ctx = {2}, bad_table = {4};  // block id out of range
  EXPECT_EQ(code_of([&] {
              ops::paged_attention(dq, dkc, dkc, {qs, ctx, bad_table, 1}, {1, 1, 8, 4, 1.0f}, dout);
            }),
            static_cast<int>(ErrorCode::kOutOfRange));
}

}  // namespace
}  // namespace tessera::ops::test
