// Communicator: the collectives a worker's model shard needs (all-reduce sum, all-gather,
// broadcast, send/recv, barrier) over one group of ranks, behind one interface with several
// engines: Gloo over TCP for the CPU backend, NCCL on the worker's CUDA stream for the CUDA
// backend, and an in-process engine (threads sharing memory) for tests. Everything above this
// interface (model sharding, the worker group) is the same code whichever engine runs it.
//
// Ownership: each rank owns its Communicator; a communicator is used by one thread at a time
// (the worker's step loop). Every call blocks until the op is complete on this rank. A call that
// does not complete within the group's timeout throws tessera::Error(kDeadlineExceeded) naming the
// group, the op and the rank(s) that did not take part, and the communicator is then unusable
// (aborted() is true): the worker group is restarted, not repaired.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tessera/core/tensor.h"

namespace tessera::comm {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;  // 0 .. size()-1 within this group
  virtual int size() const = 0;
  virtual const std::string& name() const = 0;  // e.g. "tp[stage 1]", "pp[tp 0]", "world"
  virtual std::string engine() const = 0;       // "gloo", "nccl", "local"

  // In place: t = sum over ranks of t. Contiguous F32 on CPU (gloo, local); F32/F16/BF16 on the
  // communicator's CUDA device (nccl). Every rank gets bitwise the same result.
  virtual void all_reduce_sum(Tensor& t) = 0;
  // out = concatenation along dim 0 of every rank's `in`, in rank order. All ranks pass `in` of
  // the same shape and dtype; out has size() times as many rows.
  virtual void all_gather(const Tensor& in, Tensor& out) = 0;
  // t on every rank = t on `root`.
  virtual void broadcast(Tensor& t, int root) = 0;
  // Point-to-point: the peer's matching recv/send must use the same shape and dtype.
  virtual void send(const Tensor& t, int peer) = 0;
  virtual void recv(Tensor& t, int peer) = 0;
  virtual void barrier() = 0;
  // Variable-size all-to-all (expert parallelism's dispatch and combine). `in` holds size()
  // consecutive blocks along dim 0, send_rows[r] rows for rank r (this rank included), in rank
  // order; `out` gets recv_rows[r] rows from rank r, in rank order. Counts are known to both
  // sides: recv_rows[r] here must equal send_rows[rank()] on rank r (call exchange_counts first
  // when only the sender knows them; a disagreement is kInvalidArgument on the local engine and
  // undefined elsewhere). `in` and `out` are contiguous, of one dtype and one row shape (the dims
  // after 0); any count may be zero. Every rank takes part even with nothing to send or receive.
  virtual void all_to_all_v(const Tensor& in, const std::vector<int64_t>& send_rows, Tensor& out,
                            const std::vector<int64_t>& recv_rows) = 0;

  virtual bool aborted() const = 0;
};

// recv_rows for all_to_all_v from every rank's send_rows (one all_gather of I32 counts; a
// collective: every rank calls it). Counts must fit in 31 bits.
std::vector<int64_t> exchange_counts(Communicator& c, const std::vector<int64_t>& send_rows);

// In-process group for tests and single-process runs: make_local_group(n) returns n
// communicators that share memory; rank i must be driven by its own thread. `timeout_seconds`
// bounds every op as for the real engines.
std::vector<std::unique_ptr<Communicator>> make_local_group(int size, const std::string& name,
                                                            double timeout_seconds = 30.0);

}  // namespace tessera::comm
