// DeviceGraph (graph.h): CUDA stream capture into a private pool, or re-running the callable.
// The CUDA path has not run on a GPU yet.
#include "tessera/ops/graph.h"

#include "tessera/core/error.h"

#if TESSERA_HAVE_CUDA
#include <cuda_runtime.h>

#include "cuda_allocator.h"
#include "cuda_common.h"
#endif

namespace tessera::ops {

#if TESSERA_HAVE_CUDA
struct DeviceGraph::State {
  cuda::CachingAllocator* allocator = nullptr;
  std::shared_ptr<cuda::CachingAllocator::Pool> pool;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ~State() {
    if (!allocator) return;
    // No replay may still be reading the pool's blocks when they go back to the shared list.
    cudaStreamSynchronize(static_cast<cudaStream_t>(allocator->stream()));
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    if (pool) allocator->release_pool(*pool);
  }
};

namespace {
cuda::CachingAllocator* cuda_allocator(const Allocator& a) {
  return const_cast<cuda::CachingAllocator*>(dynamic_cast<const cuda::CachingAllocator*>(&a));
}
}  // namespace

bool DeviceGraph::records(const Allocator& allocator) { return cuda_allocator(allocator); }

DeviceGraph::DeviceGraph(std::shared_ptr<Allocator> allocator, std::function<void()> work)
    : allocator_(std::move(allocator)), work_(std::move(work)) {
  cuda::CachingAllocator* ca = cuda_allocator(*allocator_);
  if (!ca) {
    work_();
    return;
  }
  auto st = std::make_unique<State>();
  st->allocator = ca;
  st->pool = std::make_shared<cuda::CachingAllocator::Pool>();
  const auto stream = static_cast<cudaStream_t>(ca->stream());
  const Device dev = ca->device();
  int prev = 0;
  cuda::check(cudaGetDevice(&prev), "graph", "cudaGetDevice");
  if (prev != dev.index) cuda::check(cudaSetDevice(dev.index), "graph", "cudaSetDevice");
  // Work already queued (weights, the KV pool's zeroing) must not become part of the graph.
  cuda::check(cudaStreamSynchronize(stream), "graph", "cudaStreamSynchronize");
  ca->open_pool(st->pool);
  cudaError_t begun = cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed);
  std::string failure;
  if (begun != cudaSuccess) {
    failure = std::string("cudaStreamBeginCapture: ") + cudaGetErrorString(begun);
  } else {
    try {
      work_();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    const cudaError_t ended = cudaStreamEndCapture(stream, &st->graph);
    if (failure.empty() && ended != cudaSuccess)
      failure = std::string("cudaStreamEndCapture: ") + cudaGetErrorString(ended);
  }
  ca->close_pool();
  if (failure.empty()) {
    const cudaError_t e = cudaGraphInstantiate(&st->exec, st->graph, 0);
    if (e != cudaSuccess) failure = std::string("cudaGraphInstantiate: ") + cudaGetErrorString(e);
  }
  if (prev != dev.index) cudaSetDevice(prev);
  if (!failure.empty()) {
    cudaGetLastError();  // a failed capture leaves its error as the last one: clear it
    fail(ErrorCode::kInternal, "graph capture on ", dev.str(), " failed: ", failure);
  }
  state_ = std::move(st);
}

DeviceGraph::~DeviceGraph() = default;

void DeviceGraph::replay() const {
  if (!state_) {
    work_();
    return;
  }
  const Device dev = allocator_->device();
  int prev = 0;
  cuda::check(cudaGetDevice(&prev), "graph", "cudaGetDevice");
  if (prev != dev.index) cuda::check(cudaSetDevice(dev.index), "graph", "cudaSetDevice");
  const cudaError_t e =
      cudaGraphLaunch(state_->exec, static_cast<cudaStream_t>(allocator_->stream()));
  if (prev != dev.index) cudaSetDevice(prev);
  cuda::check(e, "graph", "cudaGraphLaunch");
}

#else

struct DeviceGraph::State {};

bool DeviceGraph::records(const Allocator&) { return false; }

DeviceGraph::DeviceGraph(std::shared_ptr<Allocator> allocator, std::function<void()> work)
    : allocator_(std::move(allocator)), work_(std::move(work)) {
  work_();
}

DeviceGraph::~DeviceGraph() = default;

void DeviceGraph::replay() const { work_(); }

#endif

}  // namespace tessera::ops
