// MoeLayer::forward_dispatch: expert parallelism with data-parallel attention. Each EP rank holds
// its own sequences' tokens; per MoE layer every rank routes its tokens, sends each token's normed
// row once to every rank that holds one of its k experts (all_to_all_v "dispatch", with the k ids
// and weights beside it), runs its held experts on what it received, and sends the partial
// outputs back ("combine"), where they are summed in rank order. Only rows that leave a rank for
// an expert it lacks cross the wire (the planner's a2a figure, src/planner/planner.cpp).
#include <bit>
#include <cstring>

#include "tessera/comm/communicator.h"
#include "tessera/core/error.h"
#include "tessera/model/moe.h"
#include "tessera/ops/ops.h"

namespace tessera::model {

void MoeLayer::forward_dispatch(const ModelConfig& c, const Tensor& normed, Tensor& out,
                                comm::Communicator& ep, const std::shared_ptr<Allocator>& alloc,
                                std::span<int64_t> counts) const {
  const int64_t T = normed.dim(0), H = c.hidden_size;
  const int k = c.num_experts_used, E = ep.size();
  const int per_rank = c.num_experts / E;
  auto act = [&](Shape s, DType d = DType::kF32) { return Tensor::empty(std::move(s), d, alloc); };
  auto upload = [&](const Tensor& host) {
    Tensor t = Tensor::empty(host.shape(), host.dtype(), alloc);
    if (host.numel() > 0) copy(t, host);
    return t;
  };

  // 1. Route this rank's tokens and lay out the rows to send, grouped by destination rank in rank
  //    order: a token goes once to each rank holding at least one of its k experts.
  std::vector<int64_t> send_rows(static_cast<size_t>(E), 0);
  std::vector<int32_t> src;  // the token of each sent row
  std::vector<float> meta;   // per sent row: k expert ids (bit patterns), then k weights
  if (T > 0) {
    Tensor logits = act({T, c.num_experts});
    ops::matmul(normed, router, Tensor(), logits);
    Tensor ids = act({T, k}, DType::kI32), weights = act({T, k});
    ops::moe_route(logits, {.k = k, .renormalize = c.norm_topk_prob}, ids, weights);
    const Tensor hid = to_host(ids), hw = to_host(weights);
    const int32_t* id = hid.data_as<int32_t>();
    const float* w = hw.data_as<float>();
    for (int d = 0; d < E; ++d)
      for (int64_t t = 0; t < T; ++t) {
        bool wanted = false;
        for (int j = 0; j < k; ++j) wanted = wanted || id[t * k + j] / per_rank == d;
        if (!wanted) continue;
        src.push_back(static_cast<int32_t>(t));
        for (int j = 0; j < k; ++j) meta.push_back(std::bit_cast<float>(id[t * k + j]));
        for (int j = 0; j < k; ++j) meta.push_back(w[t * k + j]);
        ++send_rows[static_cast<size_t>(d)];
      }
  }
  const std::vector<int64_t> recv_rows = comm::exchange_counts(ep, send_rows);
  const auto N = static_cast<int64_t>(src.size());
  int64_t M = 0;
  for (int64_t r : recv_rows) M += r;

  // 2. Dispatch: the rows and their routing.
  Tensor x_send = act({N, H}), x_recv = act({M, H});
  if (N > 0) ops::gather_rows(normed, src, x_send);
  ep.all_to_all_v(x_send, send_rows, x_recv, recv_rows);
  Tensor meta_host = Tensor::empty({N, 2 * k}, DType::kF32);
  if (N > 0) std::memcpy(meta_host.data(), meta.data(), meta.size() * sizeof(float));
  Tensor meta_recv = act({M, 2 * k});
  ep.all_to_all_v(upload(meta_host), send_rows, meta_recv, recv_rows);

  // 3. This rank's experts on what it received (choices of other ranks' experts add nothing).
  Tensor y_recv = act({M, H});
  if (M > 0) {
    const Tensor mr = to_host(meta_recv);
    Tensor rid = Tensor::empty({M, k}, DType::kI32), rw = Tensor::empty({M, k}, DType::kF32);
    for (int64_t i = 0; i < M; ++i)
      for (int j = 0; j < k; ++j) {
        const int32_t e = std::bit_cast<int32_t>(mr.data_as<float>()[i * 2 * k + j]);
        if (e < 0 || e >= c.num_experts)
          fail(ErrorCode::kInternal, "expert dispatch on rank ", ep.rank(), ": received expert id ",
               e, " outside the model's ", c.num_experts);
        rid.data_as<int32_t>()[i * k + j] = e;
        rw.data_as<float>()[i * k + j] = mr.data_as<float>()[i * 2 * k + k + j];
        if (!counts.empty() && e >= held.first && e < held.first + held.count)
          ++counts[static_cast<size_t>(e)];
      }
    ops::moe_experts(x_recv, gate_exps, up_exps, down_exps, upload(rid), upload(rw), held.first,
                     y_recv);
  }

  // 4. Combine: the partial outputs go back to their tokens' ranks, into rows [0, N) of y_back;
  //    row N stays zero for tokens a rank did not get.
  Tensor y_back_all = act({N + 1, H});  // allocations are zero-filled
  Tensor y_back = y_back_all.slice(0, N);
  ep.all_to_all_v(y_recv, recv_rows, y_back, send_rows);
  if (T == 0) return;
  // out[t] = the partial outputs of the ranks t went to, summed in rank order: one gather per rank
  // that got any row (every op stays device-generic; E is small).
  std::vector<int32_t> pick(static_cast<size_t>(T));
  bool first = true;
  Tensor part;
  int64_t at = 0;
  for (int d = 0; d < E; ++d) {
    const int64_t n = send_rows[static_cast<size_t>(d)];
    if (n == 0) continue;
    std::fill(pick.begin(), pick.end(), static_cast<int32_t>(N));
    for (int64_t i = at; i < at + n; ++i)
      pick[static_cast<size_t>(src[static_cast<size_t>(i)])] = static_cast<int32_t>(i);
    at += n;
    if (first) {
      ops::gather_rows(y_back_all, pick, out);
      first = false;
    } else {
      if (!part.defined()) part = act({T, H});
      ops::gather_rows(y_back_all, pick, part);
      ops::add(out, part);
    }
  }
  add_shared(c, normed, out, alloc);
}

}  // namespace tessera::model
