// Mixture-of-Experts ops on every device here (cpu, guarded, cuda where a GPU is) against
// ops::ref on fresh random inputs: the router (softmax top-k with and without renormalisation, the
// sigmoid gate) and the grouped expert FFN vs the reference's per-token loop, for every weight
// dtype, with experts that get no token, all tokens on one expert, and a held range of experts
// (first_expert > 0, choices of other ranks' experts skipped) as expert parallelism will use.
// Tolerances, argued from fp32:
//   router  1e-6 absolute on weights (the same formula; ids exact);
//   experts 1e-4 * max|want| + 1e-5 per output: two chained matmuls of H and F terms accumulated
//           in another order (~1e-6 * sqrt(K) relative to the terms' scale); on CUDA, quantized
//           weights, 2e-2 (its matmul's int8 / fp16 activations); a wrong expert, a dropped
//           weight or a token routed twice moves outputs by O(max|want|).
#include <algorithm>
#include <cmath>
#include <string>

#include "tessera/ops/backend.h"
#include "test_util.h"

namespace tessera::ops::test {
namespace {

class MoeOps : public SeededTest, public ::testing::WithParamInterface<DeviceType> {
 protected:
  void SetUp() override {
    device_ = Device{GetParam(), 0};
    try {
      alloc_ = make_allocator(device_);
    } catch (const Error& e) {
      GTEST_SKIP() << device_.str() << " is not available here: " << e.what();
    }
  }
  Tensor dev(const Tensor& host) { return to_device(host, alloc_); }
  Tensor host_i32(const std::vector<int32_t>& v) {
    Tensor t = Tensor::empty({static_cast<int64_t>(v.size())}, DType::kI32);
    std::copy(v.begin(), v.end(), t.data_as<int32_t>());
    return t;
  }
  bool runs(Op op, DType dtype) {
    if (backend_for(device_).supports(op, dtype)) return true;
    std::printf("[ not yet   ] %s: %s for %s\n", device_.str().c_str(),
                std::string(op_name(op)).c_str(), std::string(dtype_name(dtype)).c_str());
    return false;
  }
  // Stacked [E, rows, cols] experts of `type`.
  Tensor stacked(DType type, int64_t E, int64_t rows, int64_t cols) {
    Tensor w = Tensor::empty({E, rows, cols}, type);
    std::vector<float> src(static_cast<size_t>(cols));
    for (int64_t r = 0; r < E * rows; ++r) {
      for (float& v : src) v = uniform();
      quantize_row(type, src.data(), const_cast<uint8_t*>(w.row_ptr(r)), cols);
    }
    return w;
  }
  void check_experts(DType type, int64_t T, int64_t H, int64_t F, int64_t E, int k,
                     const std::vector<int32_t>& ids, int first_expert, const std::string& what) {
    // The grouping is under test, against the reference's per-token loop: the exact matmul path
    // keeps the two within fp32 reordering (int8_matmul_test covers the integer path).
    ActivationsScope exact(cpu::Activations::kF32);
    const Tensor x = random_f32({T, H}), wts = random_f32({T, k});
    // down in another dtype than gate/up, as GGUF files often have it
    const DType down_type = type == DType::kQ4_0 ? DType::kQ8_0 : type;
    const Tensor wg = stacked(type, E, F, H), wu = stacked(type, E, F, H),
                 wd = stacked(down_type, E, H, F);
    const Tensor idt = host_i32(ids);
    Tensor want = Tensor::empty({T, H}, DType::kF32);
    ref::moe_experts(x, wg, wu, wd, idt, wts, first_expert, want);
    Tensor got_dev = dev(random_f32({T, H}));  // garbage: the op must overwrite every output
    ops::moe_experts(dev(x), dev(wg), dev(wu), dev(wd), dev(idt), dev(wts), first_expert, got_dev);
    const Tensor got = to_host(got_dev);
    float scale = 0.0f;
    for (int64_t i = 0; i < want.numel(); ++i)
      scale = std::max(scale, std::abs(want.data_as<float>()[i]));
    // CUDA's matmul quantizes the activations of a few rows to int8 (each within 1/254 of its
    // block's max) or rounds them to fp16: two such matmuls in a row (gate/up, then down) stay
    // within ~2 x 1/127 of the outputs' scale; still far below a wrong expert's O(scale).
    const float rel = device_.is_cuda() && type != DType::kF32 ? 2e-2f : 1e-4f;
    for (int64_t i = 0; i < want.numel(); ++i)
      ASSERT_NEAR(got.data_as<float>()[i], want.data_as<float>()[i], rel * scale + 1e-5f)
          << dtype_name(type) << " " << what << " [" << i << "]";
  }

  Device device_;
  std::shared_ptr<Allocator> alloc_;
};

TEST_P(MoeOps, RouterSoftmaxTopKAndSigmoidGate) {
  if (!runs(Op::kMoeRoute, DType::kF32)) return;
  for (bool renorm : {false, true}) {
    const int64_t T = 13, E = 8;
    const int k = 2;
    const Tensor logits = random_f32({T, E});
    Tensor ids = Tensor::empty({T, k}, DType::kI32), w = Tensor::empty({T, k}, DType::kF32);
    ref::moe_route(logits, {.k = k, .renormalize = renorm}, ids, w);
    // The reference against the definition: softmax over all, the k best; renormalised, a
    // softmax over the chosen logits.
    for (int64_t t = 0; t < T; ++t) {
      const float* l = logits.data_as<float>() + t * E;
      std::vector<int> order(E);
      for (int e = 0; e < E; ++e) order[e] = e;
      std::sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
      double all = 0, top = 0;
      for (int e = 0; e < E; ++e) all += std::exp(double(l[e]));
      for (int j = 0; j < k; ++j) top += std::exp(double(l[order[j]]));
      for (int j = 0; j < k; ++j) {
        ASSERT_EQ(ids.data_as<int32_t>()[t * k + j], order[j]);
        const double p = std::exp(double(l[order[j]])) / (renorm ? top : all);
        ASSERT_NEAR(w.data_as<float>()[t * k + j], p, 1e-6);
      }
    }
    Tensor ids_d = dev(Tensor::zeros({T, k}, DType::kI32)),
           w_d = dev(Tensor::zeros({T, k}, DType::kF32));
    ops::moe_route(dev(logits), {.k = k, .renormalize = renorm}, ids_d, w_d);
    const Tensor gi = to_host(ids_d), gw = to_host(w_d);
    for (int64_t i = 0; i < T * k; ++i) {
      ASSERT_EQ(gi.data_as<int32_t>()[i], ids.data_as<int32_t>()[i]);
      ASSERT_NEAR(gw.data_as<float>()[i], w.data_as<float>()[i], 1e-6f);
    }
  }
  const Tensor g = random_f32({5, 1});
  Tensor ids = dev(Tensor::zeros({5, 1}, DType::kI32)), w = dev(Tensor::zeros({5, 1}, DType::kF32));
  ops::moe_route(dev(g), {.k = 1, .router = MoeRouter::kSigmoid}, ids, w);
  const Tensor gw = to_host(w);
  for (int i = 0; i < 5; ++i)
    ASSERT_NEAR(gw.data_as<float>()[i], 1.0 / (1.0 + std::exp(-double(g.data_as<float>()[i]))),
                1e-6);
  EXPECT_THROW(ops::moe_route(dev(random_f32({3, 4})), {.k = 5}, ids, w), Error);
}

TEST_P(MoeOps, GroupedExpertsMatchPerTokenLoop) {
  for (DType type : kWeightTypes) {
    if (!runs(Op::kMoeExperts, type)) continue;
    const int64_t H = 64, F = 96, E = 6;
    const int k = 2;
    for (int64_t T : {1, 7, 33}) {
      std::vector<int32_t> ids(static_cast<size_t>(T * k));
      for (int64_t t = 0; t < T; ++t) {  // k distinct experts per token, experts 4, 5 unused
        ids[t * k] = randint(0, 3);
        ids[t * k + 1] = (ids[t * k] + randint(1, 3)) % 4;
      }
      check_experts(type, T, H, F, E, k, ids, 0, "T=" + std::to_string(T));
    }
    // Every token on one expert (the other choice on a second one, so each expert gets T rows).
    std::vector<int32_t> one(2 * 9);
    for (int t = 0; t < 9; ++t) one[t * 2] = 3, one[t * 2 + 1] = 1;
    check_experts(type, 9, H, F, E, k, one, 0, "all tokens on expert 3");
    // Held range [10, 16): ids outside it (another rank's experts) contribute nothing.
    std::vector<int32_t> ranged(2 * 11);
    for (auto& id : ranged) id = randint(4, 20);
    check_experts(type, 11, H, F, E, k, ranged, 10, "experts 10..15 held");
  }
}

TEST_P(MoeOps, ShapeErrorsNameTheOp) {
  if (!runs(Op::kMoeExperts, DType::kF32)) return;
  const Tensor x = dev(random_f32({2, 8}));
  const Tensor wg = dev(stacked(DType::kF32, 2, 4, 8)), wd = dev(stacked(DType::kF32, 2, 4, 8));
  Tensor out = dev(random_f32({2, 8}));
  try {
    ops::moe_experts(x, wg, wg, wd, dev(host_i32({0, 1})), dev(random_f32({2, 1})), 0, out);
    FAIL() << "down [E, F, H] accepted where [E, H, F] is due";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("moe_experts"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Devices, MoeOps,
                         ::testing::Values(DeviceType::kCPU, DeviceType::kGuarded,
                                           DeviceType::kCUDA),
                         [](const auto& info) {
                           return std::string(info.param == DeviceType::kCPU       ? "cpu"
                                              : info.param == DeviceType::kGuarded ? "guarded"
                                                                                   : "cuda");
                         });

}  // namespace
}  // namespace tessera::ops::test
