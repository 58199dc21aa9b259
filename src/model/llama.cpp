#include "tessera/model/llama.h"

#include <cmath>
#include <cstring>
#include <string>

#include "tessera/core/error.h"
#include "tessera/core/half.h"
#include "tessera/ops/ops.h"

namespace tessera::model {
namespace {

// Norm weights and biases are small; keep them F32 whatever the file stores.
Tensor as_f32(const Tensor& t) {
  if (t.dtype() == DType::kF32) return t;
  Tensor out = Tensor::empty(t.shape(), DType::kF32);
  const int64_t last = t.dim(-1);
  for (int64_t r = 0; r < t.numel() / last; ++r)
    ops::ref::dequantize_row(t.dtype(), t.row_ptr(r), out.data_as<float>() + r * last, last);
  return out;
}

void expect_shape(const std::string& name, const Tensor& t, const Shape& shape) {
  if (t.shape() != shape)
    fail(ErrorCode::kInvalidArgument, "weight ", name, " has shape ", shape_str(t.shape()),
         ", expected ", shape_str(shape));
}

}  // namespace

LlamaModel::LlamaModel(const WeightSource& w) : config_(w.config()) {
  const auto& c = config_;
  auto get = [&](const std::string& name, const Shape& shape) {
    Tensor t = w.get(name);
    expect_shape(name, t, shape);
    return t;
  };
  token_embd_ = get("token_embd.weight", {c.vocab_size, c.hidden_size});
  output_norm_ = as_f32(get("output_norm.weight", {c.hidden_size}));
  output_ = c.tied_embeddings ? token_embd_ : get("output.weight", {c.vocab_size, c.hidden_size});
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    Layer L;
    L.attn_norm = as_f32(get(p + "attn_norm.weight", {c.hidden_size}));
    L.wq = get(p + "attn_q.weight", {c.q_dim(), c.hidden_size});
    L.wk = get(p + "attn_k.weight", {c.kv_dim(), c.hidden_size});
    L.wv = get(p + "attn_v.weight", {c.kv_dim(), c.hidden_size});
    L.wo = get(p + "attn_output.weight", {c.hidden_size, c.q_dim()});
    if (c.qkv_bias) {
      L.bq = as_f32(get(p + "attn_q.bias", {c.q_dim()}));
      L.bk = as_f32(get(p + "attn_k.bias", {c.kv_dim()}));
      L.bv = as_f32(get(p + "attn_v.bias", {c.kv_dim()}));
    }
    L.ffn_norm = as_f32(get(p + "ffn_norm.weight", {c.hidden_size}));
    L.w_gate = get(p + "ffn_gate.weight", {c.intermediate_size, c.hidden_size});
    L.w_up = get(p + "ffn_up.weight", {c.intermediate_size, c.hidden_size});
    L.w_down = get(p + "ffn_down.weight", {c.hidden_size, c.intermediate_size});
    layers_.push_back(std::move(L));
  }
}

size_t LlamaModel::weight_bytes() const {
  size_t b = output_norm_.nbytes() + output_.nbytes();
  for (const auto& L : layers_)
    for (const Tensor* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.bq, &L.bk, &L.bv,
                            &L.ffn_norm, &L.w_gate, &L.w_up, &L.w_down})
      if (t->defined()) b += t->nbytes();
  return b;
}

Tensor LlamaModel::forward(const ForwardBatch& b, kv_cache::KvPool& kv) const {
  const auto& c = config_;
  const int64_t T = static_cast<int64_t>(b.tokens.size());
  if (T == 0) fail(ErrorCode::kInvalidArgument, "forward: empty batch");
  if (b.positions.size() != b.tokens.size() || b.slots.size() != b.tokens.size())
    fail(ErrorCode::kInvalidArgument, "forward: ", T, " tokens but ", b.positions.size(),
         " positions and ", b.slots.size(), " slots");
  for (int32_t id : b.tokens)
    if (id < 0 || id >= c.vocab_size)
      fail(ErrorCode::kOutOfRange, "token id ", id, " outside the vocabulary of ", c.vocab_size);

  const auto& kp = kv.params();
  const ops::AttentionParams attn{.num_heads = c.num_heads,
                                  .num_kv_heads = c.num_kv_heads,
                                  .head_dim = c.head_dim,
                                  .block_size = kp.block_size,
                                  .scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim))};
  const ops::AttentionBatch attn_batch{.query_start = b.query_start,
                                       .context_lens = b.context_lens,
                                       .block_tables = b.block_tables,
                                       .max_blocks_per_seq = b.max_blocks_per_seq};

  // Activations, named as in the paper so they can be dumped when debugging.
  Tensor hidden = Tensor::empty({T, c.hidden_size}, DType::kF32);  // residual stream
  Tensor normed = Tensor::empty({T, c.hidden_size}, DType::kF32);
  Tensor q = Tensor::empty({T, c.q_dim()}, DType::kF32);
  Tensor k = Tensor::empty({T, c.kv_dim()}, DType::kF32);
  Tensor v = Tensor::empty({T, c.kv_dim()}, DType::kF32);
  Tensor attn_out = Tensor::empty({T, c.q_dim()}, DType::kF32);
  Tensor proj = Tensor::empty({T, c.hidden_size}, DType::kF32);
  Tensor gate = Tensor::empty({T, c.intermediate_size}, DType::kF32);
  Tensor up = Tensor::empty({T, c.intermediate_size}, DType::kF32);

  ops::embedding(token_embd_, b.tokens, hidden);
  for (int l = 0; l < c.num_layers; ++l) {
    const Layer& L = layers_[static_cast<size_t>(l)];
    ops::rms_norm(hidden, L.attn_norm, c.rms_eps, normed);
    ops::matmul(normed, L.wq, L.bq, q);
    ops::matmul(normed, L.wk, L.bk, k);
    ops::matmul(normed, L.wv, L.bv, v);
    ops::rope(q, c.num_heads, b.positions, c.rope);
    ops::rope(k, c.num_kv_heads, b.positions, c.rope);
    ops::kv_append(k, v, b.slots, kv.k(l), kv.v(l));
    ops::paged_attention(q, kv.k(l), kv.v(l), attn_batch, attn, attn_out);
    ops::matmul(attn_out, L.wo, Tensor(), proj);
    ops::add(hidden, proj);

    ops::rms_norm(hidden, L.ffn_norm, c.rms_eps, normed);
    ops::matmul(normed, L.w_gate, Tensor(), gate);
    ops::matmul(normed, L.w_up, Tensor(), up);
    ops::silu_mul(gate, up, gate);
    ops::matmul(gate, L.w_down, Tensor(), proj);
    ops::add(hidden, proj);
  }

  // Only the wanted rows go through the final norm and the LM head.
  const int64_t R = static_cast<int64_t>(b.logit_rows.size());
  if (R == 0) return Tensor::empty({0, c.vocab_size}, DType::kF32);
  Tensor last = Tensor::empty({R, c.hidden_size}, DType::kF32);
  for (int64_t i = 0; i < R; ++i) {
    const int32_t row = b.logit_rows[static_cast<size_t>(i)];
    if (row < 0 || row >= T) fail(ErrorCode::kOutOfRange, "logit row ", row, " outside batch of ", T);
    std::memcpy(last.data_as<float>() + i * c.hidden_size, hidden.data_as<float>() + row * c.hidden_size,
                sizeof(float) * static_cast<size_t>(c.hidden_size));
  }
  ops::rms_norm(last, output_norm_, c.rms_eps, last);
  Tensor logits = Tensor::empty({R, c.vocab_size}, DType::kF32);
  ops::matmul(last, output_, Tensor(), logits);
  return logits;
}

}  // namespace tessera::model
