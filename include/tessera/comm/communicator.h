// Communicator: the collectives a worker's model shard needs (all-reduce sum, all-gather,
// broadcast, send/recv, barrier) over one group of ranks, behind one interface with several
// engines: Gloo over TCP for the CPU backend, NCCL on the worker's CUDA stream for the CUDA
// backend, and an in-process engine (threads sharing memory) for tests. Everything above this
// interface (model sharding, the worker group) is the same code whichever engine runs it.
//
// Ownership: each rank owns its Communicator; a communicator is used by one thread at a time
// (the worker's step loop). Every blocking call returns when the op is complete on this rank (on
// NCCL: complete in the order of the worker's CUDA stream, with no host wait; synchronize() waits).
// A call that does not complete within the group's timeout throws tessera::Error(kDeadlineExceeded)
// naming the group, the op and the rank(s) that did not take part (on NCCL: from the next op or
// synchronize(), its watchdog having aborted the communicator), and the communicator is then
// unusable (aborted() is true): the worker group is restarted, not repaired.
//
// The *_async forms return at once with a Work whose wait() completes the op: they let a model
// compute while a collective is on the wire (the overlapped TP layer, llama_overlap.cpp). By
// default async ops run on the communicator's progress thread (started on first use, one per
// communicator) in the order they were issued, and a blocking call first waits for every async op
// issued before it; Gloo's all_reduce_sum_async instead posts its messages at once through Gloo's
// own async buffers (slots taken in issue order) and finishes in wait(). Either way every
// rank still sees one sequence of ops, so the ordering rules of the blocking calls apply
// unchanged (e.g. a send must not depend on a recv issued after it), with one exception: gloo's
// and shm's send_async / recv_async are posted at once too and are full duplex (a rank may have
// sends and recvs in flight together, issued in any order: two ranks may each send to the other
// first), and NCCL's are its (host-non-blocking, stream-ordered) send / recv. An op's error
// (timeout, lost rank, bad argument) is thrown by its wait() (a bad argument or a connection
// already lost may be thrown by the call itself), with the same message as the blocking call; the
// tensors an async op reads or writes must stay alive and untouched until its wait() returns.
// NCCL enqueues on a side stream instead and wait() makes the caller's stream wait for it.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tessera/core/tensor.h"

namespace tessera::comm {

namespace detail {
class ProgressQueue;
}

// A non-blocking op in flight. wait() returns when the op is complete on this rank and throws its
// error, once; later calls return at once. Destroying a Work that was not waited for waits for the
// op and drops its error (the communicator is aborted then, and its next call reports that).
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  Communicator();
  virtual ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
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

  // Every op issued so far is complete on this rank, or the first failure among them is thrown.
  // The host engines (gloo, shm, local) complete each blocking op before it returns: nothing to
  // do. NCCL's ops complete in the worker stream's order and its watchdog reports timeouts and
  // errors here (and at the next op); the worker calls it at the end of every step.
  virtual void synchronize() {}

  // out = this rank's block of the sum over ranks of `in`: `in` holds size() equal blocks along
  // dim 0, out is one block. Each element is summed in rank order from 0.0f, so out is bitwise
  // the same as that block of all_reduce_sum(in). The default is all_reduce_sum on a copy (no
  // bytes saved); gloo and shm move only the blocks each rank needs.
  virtual void reduce_scatter_sum(const Tensor& in, Tensor& out);

  // Non-blocking forms of the calls above (see the header comment). The defaults run the blocking
  // call on the progress thread.
  virtual std::unique_ptr<Work> all_reduce_sum_async(Tensor& t);
  virtual std::unique_ptr<Work> all_gather_async(const Tensor& in, Tensor& out);
  virtual std::unique_ptr<Work> reduce_scatter_sum_async(const Tensor& in, Tensor& out);
  virtual std::unique_ptr<Work> send_async(const Tensor& t, int peer);
  virtual std::unique_ptr<Work> recv_async(Tensor& t, int peer);

 protected:
  // Engines call this at the start of every blocking op: waits for the async ops issued so far
  // (a no-op on the progress thread itself, which runs them one at a time).
  void drain_async();
  // Engines call this first in their destructor, so that no queued op runs on a half-destroyed
  // engine: runs what is queued, then stops the progress thread.
  void stop_async();

 private:
  std::unique_ptr<Work> submit(const char* op, std::function<void()> fn);
  std::unique_ptr<detail::ProgressQueue> progress_;
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
