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

LlamaModel::LlamaModel(const WeightSource& w, const ShardSpec& shard, comm::Communicator* tp)
    : config_(w.config()), shard_(shard), comm_(tp) {
  const auto& c = config_;
  if (shard_.num_layers < 0) shard_.num_layers = c.num_layers - shard_.first_layer;
  if (shard_.first_layer < 0 || shard_.num_layers < 1 ||
      shard_.first_layer + shard_.num_layers > c.num_layers)
    fail(ErrorCode::kInvalidArgument, "stage layers [", shard_.first_layer, ", ",
         shard_.first_layer + shard_.num_layers, ") outside the model's ", c.num_layers);
  if (shard_.tp_size > 1 &&
      (!comm_ || comm_->size() != shard_.tp_size || comm_->rank() != shard_.tp_rank))
    fail(ErrorCode::kInvalidArgument, "tensor-parallel rank ", shard_.tp_rank, " of ",
         shard_.tp_size, " needs a communicator of that size and rank");
  tp_ = model::tp_layout(c, shard_.tp_rank, shard_.tp_size);
  const bool split = shard_.tp_size > 1;
  const int64_t hd = c.head_dim;
  auto get = [&](const std::string& name, const Shape& shape) {
    Tensor t = w.get(name);
    expect_shape(name, t, shape);
    return t;
  };
  // Rows of an [out, in] weight: a view; columns: a copy (see shard.h).
  auto rows = [&](const Tensor& t, int64_t b, int64_t n) {
    return split ? shard_rows(t, b, b + n) : t;
  };
  auto bias = [&](const Tensor& t, int64_t b, int64_t n) {
    return split ? as_f32(t).slice(b, b + n) : as_f32(t);
  };
  auto cols = [&](const std::string& name, const Tensor& t, int64_t b, int64_t n) {
    return split ? shard_cols(t, b, b + n, name) : t;
  };
  const int64_t q0 = tp_.first_head * hd, qn = tp_.heads * hd;
  const int64_t k0 = tp_.first_kv_head * hd, kn = tp_.kv_heads * hd;
  if (shard_.first_stage() || (last_stage() && c.tied_embeddings)) {
    token_embd_ =
        rows(get("token_embd.weight", {c.vocab_size, c.hidden_size}), tp_.first_vocab, tp_.vocab);
  }
  if (last_stage()) {
    output_norm_ = as_f32(get("output_norm.weight", {c.hidden_size}));
    output_ = c.tied_embeddings ? token_embd_
                                : rows(get("output.weight", {c.vocab_size, c.hidden_size}),
                                       tp_.first_vocab, tp_.vocab);
  }
  for (int l = shard_.first_layer; l < shard_.first_layer + shard_.num_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    Layer L;
    L.attn_norm = as_f32(get(p + "attn_norm.weight", {c.hidden_size}));
    L.wq = rows(get(p + "attn_q.weight", {c.q_dim(), c.hidden_size}), q0, qn);
    L.wk = rows(get(p + "attn_k.weight", {c.kv_dim(), c.hidden_size}), k0, kn);
    L.wv = rows(get(p + "attn_v.weight", {c.kv_dim(), c.hidden_size}), k0, kn);
    L.wo = cols(p + "attn_output.weight", get(p + "attn_output.weight", {c.hidden_size, c.q_dim()}),
                q0, qn);
    if (c.qkv_bias) {
      L.bq = bias(get(p + "attn_q.bias", {c.q_dim()}), q0, qn);
      L.bk = bias(get(p + "attn_k.bias", {c.kv_dim()}), k0, kn);
      L.bv = bias(get(p + "attn_v.bias", {c.kv_dim()}), k0, kn);
    }
    L.ffn_norm = as_f32(get(p + "ffn_norm.weight", {c.hidden_size}));
    L.w_gate = rows(get(p + "ffn_gate.weight", {c.intermediate_size, c.hidden_size}), tp_.first_ffn,
                    tp_.ffn);
    L.w_up = rows(get(p + "ffn_up.weight", {c.intermediate_size, c.hidden_size}), tp_.first_ffn,
                  tp_.ffn);
    L.w_down = cols(p + "ffn_down.weight",
                    get(p + "ffn_down.weight", {c.hidden_size, c.intermediate_size}), tp_.first_ffn,
                    tp_.ffn);
    layers_.push_back(std::move(L));
  }
}

kv_cache::KvPoolParams LlamaModel::kv_shape(int block_size) const {
  return {.num_layers = shard_.num_layers,
          .num_blocks = 0,
          .block_size = block_size,
          .num_kv_heads = tp_.kv_heads,
          .head_dim = config_.head_dim};
}

size_t LlamaModel::weight_bytes() const {
  size_t b = 0;
  for (const Tensor* t : {&output_norm_, &output_})
    if (t->defined()) b += t->nbytes();
  for (const auto& L : layers_)
    for (const Tensor* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.bq, &L.bk, &L.bv,
                            &L.ffn_norm, &L.w_gate, &L.w_up, &L.w_down})
      if (t->defined()) b += t->nbytes();
  return b;
}

void LlamaModel::embed(std::span<const int32_t> tokens, Tensor& hidden) const {
  if (shard_.tp_size == 1) {
    ops::embedding(token_embd_, tokens, hidden);
    return;
  }
  // Vocabulary-parallel: each rank fills the rows of the tokens in its shard, the rest stay zero,
  // and the all-reduce assembles the full embedding (exactly: every row has one contributor).
  const int64_t H = config_.hidden_size;
  std::vector<int32_t> local_ids, where;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int64_t id = tokens[i] - tp_.first_vocab;
    if (id >= 0 && id < tp_.vocab) {
      local_ids.push_back(static_cast<int32_t>(id));
      where.push_back(static_cast<int32_t>(i));
    }
  }
  std::memset(hidden.data(), 0, hidden.nbytes());
  if (!local_ids.empty()) {
    Tensor mine = Tensor::empty({static_cast<int64_t>(local_ids.size()), H}, DType::kF32);
    ops::embedding(token_embd_, local_ids, mine);
    for (size_t j = 0; j < where.size(); ++j)
      std::memcpy(hidden.data_as<float>() + where[j] * H,
                  mine.data_as<float>() + static_cast<int64_t>(j) * H,
                  sizeof(float) * static_cast<size_t>(H));
  }
  comm_->all_reduce_sum(hidden);
}

Tensor LlamaModel::lm_head(const Tensor& last) const {
  const int64_t R = last.dim(0), V = config_.vocab_size;
  if (shard_.tp_size == 1) {
    Tensor logits = Tensor::empty({R, V}, DType::kF32);
    ops::matmul(last, output_, Tensor(), logits);
    return logits;
  }
  // Vocabulary-parallel: each rank computes its padded slice, all-gather assembles [T, R, Vp].
  const int64_t Vp = tp_.vocab_per_rank, T = shard_.tp_size;
  Tensor part = Tensor::zeros({R, Vp}, DType::kF32);
  if (tp_.vocab > 0) {
    Tensor mine = Tensor::empty({R, tp_.vocab}, DType::kF32);
    ops::matmul(last, output_, Tensor(), mine);
    for (int64_t i = 0; i < R; ++i)
      std::memcpy(part.data_as<float>() + i * Vp, mine.data_as<float>() + i * tp_.vocab,
                  sizeof(float) * static_cast<size_t>(tp_.vocab));
  }
  Tensor all = Tensor::empty({T * R, Vp}, DType::kF32);
  comm_->all_gather(part, all);
  Tensor logits = Tensor::empty({R, V}, DType::kF32);
  for (int64_t r = 0; r < T; ++r) {
    const int64_t v0 = r * Vp, n = std::min(Vp, V - v0);
    if (n <= 0) break;
    for (int64_t i = 0; i < R; ++i)
      std::memcpy(logits.data_as<float>() + i * V + v0, all.data_as<float>() + (r * R + i) * Vp,
                  sizeof(float) * static_cast<size_t>(n));
  }
  return logits;
}

Tensor LlamaModel::forward(const ForwardBatch& b, kv_cache::KvPool& kv,
                           const Tensor* hidden_in) const {
  const auto& c = config_;
  const int64_t T = static_cast<int64_t>(b.tokens.size());
  if (T == 0) fail(ErrorCode::kInvalidArgument, "forward: empty batch");
  if (b.positions.size() != b.tokens.size() || b.slots.size() != b.tokens.size())
    fail(ErrorCode::kInvalidArgument, "forward: ", T, " tokens but ", b.positions.size(),
         " positions and ", b.slots.size(), " slots");
  for (int32_t id : b.tokens)
    if (id < 0 || id >= c.vocab_size)
      fail(ErrorCode::kOutOfRange, "token id ", id, " outside the vocabulary of ", c.vocab_size);
  if (kv.params().num_layers != shard_.num_layers || kv.params().num_kv_heads != tp_.kv_heads)
    fail(ErrorCode::kInvalidArgument, "forward: KV pool of ", kv.params().num_layers, " layers x ",
         kv.params().num_kv_heads, " heads for a shard of ", shard_.num_layers, " x ",
         tp_.kv_heads);

  const auto& kp = kv.params();
  const ops::AttentionParams attn{.num_heads = tp_.heads,
                                  .num_kv_heads = tp_.kv_heads,
                                  .head_dim = c.head_dim,
                                  .block_size = kp.block_size,
                                  .scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim))};
  const ops::AttentionBatch attn_batch{.query_start = b.query_start,
                                       .context_lens = b.context_lens,
                                       .block_tables = b.block_tables,
                                       .max_blocks_per_seq = b.max_blocks_per_seq};
  const int64_t qd = int64_t{tp_.heads} * c.head_dim, kd = int64_t{tp_.kv_heads} * c.head_dim;

  // Activations, named as in the paper so they can be dumped when debugging.
  Tensor hidden = Tensor::empty({T, c.hidden_size}, DType::kF32);  // residual stream
  Tensor normed = Tensor::empty({T, c.hidden_size}, DType::kF32);
  Tensor q = Tensor::empty({T, qd}, DType::kF32);
  Tensor k = Tensor::empty({T, kd}, DType::kF32);
  Tensor v = Tensor::empty({T, kd}, DType::kF32);
  Tensor attn_out = Tensor::empty({T, qd}, DType::kF32);
  Tensor proj = Tensor::empty({T, c.hidden_size}, DType::kF32);
  Tensor gate = Tensor::empty({T, tp_.ffn}, DType::kF32);
  Tensor up = Tensor::empty({T, tp_.ffn}, DType::kF32);

  if (shard_.first_stage()) {
    embed(b.tokens, hidden);
  } else {
    if (!hidden_in || hidden_in->shape() != hidden.shape())
      fail(ErrorCode::kInvalidArgument, "stage ", shard_.stage, " needs hidden states [", T, ", ",
           c.hidden_size, "] from the previous stage, got ",
           hidden_in ? hidden_in->str() : std::string("none"));
    std::memcpy(hidden.data(), hidden_in->data(), hidden.nbytes());
  }
  auto reduce = [&](Tensor& t) {
    if (shard_.tp_size > 1) comm_->all_reduce_sum(t);
  };
  for (int l = 0; l < shard_.num_layers; ++l) {
    const Layer& L = layers_[static_cast<size_t>(l)];
    ops::rms_norm(hidden, L.attn_norm, c.rms_eps, normed);
    ops::matmul(normed, L.wq, L.bq, q);
    ops::matmul(normed, L.wk, L.bk, k);
    ops::matmul(normed, L.wv, L.bv, v);
    ops::rope(q, tp_.heads, b.positions, c.rope);
    ops::rope(k, tp_.kv_heads, b.positions, c.rope);
    ops::kv_append(k, v, b.slots, kv.k(l), kv.v(l));
    ops::paged_attention(q, kv.k(l), kv.v(l), attn_batch, attn, attn_out);
    ops::matmul(attn_out, L.wo, Tensor(), proj);
    reduce(proj);
    ops::add(hidden, proj);

    ops::rms_norm(hidden, L.ffn_norm, c.rms_eps, normed);
    ops::matmul(normed, L.w_gate, Tensor(), gate);
    ops::matmul(normed, L.w_up, Tensor(), up);
    ops::silu_mul(gate, up, gate);
    ops::matmul(gate, L.w_down, Tensor(), proj);
    reduce(proj);
    ops::add(hidden, proj);
  }
  if (!last_stage()) return hidden;

  // Only the wanted rows go through the final norm and the LM head.
  const int64_t R = static_cast<int64_t>(b.logit_rows.size());
  if (R == 0) return Tensor::empty({0, c.vocab_size}, DType::kF32);
  Tensor last = Tensor::empty({R, c.hidden_size}, DType::kF32);
  for (int64_t i = 0; i < R; ++i) {
    const int32_t row = b.logit_rows[static_cast<size_t>(i)];
    if (row < 0 || row >= T)
      fail(ErrorCode::kOutOfRange, "logit row ", row, " outside batch of ", T);
    std::memcpy(last.data_as<float>() + i * c.hidden_size,
                hidden.data_as<float>() + row * c.hidden_size,
                sizeof(float) * static_cast<size_t>(c.hidden_size));
  }
  ops::rms_norm(last, output_norm_, c.rms_eps, last);
  return lm_head(last);
}

}  // namespace tessera::model
