// The packed integer kernel (packed.h) on AMX tiles (Sapphire Rapids and later Xeons), for
// prefill-sized calls: per 32-element block, one tile multiply of 16 activation rows (tile A,
// signed bytes, read in place from the ActBlocks with their stride) by 16 weight rows (tile B:
// the two 8-row groups' unpacked slices, which are B's VNNI layout as they stand: row j holds
// elements 4j..4j+3 of each of the 16 weight rows) gives the 16 x 16 exact int32 block sums S;
// then each (activation row, weight row) takes packed.h's fp32 steps in packed.h's order, so the
// results are bitwise those of every other kernel. Why: prefill spends its time in the dot
// products, and one tile multiply replaces 128 vpdpbusd (AVX-512 VNNI: two broadcasts and two
// dot products per activation row and slice), leaving the per-block scaling as the work; the B
// tiles are unpacked once per pair of groups and reused by every row tile.
// Activation rows beyond the last whole 16, a last odd 8-row group and the K-quants take the
// AVX-512 VNNI kernels (this file compiles them too). Called only when cpu_has(kAmx): the CPU has
// AMX-INT8 and the kernel granted this process the tile state (arch_prctl, once, in the probe).
// State: the tile configuration is loaded per call and released at its end; a per-thread buffer
// of B tiles, reused.
#include <cstdint>
#include <vector>

#include "simd.h"

#if defined(__clang__)
#pragma clang attribute push(                                                             \
    __attribute__((                                                                       \
        target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni,amx-tile,amx-int8"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni,amx-tile,amx-int8")
// As in matvec_int8_avx512vnni.cpp: GCC 12's 512-bit intrinsics trip -Wmaybe-uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace tessera::ops::cpu::detail {
namespace {
inline __m256i acc_u8s8(__m256i acc, __m256i u, __m256i s) {
  return _mm256_dpbusd_epi32(acc, u, s);
}
constexpr size_t kPrefetchAhead = 16384;  // as the AVX-512 VNNI file (measured there)
constexpr bool kInt16Sums = false;
}  // namespace
}  // namespace tessera::ops::cpu::detail

#include "packed_kernel.h"
#include "packed_kernel512.h"

namespace tessera::ops::cpu::detail {
namespace {

// Activation rows per tile multiply (A's and C's rows): a whole tile. The 16 rows' products
// accumulators stay in 16 registers across the blocks; the minimum terms (which need no tile)
// are summed in a second pass over the blocks with another 16.
constexpr int kTileRows = 16;

// The tile configuration (palette 1): two sets, so one block's tile multiply runs while the
// previous block's sums are scaled: C tiles 0 and 3 (16 rows x 16 int32), A tiles 1 and 4 (16
// activation rows x 32 bytes), B tiles 2 and 5 (8 rows of 4-byte groups x 16 weight rows).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

TileConfig tile_config() {
  TileConfig c;
  for (int set : {0, 3}) {
    c.colsb[set] = 64, c.rows[set] = kTileRows;          // C
    c.colsb[set + 1] = 32, c.rows[set + 1] = kTileRows;  // A
    c.colsb[set + 2] = 64, c.rows[set + 2] = 8;          // B
  }
  return c;
}

// Tile B of every block of one pair of 8-row groups (512 bytes each), built on the first row tile
// and read by the others: one buffer per thread, grown to the widest k seen.
int8_t* b_tiles(int64_t blocks) {
  thread_local std::vector<int8_t> buf;
  const auto need = static_cast<size_t>(blocks) * 512 + 64;
  if (buf.size() < need) buf.resize(need);
  const auto addr = reinterpret_cast<uintptr_t>(buf.data());
  return buf.data() + ((64 - addr % 64) % 64);  // 64-byte aligned for the stores
}

template <DType T>
struct AmxType {
  static constexpr bool kFive = T == DType::kQ5_0x8 || T == DType::kQ5_1x8;
  static constexpr bool kMin = T == DType::kQ4_1x8 || T == DType::kQ5_1x8;
  static constexpr bool kEight = T == DType::kQ8_0x8;
  static constexpr size_t kQh = kMin ? 32 : 16;
  static constexpr size_t kQuants = kQh + (kFive ? 32 : 0);
  static constexpr size_t kBlock = kQuants + (kEight ? 256 : 128);
};

// Unpacks the block at blk (group g; group g + 1's at blk + stride) into tile B's layout at bb,
// prefetching the weights kPrefetchAhead on.
template <DType T>
__attribute__((always_inline)) inline void build_b(const uint8_t* blk, size_t stride, int8_t* bb) {
  using P = AmxType<T>;
  for (size_t l = 0; l < P::kBlock; l += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetchAhead + l), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(blk + stride + kPrefetchAhead + l), _MM_HINT_T0);
  }
  const uint8_t* q = blk + P::kQuants;
  if constexpr (P::kEight) {
    for (int j = 0; j < 8; ++j) _mm512_store_si512(bb + 64 * j, load_pair(q + 32 * j, stride));
  } else {
    __m512i qh = _mm512_setzero_si512();
    if constexpr (P::kFive) qh = load_pair(blk + P::kQh, stride);
    for (int j = 0; j < 4; ++j) {
      __m512i lo, hi;
      unpack_pair<P::kFive>(q, stride, qh, j, lo, hi);
      _mm512_store_si512(bb + 64 * j, lo);        // elements 4j..4j+3 of each row
      _mm512_store_si512(bb + 64 * (4 + j), hi);  // elements 16 + 4j..16 + 4j + 3
    }
  }
}

// Block b's scaling of its 16 x 16 sums ct into the row tile's accumulators (packed.h's acc step).
template <DType T>
__attribute__((always_inline)) inline void scale_block(const uint8_t* blk, size_t stride,
                                                       const ActBlock* xs, int64_t nb, int64_t b,
                                                       const int32_t (*ct)[16], __m512* acc) {
  const __m512 dw = cvtph_pair(blk, stride);
  for (int m = 0; m < kTileRows; ++m) {
    const __m512 s = _mm512_cvtepi32_ps(_mm512_load_si512(ct[m]));
    acc[m] = _mm512_fmadd_ps(s, _mm512_mul_ps(dw, _mm512_set1_ps(xs[m * nb + b].d)), acc[m]);
  }
}

// packed.h's off step over all blocks (its fma chain in block order, as every kernel has it;
// nothing of it depends on the sums, so it can run after them).
template <DType T>
__attribute__((always_inline)) inline void offsets(const uint8_t* grp, size_t stride,
                                                   const ActBlock* xs, int64_t nb, __m512* off) {
  using P = AmxType<T>;
  for (int m = 0; m < kTileRows; ++m) off[m] = _mm512_setzero_ps();
  if constexpr (P::kEight) return;  // Q8_0 has no minimum: off stays 0
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = grp + static_cast<size_t>(b) * P::kBlock;
    const __m512 dw = cvtph_pair(blk, stride);
    __m512 c;
    if constexpr (T == DType::kQ4_0x8) c = _mm512_mul_ps(dw, _mm512_set1_ps(-8.0f));
    if constexpr (T == DType::kQ5_0x8) c = _mm512_mul_ps(dw, _mm512_set1_ps(-16.0f));
    if constexpr (P::kMin) c = cvtph_pair(blk + 16, stride);
    for (int m = 0; m < kTileRows; ++m)
      off[m] = _mm512_fmadd_ps(c, _mm512_set1_ps(xs[m * nb + b].s), off[m]);
  }
}

// GCC's tileloadd and ldtilecfg are asm statements that do not tell the compiler they read memory
// (ldtilecfg names only the configuration's first 8 bytes), so the stores that fill a B tile or the
// configuration could legally be moved after them; this barrier keeps them before. (tilestored
// declares its write.) It emits no instruction.
inline void stores_before_tile_reads() { __asm__ volatile("" ::: "memory"); }

// The tile multiply C += A . B of one set (tile numbers are literals in the instruction).
#define TESSERA_AMX_DP(c, a, b) \
  do {                          \
    if constexpr (P::kEight)    \
      _tile_dpbssd(c, a, b);    \
    else                        \
      _tile_dpbsud(c, a, b);    \
  } while (0)

// Rows [n0, n1) ((n1 - n0) % 16 == 0) against activation rows [0, a.m_count) with m_count % 16 ==
// 0, one 16 x 16 tile of outputs at a time. Blocks alternate between the two tile sets: block
// b + 1's multiply is issued before block b's sums are stored and scaled (the scaling still runs
// in block order, so the fp32 steps are packed.h's; storing b's sums before issuing b + 1 was no
// faster).
template <DType T>
void amx_pairs(const Int8Args& a, int64_t n0, int64_t n1) {
  using P = AmxType<T>;
  const int64_t nb = a.k / 32;
  const size_t stride = static_cast<size_t>(kPackRows) * a.w_row_bytes;
  const size_t a_stride = static_cast<size_t>(nb) * sizeof(ActBlock);
  int8_t* bt = b_tiles(nb);
  alignas(64) int32_t ct0[kTileRows][16], ct1[kTileRows][16];  // the C tiles, stored
  for (int64_t n = n0; n < n1; n += 2 * kPackRows) {
    const uint8_t* grp = a.w + static_cast<size_t>(n) * a.w_row_bytes;
    for (int m0 = 0; m0 < a.m_count; m0 += kTileRows) {
      const bool first = m0 == 0;  // the weights stream (and B is unpacked) on the first pass
      __m512 acc[kTileRows];
      for (int m = 0; m < kTileRows; ++m) acc[m] = _mm512_setzero_ps();
      const ActBlock* xs = a.x + m0 * nb;
      auto blk = [&](int64_t b) { return grp + static_cast<size_t>(b) * P::kBlock; };
      if (first) build_b<T>(blk(0), stride, bt);
      stores_before_tile_reads();
      _tile_loadd(2, bt, 64);
      _tile_loadd(1, xs[0].qs, a_stride);
      _tile_zero(0);
      TESSERA_AMX_DP(0, 1, 2);
      for (int64_t b = 0; b < nb; b += 2) {
        if (b + 1 < nb) {  // block b + 1 on set 1
          int8_t* bb = bt + (b + 1) * 512;
          if (first) build_b<T>(blk(b + 1), stride, bb);
          stores_before_tile_reads();
          _tile_loadd(5, bb, 64);
          _tile_loadd(4, xs[b + 1].qs, a_stride);
          _tile_zero(3);
          TESSERA_AMX_DP(3, 4, 5);
        }
        _tile_stored(0, ct0, 64);
        scale_block<T>(blk(b), stride, xs, nb, b, ct0, acc);
        if (b + 1 < nb) {
          if (b + 2 < nb) {  // block b + 2 on set 0
            int8_t* bb = bt + (b + 2) * 512;
            if (first) build_b<T>(blk(b + 2), stride, bb);
            stores_before_tile_reads();
            _tile_loadd(2, bb, 64);
            _tile_loadd(1, xs[b + 2].qs, a_stride);
            _tile_zero(0);
            TESSERA_AMX_DP(0, 1, 2);
          }
          _tile_stored(3, ct1, 64);
          scale_block<T>(blk(b + 1), stride, xs, nb, b + 1, ct1, acc);
        }
      }
      __m512 off[kTileRows];
      offsets<T>(grp, stride, xs, nb, off);
      for (int m = 0; m < kTileRows; ++m) {
        __m512 y = _mm512_add_ps(acc[m], off[m]);
        if (a.bias) y = _mm512_add_ps(y, _mm512_loadu_ps(a.bias + n));
        _mm512_storeu_ps(a.y + (m0 + m) * a.ldy + n, y);
      }
    }
  }
}
#undef TESSERA_AMX_DP

}  // namespace

void packed_rows_amx(const Int8Args& a, int64_t n0, int64_t n1) {
  prefetch_start(a, n0, n1);
  const int tiled_m = a.m_count / kTileRows * kTileRows;
  const int64_t pairs_end = n0 + (n1 - n0) / (2 * kPackRows) * (2 * kPackRows);
  if (tiled_m == 0 || pairs_end == n0) return packed_rows_512_impl(a, n0, n1);
  Int8Args t = a;
  t.m_count = tiled_m;
  const TileConfig cfg = tile_config();
  stores_before_tile_reads();
  _tile_loadconfig(&cfg);
  const bool tiled = with_pair_type(
      a.wtype, [&](auto type) { amx_pairs<decltype(type)::value>(t, n0, pairs_end); });
  _tile_release();
  if (!tiled) return packed_rows_512_impl(a, n0, n1);  // the K-quants
  if (tiled_m < a.m_count) {  // the last rows (fewer than 16) on the VNNI kernel
    Int8Args r = a;
    const int64_t nb = a.k / 32;
    r.x = a.x + tiled_m * nb;
    r.y = a.y + static_cast<int64_t>(tiled_m) * a.ldy;
    r.m_count = a.m_count - tiled_m;
    packed_rows_512_impl(r, n0, pairs_end);
  }
  if (pairs_end < n1) packed_rows_512_impl(a, pairs_end, n1);
}

}  // namespace tessera::ops::cpu::detail

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
