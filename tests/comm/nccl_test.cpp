// The NCCL engine with a group of one rank: every op is degenerate but runs for real through NCCL
// on a CUDA stream. Skips (saying why) on a machine without a CUDA device.
#if TESSERA_HAVE_NCCL
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "tessera/comm/groups.h"
#include "tessera/core/error.h"

namespace tessera::comm {
namespace {

bool have_cuda_device() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return n > 0;
}

// A device tensor holding `host`'s bytes.
Tensor device_tensor(const void* host, size_t bytes, Shape shape, DType dtype) {
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, bytes), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice), cudaSuccess);
  auto owner = std::shared_ptr<void>(p, [](void* q) { cudaFree(q); });
  return Tensor::from_storage(Storage::borrow(p, bytes, owner, Device::cuda(0)), 0,
                              std::move(shape), dtype);
}

std::vector<uint8_t> bytes_of(const Tensor& t) {
  std::vector<uint8_t> v(t.nbytes());
  EXPECT_EQ(cudaMemcpy(v.data(), t.data(), v.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  return v;
}

TEST(Nccl, SingleRankOpsRunOnTheStream) {
  ASSERT_TRUE(have_nccl());
  if (!have_cuda_device()) GTEST_SKIP() << "no CUDA device on this machine: NCCL needs one";
  StoreServer server({});
  StoreClient store({.host = "127.0.0.1", .port = server.port()});
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  {
    auto c = make_nccl_communicator({.name = "tp[stage 0]",
                                     .rank = 0,
                                     .size = 1,
                                     .timeout_seconds = 30,
                                     .store = &store,
                                     .cuda_device = 0,
                                     .cuda_stream = stream});
    EXPECT_EQ(c->engine(), "nccl");
    EXPECT_TRUE(server.has("tp[stage 0]/nccl_id"));
    std::mt19937 rng(std::random_device{}());
    std::normal_distribution<float> d;
    std::vector<float> v(1000);
    for (auto& x : v) x = d(rng);
    const size_t bytes = v.size() * sizeof(float);

    Tensor t = device_tensor(v.data(), bytes, {1000}, DType::kF32);
    c->all_reduce_sum(t);  // one rank: the sum is the input
    EXPECT_EQ(std::memcmp(bytes_of(t).data(), v.data(), bytes), 0);
    c->broadcast(t, 0);
    EXPECT_EQ(std::memcmp(bytes_of(t).data(), v.data(), bytes), 0);
    std::vector<float> zeros(1000, 0.0f);
    Tensor all = device_tensor(zeros.data(), bytes, {1000}, DType::kF32);
    c->all_gather(t, all);
    EXPECT_EQ(std::memcmp(bytes_of(all).data(), v.data(), bytes), 0);
    // F16 and BF16 reduce too (bit patterns of ordinary values; one rank leaves them unchanged).
    std::vector<uint16_t> h(64);
    for (auto& x : h) x = static_cast<uint16_t>(0x3c00 + rng() % 0x0400);
    for (DType dt : {DType::kF16, DType::kBF16}) {
      Tensor th = device_tensor(h.data(), 128, {64}, dt);
      c->all_reduce_sum(th);
      EXPECT_EQ(std::memcmp(bytes_of(th).data(), h.data(), 128), 0);
    }
    c->barrier();
    // Ops return once enqueued (the watchdog watches them); synchronize() waits and reports none
    // failed, the async form too.
    c->synchronize();
    auto work = c->all_reduce_sum_async(t);
    work->wait();
    c->synchronize();
    EXPECT_EQ(std::memcmp(bytes_of(t).data(), v.data(), bytes), 0);
    // Host tensors and peers outside the group are argument errors.
    Tensor host = Tensor::zeros({4}, DType::kF32);
    EXPECT_THROW(c->all_reduce_sum(host), Error);
    EXPECT_THROW(c->send(t, 0), Error);
    EXPECT_FALSE(c->aborted());
  }
  cudaStreamDestroy(stream);
}

TEST(Nccl, NoDeviceIsUnsupported) {
  if (have_cuda_device()) GTEST_SKIP() << "a CUDA device is present; this checks the CPU-only path";
  StoreServer server({});
  StoreClient store({.host = "127.0.0.1", .port = server.port()});
  try {
    make_nccl_communicator({.name = "tp", .rank = 0, .size = 1, .store = &store, .cuda_device = 0});
    FAIL() << "made an NCCL communicator without a device";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported) << e.what();
  }
}

}  // namespace
}  // namespace tessera::comm
#endif  // TESSERA_HAVE_NCCL
