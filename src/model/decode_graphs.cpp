// Decode graphs (decode_graphs.h): bucket choice, padding, recording and replay.
#include "tessera/model/decode_graphs.h"

#include <algorithm>
#include <cstring>

#include "llama_rows.h"
#include "tessera/core/error.h"

namespace tessera::model {

std::vector<int> default_decode_buckets(int max_batch) {
  std::vector<int> b;
  for (int n = 1; n <= std::max(1, max_batch); n = n < 8 ? n * 2 : n < 64 ? n + 8 : n + 32)
    b.push_back(n);
  return b;
}

int decode_bucket(std::span<const int> buckets, int n) {
  for (int b : buckets)
    if (b >= n) return b;
  return 0;
}

bool is_plain_decode(const ForwardBatch& b, int max_blocks) {
  const size_t n = b.tokens.size();
  if (n == 0 || b.context_lens.size() != n || b.query_start.size() != n + 1 ||
      b.logit_rows.size() != n || b.max_blocks_per_seq > max_blocks || !b.expert_tokens.empty() ||
      b.block_tables.size() < n * static_cast<size_t>(b.max_blocks_per_seq))
    return false;
  for (size_t i = 0; i <= n; ++i)
    if (b.query_start[i] != static_cast<int32_t>(i)) return false;
  for (size_t i = 0; i < n; ++i)
    if (b.logit_rows[i] != static_cast<int32_t>(i)) return false;
  return true;
}

void pad_decode_step(const ForwardBatch& b, int bucket, int max_blocks, std::vector<int32_t>& out) {
  const auto B = static_cast<size_t>(bucket), M = static_cast<size_t>(max_blocks);
  const size_t n = b.tokens.size();
  if (n > B || b.max_blocks_per_seq > max_blocks)
    fail(ErrorCode::kInternal, "decode graph: a step of ", n, " rows and tables of ",
         b.max_blocks_per_seq, " blocks padded to ", B, " x ", M);
  out.assign(B * 6 + 1 + B * M, 0);  // tokens, positions, slots, query_start, ctx, tables, rows
  int32_t* tokens = out.data();
  int32_t* positions = tokens + B;
  int32_t* slots = positions + B;
  int32_t* query_start = slots + B;
  int32_t* context = query_start + B + 1;
  int32_t* tables = context + B;
  int32_t* rows = tables + B * M;
  const auto W = static_cast<size_t>(b.max_blocks_per_seq);
  for (size_t i = 0; i < B; ++i) {
    const bool real = i < n;
    tokens[i] = real ? b.tokens[i] : 0;
    positions[i] = real ? b.positions[i] : 0;
    slots[i] = real ? b.slots[i] : -1;          // padding caches nothing
    context[i] = real ? b.context_lens[i] : 1;  // and reads one token of block 0
    query_start[i + 1] = static_cast<int32_t>(i + 1);
    rows[i] = static_cast<int32_t>(i);
    if (real && W > 0) std::memcpy(tables + i * M, b.block_tables.data() + i * W, W * 4);
  }
}

DecodeGraphParams decode_graph_params(const LlamaModel& model, const kv_cache::KvPoolParams& kp,
                                      int max_batch) {
  const int max_pos = model.config().max_position;
  const int blocks = max_pos > 0
                         ? std::min(kp.num_blocks, (max_pos + kp.block_size - 1) / kp.block_size)
                         : kp.num_blocks;
  return {.buckets = default_decode_buckets(max_batch), .max_blocks_per_seq = blocks};
}

struct DecodeGraphs::Graph {
  int bucket = 0;
  std::vector<int32_t> host;  // the padded arrays of the step being replayed
  Tensor staged;              // `host` as a host tensor (borrowed), for the upload
  Tensor packed;              // the device buffer the graph reads
  ForwardBatch batch;         // spans over `host`, the shapes the graph was recorded with
  detail::StepMeta views;     // views of `packed`
  Tensor logits;              // [bucket, vocab]: written by every replay
  std::unique_ptr<ops::DeviceGraph> graph;
};

DecodeGraphs::DecodeGraphs(const LlamaModel& model, kv_cache::KvPool& kv, DecodeGraphParams p)
    : model_(model), kv_(kv), p_(std::move(p)) {
  if (!model_.graphable())
    fail(ErrorCode::kInvalidArgument,
         "decode graphs need the whole model on one rank (no pipeline, tensor or expert "
         "parallelism, no MoE)");
  if (p_.max_blocks_per_seq < 1 || p_.buckets.empty() ||
      !std::is_sorted(p_.buckets.begin(), p_.buckets.end()) || p_.buckets.front() < 1)
    fail(ErrorCode::kInvalidArgument, "decode graphs: buckets must ascend from >= 1 and tables ",
         "hold >= 1 block (", p_.max_blocks_per_seq, ")");
  const int M = p_.max_blocks_per_seq;
  for (int bucket : p_.buckets) {
    auto g = std::make_unique<Graph>();
    g->bucket = bucket;
    const ForwardBatch none{};
    pad_decode_step(none, bucket, M, g->host);  // every row padding: the recording caches nothing
    const auto B = static_cast<size_t>(bucket);
    const std::span<const int32_t> all(g->host);
    g->batch = ForwardBatch{.tokens = all.subspan(0, B),
                            .positions = all.subspan(B, B),
                            .slots = all.subspan(2 * B, B),
                            .query_start = all.subspan(3 * B, B + 1),
                            .context_lens = all.subspan(4 * B + 1, B),
                            .block_tables = all.subspan(5 * B + 1, B * static_cast<size_t>(M)),
                            .max_blocks_per_seq = M,
                            .logit_rows = all.subspan(5 * B + 1 + B * static_cast<size_t>(M), B)};
    g->staged = Tensor::from_storage(
        Storage::borrow(g->host.data(), g->host.size() * sizeof(int32_t), nullptr, Device::cpu()),
        0, {static_cast<int64_t>(g->host.size())}, DType::kI32);
    g->packed = Tensor::empty(g->staged.shape(), DType::kI32, model_.allocator());
    copy(g->packed, g->staged);
    g->views = detail::step_views(g->packed, g->batch);
    Graph* raw = g.get();
    g->graph = std::make_unique<ops::DeviceGraph>(model_.allocator(), [this, raw] {
      raw->logits = model_.forward_packed(raw->batch, raw->views, kv_);
    });
    graphs_.push_back(std::move(g));
  }
}

DecodeGraphs::~DecodeGraphs() = default;

bool DecodeGraphs::records() const {
  return !graphs_.empty() && graphs_.front()->graph->recorded();
}

Tensor DecodeGraphs::forward(const ForwardBatch& b) {
  if (!is_plain_decode(b, p_.max_blocks_per_seq)) return Tensor();
  const int n = static_cast<int>(b.tokens.size());
  const int bucket = decode_bucket(p_.buckets, n);
  if (bucket == 0) return Tensor();
  model_.check_step(b, kv_);
  Graph& g = *graphs_[static_cast<size_t>(std::find(p_.buckets.begin(), p_.buckets.end(), bucket) -
                                          p_.buckets.begin())];
  pad_decode_step(b, bucket, p_.max_blocks_per_seq, g.host);  // same size: the spans stay valid
  copy(g.packed, g.staged);  // in stream order, before the replay reads it
  g.graph->replay();
  ++replays_;
  return g.logits.slice(0, n);
}

}  // namespace tessera::model
