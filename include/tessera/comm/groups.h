// Making real communicators: one Gloo (TCP), shared-memory (+ Gloo) or NCCL group per call,
// connected through the rendezvous store. A worker of a T x P topology makes its TP group
// ("tp[stage s]": world ranks s*T .. s*T+T-1) and its PP group ("pp[tp t]": world ranks t, t+T,
// ...), each under its own key prefix in the store, so several groups connect through one store.
#pragma once

#include <memory>
#include <string>

#include "tessera/comm/communicator.h"
#include "tessera/comm/rendezvous.h"

namespace tessera::comm {

struct GroupParams {
  std::string name;  // also the store key prefix
  int rank = 0;      // within the group
  int size = 1;
  double timeout_seconds = 30.0;        // every op, and connecting
  StoreClient* store = nullptr;         // borrowed; must outlive the connect
  std::string bind_host = "127.0.0.1";  // this rank's address for Gloo pairs
  int cuda_device = -1;                 // NCCL: the device
  void* cuda_stream = nullptr;          // NCCL: cudaStream_t the ops are enqueued on
  // make_cpu_communicator: use shared memory when every rank is on this node (and every rank
  // allows it; TESSERA_COMM_SHM=0 in the environment also turns it off).
  bool intra_node_shm = true;
};

// Gloo over TCP; throws kUnsupported when built without Gloo.
std::unique_ptr<Communicator> make_gloo_communicator(const GroupParams& p);
// The CPU backend's choice: when every rank registers the same node (host name and boot id),
// collectives (all_reduce_sum, all_gather, broadcast, barrier) go through a shared-memory
// segment made for the group (engine() "shm"; bitwise the same results as Gloo) and send/recv
// through Gloo; otherwise plain Gloo. Errors as for Gloo, naming the group, op and rank.
std::unique_ptr<Communicator> make_cpu_communicator(const GroupParams& p);
// NCCL on p.cuda_stream; rank 0 makes the unique id and publishes it in the store. Throws
// kUnsupported when built without NCCL or when no CUDA device is present.
std::unique_ptr<Communicator> make_nccl_communicator(const GroupParams& p);
bool have_gloo();
bool have_nccl();

}  // namespace tessera::comm
