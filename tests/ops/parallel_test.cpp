// The ops' chunk pool (src/ops/cpu/parallel.h): every chunk runs exactly once, for many jobs in a
// row (the epoch/claim protocol), on several thread counts, nested calls run inline, and the ops
// that use it give the same answer with 1 and several threads.
#include "../../src/ops/cpu/parallel.h"

#include <omp.h>

#include <atomic>
#include <thread>
#include <vector>

#include "test_util.h"

namespace tessera::ops::test {
namespace {

using cpu::detail::parallel_for;
using cpu::detail::run_chunks;

// 300 jobs of 1..max_chunks chunks on `threads` threads: every chunk of every job runs once.
void expect_every_chunk_once(int threads, int stride, int max_chunks) {
  SCOPED_TRACE("threads=" + std::to_string(threads));
  for (int job = 0; job < 300; ++job) {
    const int64_t chunks = 1 + (job * stride) % max_chunks;
    std::vector<std::atomic<int>> hits(static_cast<size_t>(chunks));
    auto body = [&](int64_t c) { hits[static_cast<size_t>(c)].fetch_add(1); };
    run_chunks(
        threads, chunks, [](void* ctx, int64_t c) { (*static_cast<decltype(body)*>(ctx))(c); },
        &body);
    for (int64_t c = 0; c < chunks; ++c)
      ASSERT_EQ(hits[static_cast<size_t>(c)].load(), 1) << "job " << job << " chunk " << c;
  }
}

TEST(ChunkPoolTest, EveryChunkExactlyOnceAcrossManyJobs) {
  for (int threads : {2, 3, 4}) expect_every_chunk_once(threads, 37, 500);
}

// Prefetch hints posted from another thread while jobs run (the workers take them between jobs)
// never cost a chunk or run one twice.
TEST(ChunkPoolTest, PrefetchHintsNeverDisturbJobs) {
  std::vector<char> buffer(1 << 20, 1);
  std::atomic<bool> stop{false};
  std::thread hinter([&] {
    for (int i = 0; !stop.load(); ++i) {
      const cpu::detail::PrefetchRange r[] = {
          {i % 3, buffer.data() + (i % 16) * 4096, size_t{256} << 10},
          {0, buffer.data(), buffer.size()}};
      cpu::detail::hint_prefetch(r);
      std::this_thread::yield();
    }
  });
  for (int threads : {2, 4}) expect_every_chunk_once(threads, 53, 300);
  stop = true;
  hinter.join();
}

TEST(ChunkPoolTest, NestedAndDegenerateCalls) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(2);
  std::atomic<int64_t> total{0};
  parallel_for(16, [&](int64_t) {
    parallel_for(10, [&](int64_t c) { total += c; });  // inline inside a chunk
  });
  EXPECT_EQ(total.load(), 16 * 45);
  int ran = 0;
  parallel_for(0, [&](int64_t) { ++ran; });
  parallel_for(1, [&](int64_t) { ++ran; });
  parallel_for(
      5, [&](int64_t) { ++ran; }, /*parallel=*/false);
  EXPECT_EQ(ran, 6);
  omp_set_num_threads(saved);
}

class ThreadCountTest : public SeededTest {};

TEST_F(ThreadCountTest, OpsBitIdenticalForOneAndFourThreads) {
  // Each output element is computed by one chunk whatever the thread count, so results must be
  // bit-identical, not just close.
  Tensor w = random_weight(DType::kQ4_1, 700, 576);
  const int saved = omp_get_max_threads();
  for (int64_t m : {1, 8, 40}) {
    Tensor x = random_f32({m, 576});
    Tensor y1 = Tensor::empty({m, 700}, DType::kF32), y4 = Tensor::empty({m, 700}, DType::kF32);
    omp_set_num_threads(1);
    cpu::matmul(x, w, Tensor(), y1);
    omp_set_num_threads(4);
    cpu::matmul(x, w, Tensor(), y4);
    for (int64_t i = 0; i < m * 700; ++i)
      ASSERT_EQ(y1.data_as<float>()[i], y4.data_as<float>()[i]) << "M=" << m << " i=" << i;
  }
  omp_set_num_threads(saved);
}

}  // namespace
}  // namespace tessera::ops::test
