// The whole model on every device available here (guarded; cuda when a GPU is present) against
// the same model on the CPU: a tiny llama GGUF written by the test, a step mixing a prefill chunk
// and a decode, then decodes, all logits compared. The guarded device runs the CPU kernels, so its
// logits must be bitwise equal; CUDA sums in another order, so 1e-3 absolute on logits of size
// ~1-10 (fp32 over K <= 64 terms per dot product and 2 layers: ~1e-5 expected). A device that is
// not here is skipped, naming why.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "tessera/core/error.h"
#include "tessera/model/decode_graphs.h"
#include "tessera/model/local_runner.h"
#include "tessera/ops/backend.h"
#include "tiny_llama.h"

namespace tessera::model {
namespace {

class LlamaOnDevice : public ::testing::TestWithParam<DeviceType> {};

// The device's allocator, or null with `why` when the device is not here.
std::shared_ptr<Allocator> allocator_of(Device device, std::string& why) {
  try {
    return ops::make_allocator(device);
  } catch (const Error& e) {
    why = e.what();
    return nullptr;
  }
}

TEST_P(LlamaOnDevice, LogitsMatchTheCpu) {
  const Device device{GetParam(), 0};
  std::string why;
  const std::shared_ptr<Allocator> alloc = allocator_of(device, why);
  if (!alloc) GTEST_SKIP() << device.str() << " is not available here: " << why;
  const std::string path = testing::write_tiny_llama(11);
  const auto weights = open_weights(path);
  const LlamaModel cpu_model(*weights);
  const LlamaModel dev_model(*weights, {}, nullptr, alloc);
  ASSERT_NO_THROW(dev_model.check_device_support());
  EXPECT_EQ(dev_model.device(), device);
  LocalRunner cpu(cpu_model, {.num_blocks = 16, .block_size = 4});
  LocalRunner dev(dev_model, {.num_blocks = 16, .block_size = 4});
  const float tol = device.is_guarded() ? 0.0f : 1e-3f;
  auto compare = [&](const Tensor& want, const Tensor& got_dev, const std::string& what) {
    ASSERT_EQ(got_dev.device(), device) << what;
    const Tensor got = to_host(got_dev);
    ASSERT_EQ(got.shape(), want.shape()) << what;
    for (int64_t i = 0; i < want.numel(); ++i)
      ASSERT_NEAR(got.data_as<float>()[i], want.data_as<float>()[i], tol)
          << what << " [" << i << "]";
  };
  const int a_cpu = cpu.add_sequence(), b_cpu = cpu.add_sequence();
  const int a_dev = dev.add_sequence(), b_dev = dev.add_sequence();
  const std::vector<int32_t> prompt_a{1, 9, 4, 33, 2, 60, 17}, prompt_b{5, 6};
  {  // b's prompt first, then a's prompt next to b's first decode
    const LocalRunner::Chunk c{.seq = b_cpu, .tokens = prompt_b},
        d{.seq = b_dev, .tokens = prompt_b};
    compare(cpu.step({&c, 1}, true), dev.step({&d, 1}, true), "prefill b");
  }
  std::vector<int32_t> next{7};
  const LocalRunner::Chunk cs[] = {{.seq = a_cpu, .tokens = prompt_a},
                                   {.seq = b_cpu, .tokens = next}};
  const LocalRunner::Chunk ds[] = {{.seq = a_dev, .tokens = prompt_a},
                                   {.seq = b_dev, .tokens = next}};
  compare(cpu.step(cs, true), dev.step(ds, true), "prefill a + decode b");
  for (int step = 0; step < 6; ++step) {
    const std::vector<int32_t> ta{static_cast<int32_t>(3 + step)},
        tb{static_cast<int32_t>(40 - step)};
    const LocalRunner::Chunk c2[] = {{.seq = a_cpu, .tokens = ta}, {.seq = b_cpu, .tokens = tb}};
    const LocalRunner::Chunk d2[] = {{.seq = a_dev, .tokens = ta}, {.seq = b_dev, .tokens = tb}};
    compare(cpu.step(c2), dev.step(d2), "decode " + std::to_string(step));
  }
}

// Loading reports the bytes uploaded, rising to the shard's total; on the guarded device every
// weight is really copied, so the total is the file's tensor bytes (a tied embedding counted once).
TEST(LlamaLoadProgress, ReportsUploadedBytesUpToTheTotal) {
  const std::string path = testing::write_tiny_llama(12);
  const auto weights = open_weights(path);
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  const LlamaModel model(*weights, {}, nullptr,
                         ops::make_allocator(Device{DeviceType::kGuarded, 0}), nullptr,
                         [&](uint64_t done, uint64_t total) { calls.emplace_back(done, total); });
  ASSERT_FALSE(calls.empty());
  const uint64_t total = calls.front().second;
  EXPECT_GT(total, 0u);
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].second, total);
    if (i > 0) {
      EXPECT_GT(calls[i].first, calls[i - 1].first);
    }
  }
  EXPECT_EQ(calls.back().first, total);
}

// Decode graphs on the device (CUDA: recorded once, then replayed; guarded: the ops re-run over
// the same persistent buffers) give forward()'s logits: three sequences prefilled op by op, then
// four decode steps of 3 rows (bucket 4: one padding row, slot -1) on a second pool. The padded
// step multiplies 4 rows where forward() multiplies 3 (row-count-dependent kernels, attention
// splits by batch shape): 1e-4 on the host kernels, 1e-3 on CUDA as above.
TEST_P(LlamaOnDevice, DecodeGraphsMatchForward) {
  const Device device{GetParam(), 0};
  std::string why;
  const std::shared_ptr<Allocator> alloc = allocator_of(device, why);
  if (!alloc) GTEST_SKIP() << device.str() << " is not available here: " << why;
  const auto weights = open_weights(testing::write_tiny_llama(13));
  const LlamaModel m(*weights, {}, nullptr, alloc);
  kv_cache::KvPoolParams kp = m.kv_shape(4);
  kp.num_blocks = 16;
  kv_cache::KvPool eager(kp, alloc), graphed(kp, alloc);
  DecodeGraphs graphs(m, graphed, {.buckets = {1, 2, 4}, .max_blocks_per_seq = 4});
  EXPECT_EQ(graphs.records(), device.is_cuda());
  // Sequence i owns blocks 4i .. 4i + 3.
  std::vector<int32_t> tables(12);
  for (int i = 0; i < 12; ++i) tables[static_cast<size_t>(i)] = i;
  std::vector<std::vector<int32_t>> seqs{{1, 9, 4}, {5, 6, 60, 17, 2}, {33, 8}};
  // A step feeding sequence s its tokens from position cached[s] on (slot 16 s + position), each
  // sequence's last row wanted.
  struct Step {
    std::vector<int32_t> tokens, positions, slots, starts{0}, context, rows;
  };
  const auto make_step = [&](const std::vector<size_t>& cached) {
    Step st;
    for (size_t s = 0; s < seqs.size(); ++s) {
      for (size_t p = cached[s]; p < seqs[s].size(); ++p) {
        st.tokens.push_back(seqs[s][p]);
        st.positions.push_back(static_cast<int32_t>(p));
        st.slots.push_back(static_cast<int32_t>(16 * s + p));
      }
      st.starts.push_back(static_cast<int32_t>(st.tokens.size()));
      st.context.push_back(static_cast<int32_t>(seqs[s].size()));
      st.rows.push_back(static_cast<int32_t>(st.tokens.size()) - 1);
    }
    return st;
  };
  const auto batch_of = [&](const Step& st) {
    return ForwardBatch{.tokens = st.tokens,
                        .positions = st.positions,
                        .slots = st.slots,
                        .query_start = st.starts,
                        .context_lens = st.context,
                        .block_tables = tables,
                        .max_blocks_per_seq = 4,
                        .logit_rows = st.rows};
  };
  {  // the prompts, op by op on both pools
    const Step prefill = make_step({0, 0, 0});
    const ForwardBatch b = batch_of(prefill);
    EXPECT_FALSE(graphs.forward(b).defined());  // a prefill: not for a graph
    m.forward(b, eager);
    m.forward(b, graphed);
  }
  for (auto& q : seqs) q.push_back(7);  // each sequence's next token, not yet cached
  const float tol = device.is_cuda() ? 1e-3f : 1e-4f;
  for (int step = 0; step < 4; ++step) {
    const Step decode = make_step({seqs[0].size() - 1, seqs[1].size() - 1, seqs[2].size() - 1});
    const ForwardBatch b = batch_of(decode);
    const Tensor want = to_host(m.forward(b, eager));
    const Tensor got_dev = graphs.forward(b);
    ASSERT_TRUE(got_dev.defined()) << "step " << step;
    const Tensor got = to_host(got_dev);
    ASSERT_EQ(got.shape(), want.shape());
    for (int64_t i = 0; i < want.numel(); ++i)
      ASSERT_NEAR(got.data_as<float>()[i], want.data_as<float>()[i], tol)
          << "step " << step << " [" << i << "]";
    const int64_t V = want.dim(1);
    for (size_t s = 0; s < seqs.size(); ++s) {  // greedy next token from the eager logits
      const float* r = want.data_as<float>() + static_cast<int64_t>(s) * V;
      seqs[s].push_back(static_cast<int32_t>(std::max_element(r, r + V) - r));
    }
  }
  EXPECT_EQ(graphs.replays(), 4);
}

INSTANTIATE_TEST_SUITE_P(Devices, LlamaOnDevice,
                         ::testing::Values(DeviceType::kGuarded, DeviceType::kCUDA),
                         [](const auto& info) {
                           return std::string(info.param == DeviceType::kGuarded ? "guarded"
                                                                                 : "cuda");
                         });

}  // namespace
}  // namespace tessera::model
