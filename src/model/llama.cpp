#include "tessera/model/llama.h"

#include <array>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "llama_rows.h"
#include "tessera/core/error.h"
#include "tessera/core/half.h"
#include "tessera/ops/backend.h"
#include "tessera/ops/ops.h"

namespace tessera::model {
namespace {

// Norm weights and biases are small; keep them F32 whatever the file stores (converted on the
// host from the file's bytes, before the upload).
Tensor as_f32(const Tensor& t) {
  if (t.dtype() == DType::kF32) return t;
  Tensor out = Tensor::empty(t.shape(), DType::kF32);
  const int64_t last = t.dim(-1);
  for (int64_t r = 0; r < t.numel() / last; ++r)
    ops::cpu::dequantize_row(t.dtype(), t.row_ptr(r), out.data_as<float>() + r * last, last);
  return out;
}

void expect_shape(const std::string& name, const Tensor& t, const Shape& shape) {
  if (t.shape() != shape)
    fail(ErrorCode::kInvalidArgument, "weight ", name, " has shape ", shape_str(t.shape()),
         ", expected ", shape_str(shape));
}

void check_sizes(const ForwardBatch& b) {
  if (b.tokens.empty()) fail(ErrorCode::kInvalidArgument, "forward: empty batch");
  if (b.positions.size() != b.tokens.size() || b.slots.size() != b.tokens.size())
    fail(ErrorCode::kInvalidArgument, "forward: ", b.tokens.size(), " tokens but ",
         b.positions.size(), " positions and ", b.slots.size(), " slots");
}

// Device ops cannot report a bad index (a CUDA kernel would write out of bounds), so every index
// value of a step is checked here, on the host, before the upload.
void check_step_values(const ForwardBatch& b, const kv_cache::KvPoolParams& kp, int64_t vocab) {
  const auto T = static_cast<int64_t>(b.tokens.size());
  const auto S = static_cast<int64_t>(b.context_lens.size());
  for (int32_t id : b.tokens)
    if (id < 0 || id >= vocab)
      fail(ErrorCode::kOutOfRange, "token id ", id, " outside the vocabulary of ", vocab);
  const int64_t capacity = int64_t{kp.num_blocks} * kp.block_size;
  for (size_t i = 0; i < b.slots.size(); ++i)
    if (b.slots[i] < 0 || b.slots[i] >= capacity || b.positions[i] < 0)
      fail(ErrorCode::kOutOfRange, "forward: token ", i, " has slot ", b.slots[i], " (cache of ",
           capacity, ") and position ", b.positions[i]);
  if (static_cast<int64_t>(b.query_start.size()) != S + 1 || b.query_start.front() != 0 ||
      b.query_start.back() != T || b.max_blocks_per_seq < 0 ||
      static_cast<int64_t>(b.block_tables.size()) < S * b.max_blocks_per_seq)
    fail(ErrorCode::kInvalidArgument, "forward: batch arrays do not describe ", S, " sequences of ",
         T, " tokens");
  for (int64_t s = 0; s < S; ++s) {
    const int64_t q_len = b.query_start[s + 1] - b.query_start[s], ctx = b.context_lens[s];
    const int64_t blocks = (ctx + kp.block_size - 1) / kp.block_size;
    if (q_len < 0 || q_len > ctx || blocks > b.max_blocks_per_seq)
      fail(ErrorCode::kInvalidArgument, "forward: sequence ", s, " has ", q_len,
           " query rows, context ", ctx, ", table of ", b.max_blocks_per_seq);
    for (int64_t i = 0; i < blocks; ++i) {
      const int32_t id = b.block_tables[static_cast<size_t>(s * b.max_blocks_per_seq + i)];
      if (id < 0 || id >= kp.num_blocks)
        fail(ErrorCode::kOutOfRange, "forward: block id ", id, " of sequence ", s,
             " outside the KV pool of ", kp.num_blocks);
    }
  }
  for (int32_t row : b.logit_rows)
    if (row < 0 || row >= T)
      fail(ErrorCode::kOutOfRange, "logit row ", row, " outside batch of ", T);
}

}  // namespace

namespace detail {

StepMeta pack_step(const ForwardBatch& b, const std::shared_ptr<Allocator>& alloc) {
  const std::span<const int32_t> parts[] = {
      b.tokens, b.positions, b.slots, b.query_start, b.context_lens, b.block_tables, b.logit_rows};
  int64_t n = 0;
  for (auto p : parts) n += static_cast<int64_t>(p.size());
  Tensor host = Tensor::empty({n}, DType::kI32);
  int64_t at = 0;
  for (auto p : parts) {
    if (!p.empty()) std::memcpy(host.data_as<int32_t>() + at, p.data(), p.size_bytes());
    at += static_cast<int64_t>(p.size());
  }
  return step_views(to_device(host, alloc), b);
}

StepMeta step_views(const Tensor& packed, const ForwardBatch& b) {
  const std::span<const int32_t> parts[] = {
      b.tokens, b.positions, b.slots, b.query_start, b.context_lens, b.block_tables, b.logit_rows};
  Tensor views[7];
  int64_t at = 0;
  for (size_t i = 0; i < 7; ++i) {
    const auto len = static_cast<int64_t>(parts[i].size());
    views[i] = packed.slice(at, at + len);
    at += len;
  }
  return {views[0], views[1], views[2], views[3], views[4], views[5], views[6]};
}

}  // namespace detail

LlamaModel::LlamaModel(const WeightSource& w, const ShardSpec& shard, comm::Communicator* tp,
                       std::shared_ptr<Allocator> device, comm::Communicator* ep,
                       const ProgressFn& progress)
    : config_(w.config()),
      shard_(shard),
      comm_(tp),
      ep_(ep),
      alloc_(device ? std::move(device) : make_host_cache()) {
  config_.rope = ops::with_inv_freq(config_.rope);  // once, not per rope call
  const auto& c = config_;
  // Pipeline stages split MoE layers like dense ones; the experts are split by expert
  // parallelism (shard_.ep_size: whole experts per rank) and/or tensor parallelism (a slice of
  // every held expert's width per rank; attention split by heads as for a dense model).
  if (shard_.ep_size > 1) {
    if (!c.is_moe())
      fail(ErrorCode::kInvalidArgument, "expert parallelism (expert=", shard_.ep_size,
           ") needs a MoE model; ", c.architecture, " has no experts");
    expert_range(c.num_experts, shard_.ep_rank, shard_.ep_size);  // checks the split
    if (!ep_ || ep_->size() != shard_.ep_size || ep_->rank() != shard_.ep_rank)
      fail(ErrorCode::kInvalidArgument, "expert-parallel rank ", shard_.ep_rank, " of ",
           shard_.ep_size, " needs a communicator of that size and rank");
  }
  if (shard_.num_layers < 0) shard_.num_layers = c.num_layers - shard_.first_layer;
  if (shard_.first_layer < 0 || shard_.num_layers < 1 ||
      shard_.first_layer + shard_.num_layers > c.num_layers)
    fail(ErrorCode::kInvalidArgument, "stage layers [", shard_.first_layer, ", ",
         shard_.first_layer + shard_.num_layers, ") outside the model's ", c.num_layers);
  if (shard_.tp_size > 1 &&
      (!comm_ || comm_->size() != shard_.tp_size || comm_->rank() != shard_.tp_rank))
    fail(ErrorCode::kInvalidArgument, "tensor-parallel rank ", shard_.tp_rank, " of ",
         shard_.tp_size, " needs a communicator of that size and rank");
  if (c.qk_norm_full && shard_.tp_size > 1)
    fail(ErrorCode::kUnsupported, c.architecture, ": tensor parallelism (tensor=", shard_.tp_size,
         ") with an RMSNorm over the whole q and k is not supported; use expert or pipeline "
         "parallelism");
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
    if (c.qk_norm) {
      const int64_t q_width = c.qk_norm_full ? c.q_dim() : c.head_dim;
      const int64_t k_width = c.qk_norm_full ? c.kv_dim() : c.head_dim;
      L.q_norm = as_f32(get(p + "attn_q_norm.weight", {q_width}));
      L.k_norm = as_f32(get(p + "attn_k_norm.weight", {k_width}));
    }
    L.ffn_norm = as_f32(get(p + "ffn_norm.weight", {c.hidden_size}));
    if (c.is_moe()) {
      const auto [first, count] = expert_range(c.num_experts, shard_.ep_rank, shard_.ep_size);
      L.moe =
          MoeLayer::load(w, c, l, {.first = first, .count = count},
                         shard_.ep_rank == 0 || data_parallel_ep(), shard_.tp_rank, shard_.tp_size);
      layers_.push_back(std::move(L));
      continue;
    }
    L.w_gate = rows(get(p + "ffn_gate.weight", {c.intermediate_size, c.hidden_size}), tp_.first_ffn,
                    tp_.ffn);
    L.w_up = rows(get(p + "ffn_up.weight", {c.intermediate_size, c.hidden_size}), tp_.first_ffn,
                  tp_.ffn);
    L.w_down = cols(p + "ffn_down.weight",
                    get(p + "ffn_down.weight", {c.hidden_size, c.intermediate_size}), tp_.first_ffn,
                    tp_.ffn);
    layers_.push_back(std::move(L));
  }
  // Upload (still quantized) to the model's device; to_device keeps CPU tensors as they are, so
  // on the CPU the file's mapping is used in place. Tied embeddings are uploaded once.
  const bool tied = output_.defined() && token_embd_.defined() &&
                    output_.data() == token_embd_.data() && output_.shape() == token_embd_.shape();
  uint64_t total = 0, done = 0;
  auto count = [&](const Tensor& t) {
    if (t.defined()) total += t.nbytes();
  };
  for (const Tensor* t : {&token_embd_, tied ? nullptr : &output_, &output_norm_})
    if (t) count(*t);
  for (auto& L : layers_) {
    for (const Tensor* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.bq, &L.bk, &L.bv,
                            &L.q_norm, &L.k_norm, &L.ffn_norm, &L.w_gate, &L.w_up, &L.w_down})
      count(*t);
    L.moe.each(count);
  }
  auto up = [&](Tensor& t) {
    if (!t.defined()) return;
    t = to_device(t, alloc_);
    done += t.nbytes();
    if (progress) progress(done, total);
  };
  up(token_embd_);
  if (tied) {
    output_ = token_embd_;
  } else {
    up(output_);
  }
  up(output_norm_);
  for (auto& L : layers_) {
    for (Tensor* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.bq, &L.bk, &L.bv, &L.q_norm,
                      &L.k_norm, &L.ffn_norm, &L.w_gate, &L.w_up, &L.w_down})
      up(*t);
    L.moe.each(up);
  }
  // Matmul weights in the layout the device multiplies fastest (the CPU's int8 path: 8 rows
  // interleaved). A tied LM head gets its own packed copy; the embedding keeps the row-major
  // table its lookups read.
  // On the host they come from one arena on huge pages (core/allocator.h says why), sized for
  // them all: a packed weight takes at most 148/144 of its bytes (Q4_Kx8; Q5_Kx8 180/176), plus
  // alignment.
  size_t to_pack = 0;
  auto size = [&](const Tensor& t) {
    if (t.defined()) to_pack += t.nbytes() + t.nbytes() / 32 + 64;
  };
  size(output_);
  for (const auto& L : layers_)
    for (const Tensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) size(*t);
  const std::shared_ptr<Allocator> packed =
      alloc_->device().type == DeviceType::kCPU ? make_host_arena(to_pack) : alloc_;
  auto pack = [&](Tensor& t) { t = ops::pack_weight(t, packed); };
  pack(output_);
  for (auto& L : layers_)
    for (Tensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) pack(*t);
}

void LlamaModel::check_device_support() const {
  const ops::Backend& ops_here = ops::backend_for(device());
  auto need = [&](ops::Op op, DType dtype) {
    if (!ops_here.supports(op, dtype))
      fail(ErrorCode::kUnsupported, "model on ", device().str(), ": op ", ops::op_name(op), " for ",
           dtype_name(dtype), " is not implemented there yet");
  };
  if (token_embd_.defined() && shard_.first_stage())
    need(shard_.tp_size > 1 ? ops::Op::kEmbeddingShard : ops::Op::kEmbedding, token_embd_.dtype());
  for (ops::Op op : {ops::Op::kRmsNorm, ops::Op::kAdd, ops::Op::kRope, ops::Op::kSiluMul,
                     ops::Op::kRopeKvAppend, ops::Op::kPagedAttention, ops::Op::kGatherRows})
    need(op, DType::kF32);
  for (const auto& L : layers_) {
    for (const Tensor* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
      if (w->defined()) need(ops::Op::kMatmul, w->dtype());
    if (!config_.is_moe()) continue;
    need(ops::Op::kMoeRoute, DType::kF32);
    L.moe.each([&](const Tensor& t) {
      if (t.defined() && t.ndim() == 3) need(ops::Op::kMoeExperts, t.dtype());
      if (t.defined() && t.ndim() == 2) need(ops::Op::kMatmul, t.dtype());
    });
  }
  if (output_.defined()) need(ops::Op::kMatmul, output_.dtype());
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
  for (const auto& L : layers_) {
    for (const Tensor* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.bq, &L.bk, &L.bv,
                            &L.q_norm, &L.k_norm, &L.ffn_norm, &L.w_gate, &L.w_up, &L.w_down})
      if (t->defined()) b += t->nbytes();
    L.moe.each([&](const Tensor& t) { b += t.defined() ? t.nbytes() : 0; });
  }
  return b;
}

void LlamaModel::embed(const Tensor& tokens, Tensor& hidden) const {
  if (shard_.tp_size == 1) {
    ops::embedding(token_embd_, tokens, hidden);
    return;
  }
  // Vocabulary-parallel: each rank fills the rows of the tokens in its shard, the rest are zero,
  // and the all-reduce assembles the full embedding (exactly: every row has one contributor).
  ops::embedding_shard(token_embd_, tokens, tp_.first_vocab, hidden);
  comm_->all_reduce_sum(hidden);
}

Tensor LlamaModel::lm_head(const Tensor& last) const {
  const int64_t R = last.dim(0), V = config_.vocab_size;
  // The logits' activations keep a second int8 digit where the backend rounds them (ops.h:
  // MatmulTarget::fine_activations): their argmax is the token, and this is the widest weight.
  const Tensor none;
  const auto logits_of = [&](Tensor& out) {
    const ops::MatmulTarget t{&output_, &none, &out, /*fine_activations=*/true};
    ops::matmul_many(last, {&t, 1});
  };
  if (shard_.tp_size == 1) {
    Tensor logits = act({R, V});
    logits_of(logits);
    return logits;
  }
  // Vocabulary-parallel: each rank computes its padded slice, all-gather assembles [T, R, Vp].
  const int64_t Vp = tp_.vocab_per_rank, T = shard_.tp_size;
  Tensor part = act({R, Vp});  // zero-filled: the padding columns stay zero
  if (tp_.vocab == Vp) {
    logits_of(part);
  } else if (tp_.vocab > 0) {
    Tensor mine = act({R, tp_.vocab});
    logits_of(mine);
    copy(part.cols(0, tp_.vocab), mine);
  }
  Tensor all = act({T * R, Vp});
  comm_->all_gather(part, all);
  Tensor logits = act({R, V});
  for (int64_t r = 0; r < T; ++r) {
    const int64_t v0 = r * Vp, n = std::min(Vp, V - v0);
    if (n <= 0) break;
    copy(logits.cols(v0, v0 + n), all.slice(r * R, (r + 1) * R).cols(0, n));
  }
  return logits;
}

void LlamaModel::alloc_rows(Rows& m, int64_t rows) const {
  const auto& c = config_;
  const int64_t qd = int64_t{tp_.heads} * c.head_dim, kd = int64_t{tp_.kv_heads} * c.head_dim;
  m.normed = act({rows, c.hidden_size});
  m.q = act({rows, qd});
  m.k = act({rows, kd});
  m.v = act({rows, kd});
  m.attn_out = act({rows, qd});
  m.proj = act({rows, c.hidden_size});
  m.gate = act({rows, tp_.ffn});
  m.up = act({rows, tp_.ffn});
}

void LlamaModel::attention_rows(const Layer& L, int l, Rows& m, kv_cache::KvPool& kv,
                                const ops::AttentionParams& ap) const {
  const auto& c = config_;
  // The norm in the projections' input (a GPU's int8 GEMV normalises as it quantizes).
  const ops::MatmulTarget qkv[] = {
      {&L.wq, &L.bq, &m.q}, {&L.wk, &L.bk, &m.k}, {&L.wv, &L.bv, &m.v}};
  if (m.prenormed)
    ops::matmul_many(m.normed, qkv);
  else
    ops::rms_norm_matmul_many(m.hidden, L.attn_norm, c.rms_eps, m.normed, qkv);
  // Each projection's weights are hinted as the previous projection returns: what follows it
  // (rope, attention's bookkeeping, norms, quantization) is serial work other threads idle through.
  const Tensor none;
  ops::prefetch_weights(std::array{ops::MatmulTarget{&L.wo, &none, &m.proj}});
  if (L.q_norm.defined() && c.qk_norm_full) {  // OLMoE: each token's whole q and k, in place
    ops::rms_norm(m.q, L.q_norm, c.rms_eps, m.q);
    ops::rms_norm(m.k, L.k_norm, c.rms_eps, m.k);
  } else if (L.q_norm.defined()) {  // Qwen3: each head of q and k normalised on its own, in place
    const int64_t hd = c.head_dim;
    Tensor q = m.q.view({m.q.numel() / hd, hd}), k = m.k.view({m.k.numel() / hd, hd});
    ops::rms_norm(q, L.q_norm, c.rms_eps, q);
    ops::rms_norm(k, L.k_norm, c.rms_eps, k);
  }
  ops::rope(m.q, tp_.heads, m.positions, c.rope);
  ops::rope_kv_append(m.k, m.v, tp_.kv_heads, m.positions, c.rope, m.slots, kv.k(l), kv.v(l));
  ops::paged_attention(m.q, kv.k(l), kv.v(l), m.attn, ap, m.attn_out);
  if (m.fused_residual)
    ops::matmul_add(m.attn_out, L.wo, none, m.proj, m.hidden);
  else
    ops::matmul(m.attn_out, L.wo, none, m.proj);
  if (L.w_gate.defined())  // the dense MLP's gate and up projections next
    ops::prefetch_weights(std::array{ops::MatmulTarget{&L.w_gate, &none, &m.gate},
                                     ops::MatmulTarget{&L.w_up, &none, &m.up}});
}

void LlamaModel::mlp_rows(const Layer& L, Rows& m) const {
  const Tensor none;
  const ops::MatmulTarget gate_up[] = {{&L.w_gate, &none, &m.gate}, {&L.w_up, &none, &m.up}};
  if (m.prenormed)
    ops::matmul_many(m.normed, gate_up);
  else
    ops::rms_norm_matmul_many(m.hidden, L.ffn_norm, config_.rms_eps, m.normed, gate_up);
  ops::prefetch_weights(std::array{ops::MatmulTarget{&L.w_down, &none, &m.proj}});
  // SiLU x up in the down projection's input; on one rank its result adds into the residual.
  ops::silu_mul_matmul(m.gate, m.up, L.w_down, none, m.proj, m.fused_residual ? m.hidden : m.proj,
                       m.fused_residual);
}

void LlamaModel::moe_rows(const Layer& L, int l, Rows& m, std::span<int64_t> expert_tokens) const {
  const auto& c = config_;
  const auto E = static_cast<size_t>(c.num_experts);
  // Every TP rank routes every token: only the first counts them, so the group reports each
  // routed token once.
  const std::span<int64_t> counts = expert_tokens.empty() || shard_.tp_rank != 0
                                        ? std::span<int64_t>()
                                        : expert_tokens.subspan(static_cast<size_t>(l) * E, E);
  if (data_parallel_ep()) {
    // Each TP rank of the EP group exchanges the same tokens with its peers of the other EP
    // groups and computes its slice of the held experts' width; the TP all-reduce sums them.
    L.moe.forward_dispatch(c, m.normed, m.proj, *ep_, alloc_, counts);
    return;
  }
  L.moe.forward(c, m.normed, m.proj, alloc_, counts);
  // Expert parallelism: each rank has its experts' (and rank 0 the shared expert's) part;
  // tensor parallelism: each rank has a slice of every expert's width.
  if (shard_.ep_size > 1) ep_->all_reduce_sum(m.proj);
}

Tensor LlamaModel::forward(const ForwardBatch& b, kv_cache::KvPool& kv,
                           const Tensor* hidden_in) const {
  if (b.tokens.empty() && data_parallel_ep()) return idle_layers(b.expert_tokens);
  check_step(b, kv);
  return forward_packed(b, detail::pack_step(b, alloc_), kv, hidden_in);
}

void LlamaModel::check_step(const ForwardBatch& b, const kv_cache::KvPool& kv) const {
  check_sizes(b);
  check_step_values(b, kv.params(), config_.vocab_size);
}

Tensor LlamaModel::forward_packed(const ForwardBatch& b, const detail::StepMeta& meta,
                                  kv_cache::KvPool& kv, const Tensor* hidden_in) const {
  const auto& c = config_;
  const int64_t T = static_cast<int64_t>(b.tokens.size());
  check_sizes(b);
  if (kv.params().num_layers != shard_.num_layers || kv.params().num_kv_heads != tp_.kv_heads)
    fail(ErrorCode::kInvalidArgument, "forward: KV pool of ", kv.params().num_layers, " layers x ",
         kv.params().num_kv_heads, " heads for a shard of ", shard_.num_layers, " x ",
         tp_.kv_heads);

  const auto& kp = kv.params();
  if (kv.k(0).device() != device())
    fail(ErrorCode::kInvalidArgument, "forward: KV pool on ", kv.k(0).device().str(),
         " for a model on ", device().str());
  if (meta.tokens.numel() != T ||
      meta.logit_rows.numel() != static_cast<int64_t>(b.logit_rows.size()) ||
      meta.block_tables.numel() != static_cast<int64_t>(b.block_tables.size()) ||
      meta.tokens.device() != device())
    fail(ErrorCode::kInvalidArgument, "forward: the packed arrays (", meta.tokens.numel(),
         " tokens on ", meta.tokens.device().str(), ") do not hold the step's ", T, " tokens");
  if (!b.expert_tokens.empty() &&
      b.expert_tokens.size() != static_cast<size_t>(shard_.num_layers) * c.num_experts)
    fail(ErrorCode::kInvalidArgument, "forward: ", b.expert_tokens.size(), " expert counters for ",
         shard_.num_layers, " layers of ", c.num_experts, " experts");
  const ops::AttentionParams attn{.num_heads = tp_.heads,
                                  .num_kv_heads = tp_.kv_heads,
                                  .head_dim = c.head_dim,
                                  .block_size = kp.block_size,
                                  .scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim))};
  Tensor hidden = act({T, c.hidden_size});  // residual stream
  // Overlap needs two micro-batches whose rows every op computes exactly as in the whole step.
  const int64_t cut = shard_.tp_overlap && shard_.tp_size > 1 && !c.is_moe()
                          ? ops::exact_row_split(device(), T)
                          : 0;
  const bool sequence_parallel = cut == 0 && shard_.sequence_parallel && shard_.tp_size > 1;
  if (shard_.first_stage()) {
    if (!sequence_parallel) embed(meta.tokens, hidden);  // else scattered as it is summed
  } else {
    if (!hidden_in || hidden_in->shape() != hidden.shape())
      fail(ErrorCode::kInvalidArgument, "stage ", shard_.stage, " needs hidden states [", T, ", ",
           c.hidden_size, "] from the previous stage, got ",
           hidden_in ? hidden_in->str() : std::string("none"));
    copy(hidden, *hidden_in);
  }
  if (cut > 0) {
    layers_overlapped(b, cut, hidden, kv, attn);
  } else if (sequence_parallel) {
    layers_sequence_parallel(b, meta, hidden, kv, attn);
  } else {
    // Activations, named as in the paper so they can be dumped when debugging.
    Rows m{.hidden = hidden,
           .positions = meta.positions,
           .slots = meta.slots,
           .attn = {.query_start = meta.query_start,
                    .context_lens = meta.context_lens,
                    .block_tables = meta.block_tables,
                    .max_blocks_per_seq = b.max_blocks_per_seq}};
    alloc_rows(m, T);
    auto reduce = [&](Tensor& t) {
      if (shard_.tp_size > 1) comm_->all_reduce_sum(t);
    };
    for (int l = 0; l < shard_.num_layers; ++l) {
      const Layer& L = layers_[static_cast<size_t>(l)];
      m.fused_residual = shard_.tp_size == 1;
      attention_rows(L, l, m, kv, attn);
      if (!m.fused_residual) {
        reduce(m.proj);
        ops::add(hidden, m.proj);
      }
      if (!c.is_moe()) {
        mlp_rows(L, m);
        if (l + 1 < shard_.num_layers) {  // the next layer's q, k and v projections
          const Layer& N = layers_[static_cast<size_t>(l + 1)];
          const ops::MatmulTarget next[] = {
              {&N.wq, &N.bq, &m.q}, {&N.wk, &N.bk, &m.k}, {&N.wv, &N.bv, &m.v}};
          ops::prefetch_weights(next);
        }
        if (!m.fused_residual) {
          reduce(m.proj);
          ops::add(hidden, m.proj);
        }
        continue;
      }
      ops::rms_norm(hidden, L.ffn_norm, c.rms_eps, m.normed);
      moe_rows(L, l, m, b.expert_tokens);
      reduce(m.proj);
      ops::add(hidden, m.proj);
    }
  }
  if (!last_stage()) return hidden;

  // Only the wanted rows go through the final norm and the LM head.
  const int64_t R = static_cast<int64_t>(b.logit_rows.size());
  if (R == 0) return act({0, c.vocab_size});
  Tensor last = act({R, c.hidden_size});
  ops::gather_rows(hidden, meta.logit_rows, last);
  ops::rms_norm(last, output_norm_, c.rms_eps, last);
  return lm_head(last);
}

// A data-parallel EP rank with no tokens this step: its experts still serve the other ranks'
// tokens in every MoE layer (the same collectives, in the same order, as forward()).
Tensor LlamaModel::idle_layers(std::span<int64_t> expert_tokens) const {
  const auto& c = config_;
  const auto E = static_cast<size_t>(c.num_experts);
  if (!expert_tokens.empty() && expert_tokens.size() != static_cast<size_t>(shard_.num_layers) * E)
    fail(ErrorCode::kInvalidArgument, "forward: ", expert_tokens.size(), " expert counters for ",
         shard_.num_layers, " layers of ", c.num_experts, " experts");
  const Tensor none = act({0, c.hidden_size});
  Tensor out = act({0, c.hidden_size});
  for (int l = 0; l < shard_.num_layers; ++l)
    layers_[static_cast<size_t>(l)].moe.forward_dispatch(
        c, none, out, *ep_, alloc_,
        expert_tokens.empty() || shard_.tp_rank != 0  // TP rank 0 counts for its group
            ? std::span<int64_t>()
            : expert_tokens.subspan(static_cast<size_t>(l) * E, E));
  return last_stage() ? act({0, c.vocab_size}) : out;
}

}  // namespace tessera::model
