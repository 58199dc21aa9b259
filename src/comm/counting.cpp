// CountingCommunicator: forwarding plus per-op byte tallies (conventions in the header).
#include "tessera/comm/counting.h"

#include "tessera/core/error.h"

namespace tessera::comm {

CountingCommunicator::CountingCommunicator(std::unique_ptr<Communicator> inner)
    : inner_(std::move(inner)) {
  TESSERA_CHECK(inner_ != nullptr, "CountingCommunicator needs a communicator");
}

CountingCommunicator::~CountingCommunicator() = default;

void CountingCommunicator::tally(const char* op, uint64_t bytes) {
  OpTally& t = tallies_[op];
  ++t.calls;
  t.bytes += bytes;
}

uint64_t CountingCommunicator::ring_all_reduce(const Tensor& t) const {
  const auto n = static_cast<uint64_t>(size());
  return 2 * (n - 1) * ((t.nbytes() + n - 1) / n);
}

void CountingCommunicator::all_reduce_sum(Tensor& t) {
  inner_->all_reduce_sum(t);
  tally("all_reduce_sum", ring_all_reduce(t));
}

void CountingCommunicator::all_gather(const Tensor& in, Tensor& out) {
  inner_->all_gather(in, out);
  tally("all_gather", static_cast<uint64_t>(size() - 1) * in.nbytes());
}

void CountingCommunicator::broadcast(Tensor& t, int root) {
  inner_->broadcast(t, root);
  tally("broadcast", rank() == root ? static_cast<uint64_t>(size() - 1) * t.nbytes() : 0);
}

void CountingCommunicator::send(const Tensor& t, int peer) {
  inner_->send(t, peer);
  tally("send", t.nbytes());
}

void CountingCommunicator::recv(Tensor& t, int peer) {
  inner_->recv(t, peer);
  tally("recv", 0);
}

void CountingCommunicator::barrier() {
  inner_->barrier();
  tally("barrier", 0);
}

void CountingCommunicator::all_to_all_v(const Tensor& in, const std::vector<int64_t>& send_rows,
                                        Tensor& out, const std::vector<int64_t>& recv_rows) {
  inner_->all_to_all_v(in, send_rows, out, recv_rows);  // checks the counts against the tensors
  int64_t rows = 0, away = 0;
  for (size_t r = 0; r < send_rows.size(); ++r) {
    rows += send_rows[r];
    if (static_cast<int>(r) != rank()) away += send_rows[r];
  }
  tally("all_to_all_v",
        rows > 0 ? in.nbytes() / static_cast<uint64_t>(rows) * static_cast<uint64_t>(away) : 0);
}

void CountingCommunicator::reduce_scatter_sum(const Tensor& in, Tensor& out) {
  inner_->reduce_scatter_sum(in, out);
  tally("reduce_scatter_sum", static_cast<uint64_t>(size() - 1) * out.nbytes());
}

std::unique_ptr<Work> CountingCommunicator::all_reduce_sum_async(Tensor& t) {
  auto w = inner_->all_reduce_sum_async(t);
  tally("all_reduce_sum", ring_all_reduce(t));
  return w;
}

std::unique_ptr<Work> CountingCommunicator::all_gather_async(const Tensor& in, Tensor& out) {
  auto w = inner_->all_gather_async(in, out);
  tally("all_gather", static_cast<uint64_t>(size() - 1) * in.nbytes());
  return w;
}

std::unique_ptr<Work> CountingCommunicator::reduce_scatter_sum_async(const Tensor& in,
                                                                     Tensor& out) {
  auto w = inner_->reduce_scatter_sum_async(in, out);
  tally("reduce_scatter_sum", static_cast<uint64_t>(size() - 1) * out.nbytes());
  return w;
}

std::unique_ptr<Work> CountingCommunicator::send_async(const Tensor& t, int peer) {
  auto w = inner_->send_async(t, peer);
  tally("send", t.nbytes());
  return w;
}

std::unique_ptr<Work> CountingCommunicator::recv_async(Tensor& t, int peer) {
  auto w = inner_->recv_async(t, peer);
  tally("recv", 0);
  return w;
}

}  // namespace tessera::comm
