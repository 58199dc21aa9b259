// The guarded device: host code that touches its memory outside a device op, copy or collective
// dies (SIGSEGV), as it would fault on a GPU; inside HostAccess it reads and writes; tessera::copy
// moves bytes in and out, whole tensors and column views; scopes nest per storage.
#include <gtest/gtest.h>

#include <csignal>
#include <numeric>
#include <vector>

#include "tessera/core/error.h"
#include "tessera/core/tensor.h"

namespace tessera {
namespace {

class GuardedDevice : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
  static Tensor iota(Shape shape) {
    Tensor t = Tensor::empty(std::move(shape), DType::kF32);
    std::iota(t.data_as<float>(), t.data_as<float>() + t.numel(), 1.0f);
    return t;
  }
};

TEST_F(GuardedDevice, HostReadOfDeviceMemoryDies) {
  const Tensor d = to_device(iota({4, 8}), default_allocator(Device::guarded(0)));
  EXPECT_EQ(d.device(), Device::guarded(0));
  EXPECT_FALSE(d.device().is_cpu());
  EXPECT_EXIT(
      {
        volatile float x = d.data_as<float>()[3];  // a host read, as a bug would do
        (void)x;
      },
      ::testing::KilledBySignal(SIGSEGV), "");
}

TEST_F(GuardedDevice, HostWriteOfDeviceMemoryDies) {
  Tensor d = Tensor::zeros({16}, DType::kF32, Device::guarded(0));
  EXPECT_EXIT({ d.data_as<float>()[0] = 1.0f; }, ::testing::KilledBySignal(SIGSEGV), "");
}

TEST_F(GuardedDevice, CopiesInAndOutAreExact) {
  const Tensor host = iota({5, 7});
  const Tensor d = to_device(host, default_allocator(Device::guarded(1)));
  EXPECT_EQ(d.device().str(), "guarded:1");
  const Tensor back = to_host(d);
  EXPECT_TRUE(back.device().is_cpu());
  for (int64_t i = 0; i < host.numel(); ++i) EXPECT_EQ(back.data_as<float>()[i], i + 1.0f);
  // Column views on both sides: columns [2, 5) of the device tensor into columns [0, 3) of a
  // host one.
  Tensor part = Tensor::zeros({5, 4}, DType::kF32);
  copy(part.cols(0, 3), d.cols(2, 5));
  for (int64_t r = 0; r < 5; ++r) {
    for (int64_t c = 0; c < 3; ++c)
      EXPECT_EQ(part.data_as<float>()[r * 4 + c], host.data_as<float>()[r * 7 + 2 + c]);
    EXPECT_EQ(part.data_as<float>()[r * 4 + 3], 0.0f);  // untouched column
  }
  EXPECT_THROW(copy(part, d), Error);  // shapes differ
}

TEST_F(GuardedDevice, HostAccessOpensNestsAndCloses) {
  Tensor d = Tensor::zeros({8}, DType::kF32, Device::guarded(0));
  {
    HostAccess outer{&d};
    {
      HostAccess inner{&d, &d};  // the same storage twice, and nested
      d.data_as<float>()[1] = 5.0f;
    }
    EXPECT_EQ(d.data_as<float>()[1], 5.0f);  // still open: the outer scope holds it
  }
  EXPECT_EXIT(
      {
        volatile float x = d.data_as<float>()[1];
        (void)x;
      },
      ::testing::KilledBySignal(SIGSEGV), "");
  EXPECT_EQ(to_host(d).data_as<float>()[1], 5.0f);
}

TEST_F(GuardedDevice, CpuTensorsNeedNoAccessAndCudaOnesCannotBeOpened) {
  Tensor cpu = iota({3});
  {
    HostAccess open{&cpu};
    EXPECT_EQ(cpu.data_as<float>()[2], 3.0f);
  }
  EXPECT_THROW(default_allocator(Device::cuda(0)), Error);  // CUDA memory is the ops' business
}

TEST_F(GuardedDevice, BackendNamesParse) {
  EXPECT_EQ(parse_device_type("guarded"), DeviceType::kGuarded);
  EXPECT_EQ(parse_device_type("cuda"), DeviceType::kCUDA);
  EXPECT_THROW(parse_device_type("tpu"), Error);
}

}  // namespace
}  // namespace tessera
