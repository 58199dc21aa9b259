// CountingCommunicator: a Communicator that forwards every call to another one (any engine) and
// tallies, per op, the calls made and the bytes this rank put on the wire for them, so a worker
// can report what its steps really sent (the planner's bytes per token, checked by measurement).
//
// What "bytes" means per op: all_to_all_v counts exactly the rows this rank sends to other ranks
// (its own block stays local); send counts the tensor; recv, barrier count no bytes. Collectives
// whose wire traffic depends on the engine's algorithm are counted as a ring sends them, the
// algorithm the planner assumes: all_reduce_sum 2 (n - 1) ceil(m / n), reduce_scatter_sum
// (n - 1) x out bytes, all_gather (n - 1) x in bytes, broadcast (n - 1) x m on the root (m the
// tensor's bytes, n the group size). Async forms are counted when issued.
//
// Ownership: owns the wrapped communicator; used by one thread at a time, like every communicator.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "tessera/comm/communicator.h"

namespace tessera::comm {

struct OpTally {
  uint64_t calls = 0;
  uint64_t bytes = 0;
};

class CountingCommunicator final : public Communicator {
 public:
  explicit CountingCommunicator(std::unique_ptr<Communicator> inner);
  ~CountingCommunicator() override;

  // Per op name ("all_reduce_sum", "all_to_all_v", ...), since construction.
  const std::map<std::string, OpTally>& tallies() const { return tallies_; }
  Communicator& inner() { return *inner_; }

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  const std::string& name() const override { return inner_->name(); }
  std::string engine() const override { return inner_->engine(); }
  bool aborted() const override { return inner_->aborted(); }
  void synchronize() override { inner_->synchronize(); }

  void all_reduce_sum(Tensor& t) override;
  void all_gather(const Tensor& in, Tensor& out) override;
  void broadcast(Tensor& t, int root) override;
  void send(const Tensor& t, int peer) override;
  void recv(Tensor& t, int peer) override;
  void barrier() override;
  void all_to_all_v(const Tensor& in, const std::vector<int64_t>& send_rows, Tensor& out,
                    const std::vector<int64_t>& recv_rows) override;
  void reduce_scatter_sum(const Tensor& in, Tensor& out) override;

  std::unique_ptr<Work> all_reduce_sum_async(Tensor& t) override;
  std::unique_ptr<Work> all_gather_async(const Tensor& in, Tensor& out) override;
  std::unique_ptr<Work> reduce_scatter_sum_async(const Tensor& in, Tensor& out) override;
  std::unique_ptr<Work> send_async(const Tensor& t, int peer) override;
  std::unique_ptr<Work> recv_async(Tensor& t, int peer) override;

 private:
  void tally(const char* op, uint64_t bytes);
  uint64_t ring_all_reduce(const Tensor& t) const;

  std::unique_ptr<Communicator> inner_;
  std::map<std::string, OpTally> tallies_;
};

}  // namespace tessera::comm
