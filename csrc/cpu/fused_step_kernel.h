// The fused recurrent step (float32), compiled per vector capability with the pointwise kernels:
// for a block of V hidden units (V = the vector width) and a tile of rows, accumulate
// h_{t-1} W_hh^T for the four gates of those units in registers, add it into the step's gate
// pre-activations (with input fusion, written first as bias + x_t W_ih^T by the same tile), and
// run the shared pointwise code (pointwise_units.h) on them while they are still in L1. Each
// thread owns whole blocks, so its slice of the packed weights stays in its cache from step to
// step.
//
// Packed weight layout (fused_step.cpp packs it): [block][k][gate][lane], V lanes per block,
// units past H zero-padded, so one unaligned vector load per gate per k.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <fusedlstm/pointwise_units.h>

#include <algorithm>
#include <type_traits>

#include "pointwise_cpu.h"

namespace fusedlstm::cpu {
inline namespace CPU_CAPABILITY {

using FusedVec = at::vec::Vectorized<float>;

inline int64_t fused_block_width() { return FusedVec::size(); }

// Rows per register tile of C vectors: R x C accumulators, C weight vectors and a broadcast in
// the register file. 32 zmm on AVX-512: 4 rows. 16 ymm on AVX2: 3 rows of 4 vectors (17, one
// spilled weight load folded into an FMA) and 4 rows of GRU's 3 (16) measured fastest; 4 rows
// of 4 vectors spill and cost the LSTM step 1.4x (docs/performance.md).
template <int C>
constexpr int fused_rows() {
#if defined(CPU_CAPABILITY_AVX512)
  return 4;
#else
  return C >= 4 ? 3 : 4;
#endif
}

// One operand of the fused step's GEMM: `rows` (row stride `stride`, `inner` columns) times a
// weight packed as [block][k][gate][lane] (h_{t-1} and W_hh; with input fusion also x_t and W_ih).
// T: float, or the bits of bfloat16 (uint16_t; the weight then in pairs of k, fused_step_bf16.cpp).
template <class T>
struct Operand {
  const T* rows;
  int64_t stride;
  int64_t inner;
  const T* packed;
};
using FusedOperand = Operand<float>;

template <class T>
inline Operand<T> recurrent_operand(const FusedStepArgs& a) {
  return {static_cast<const T*>(a.h_prev), a.h_prev_stride, a.inner,
          static_cast<const T*>(a.packed_weight)};
}

template <class T>
inline Operand<T> input_operand(const FusedStepArgs& a) {
  return {static_cast<const T*>(a.x), a.x_stride, a.x_inner,
          static_cast<const T*>(a.packed_input_weight)};
}

// Where a tile's sums are written: rows of `dest` (row stride `row_stride`), added to what they
// hold, or, for the first k chunk of a part that starts the sums (`init`), to the bias (row
// stride 0; nullptr: zero).
struct TileTarget {
  TileColumns columns;
  float* dest;
  int64_t row_stride;
  const float* bias;
  bool init;

  // What vector c's sums of row r are added to.
  const float* base(int64_t r, int64_t block, int c) const {
    if (!init) return dest + r * row_stride + columns.column(block, c);
    return bias == nullptr ? nullptr : bias + columns.column(block, c);
  }
};

// The LSTM step's pre-activations as a tile target (4 gates; `init`: the input part's first
// chunk, from the bias).
inline TileTarget lstm_target(const FusedStepArgs& a, bool init) {
  const int64_t H = a.pointwise.hidden;
  return {gate_columns(H, FusedVec::size()),
          static_cast<float*>(const_cast<void*>(a.pointwise.preact)), 4 * H, a.bias, init};
}

// Cache lines a tile prefetches into L2 while it runs, one per k: its share of the weights the
// next k pass reads (see fused_forward_blocks_with).
struct WeightPrefetch {
  const char* first = nullptr;
  int64_t lines = 0;

  void at(int64_t i) const {
    if (i < lines) __builtin_prefetch(first + i * 64, 0, 2);
  }
};

// The weights a k pass [k0, k1) of a part reads for one block: a tile of C float32 vectors.
struct WeightRange {
  const char* first = nullptr;
  int64_t bytes = 0;
};

template <int C>
inline WeightRange float_pass_weights(const FusedOperand& op, int64_t block, int64_t k0,
                                      int64_t k1) {
  constexpr int64_t V = FusedVec::size();
  const float* w = op.packed + (block * op.inner + k0) * C * V;
  return {reinterpret_cast<const char*>(w), (k1 - k0) * C * V * int64_t{sizeof(float)}};
}

// Adds the k in [k0, k1) part of op.rows op.W^T for R rows x the C vectors of one block into the
// target. Generic version on at::vec; see the AVX-512 one below for why there is a second. The
// k loop's body unrolled by `each` (flattened): with plain loops over r and c, GCC kept the
// accumulators on the stack once the loop also prefetched (the GRU step ran 2.8x slower).
template <int R, int C>
FUSEDLSTM_FLATTEN inline void fused_accumulate(const TileTarget& t, const FusedOperand& op,
                                               int64_t row0, int64_t block, int64_t k0,
                                               int64_t k1, const WeightPrefetch& prefetch = {}) {
  constexpr int64_t V = FusedVec::size();
  const int64_t K = op.inner;
  const float* w = op.packed + block * K * C * V;
  const float* rows[R];
  each<R>([&](int r) { rows[r] = op.rows + (row0 + r) * op.stride; });
  FusedVec acc[R][C];
  each<R>([&](int r) { each<C>([&](int c) { acc[r][c] = FusedVec(0.0f); }); });
  const auto step = [&](int64_t k) {
    const float* wk = w + k * C * V;
    FusedVec wv[C];
    each<C>([&](int c) { wv[c] = FusedVec::loadu(wk + c * V); });
    each<R>([&](int r) {
      const FusedVec h(rows[r][k]);
      each<C>([&](int c) { acc[r][c] = at::vec::fmadd(wv[c], h, acc[r][c]); });
    });
  };
  const int64_t prefetching_end = k0 + std::min(prefetch.lines, k1 - k0);
  int64_t k = k0;
  for (; k < prefetching_end; ++k) {
    __builtin_prefetch(prefetch.first + (k - k0) * 64, 0, 2);
    step(k);
  }
  for (; k < k1; ++k) step(k);
  for (int r = 0; r < R; ++r) {
    float* row = t.dest + (row0 + r) * t.row_stride;
    for (int c = 0; c < C; ++c) {
      const int64_t lanes = t.columns.lanes(block, c, V);
      if (lanes == 0) continue;
      const float* base = t.base(row0 + r, block, c);
      const FusedVec before = base == nullptr ? FusedVec(0.0f) : FusedVec::loadu(base, lanes);
      (before + acc[r][c]).store(row + t.columns.column(block, c), lanes);
    }
  }
}

#if defined(CPU_CAPABILITY_AVX512)
// Adds a register tile's sums (R rows x C vectors of one block, 16 lanes, float32) into the
// target, masked to the units that exist. The AVX-512 tiles' epilogue: float32 here, bfloat16
// in fused_step_bf16.cpp.
template <int R, int C>
inline void add_tile_sums(const TileTarget& t, int64_t row0, int64_t block,
                          const __m512 (&sums)[R][C]) {
  constexpr int64_t V = 16;
  for (int c = 0; c < C; ++c) {
    const int64_t lanes = t.columns.lanes(block, c, V);
    if (lanes == 0) continue;
    const __mmask16 mask = static_cast<__mmask16>((1u << lanes) - 1u);
    for (int r = 0; r < R; ++r) {
      float* p = t.dest + (row0 + r) * t.row_stride + t.columns.column(block, c);
      const float* base = t.base(row0 + r, block, c);
      const __m512 before =
          base == nullptr ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask, base);
      _mm512_mask_storeu_ps(p, mask, _mm512_add_ps(before, sums[r][c]));
    }
  }
}

// Four rows x four vectors with sixteen named zmm accumulators. GCC keeps an array of Vectorized
// accumulators in memory and stores it on every k iteration (seen in objdump), which made the
// generic tile store-bound; named __m512 values stay in registers (16 + 4 weights + 1 broadcast
// of 32).
template <>
inline void fused_accumulate<4, 4>(const TileTarget& t, const FusedOperand& op, int64_t row0,
                                   int64_t block, int64_t k0, int64_t k1,
                                   const WeightPrefetch& prefetch) {
  constexpr int64_t V = 16;
  const int64_t K = op.inner;
  const float* w = op.packed + block * K * 4 * V;
  const float* h0 = op.rows + row0 * op.stride;
  const float* h1 = h0 + op.stride;
  const float* h2 = h1 + op.stride;
  const float* h3 = h2 + op.stride;
  __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
  __m512 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
  __m512 a20 = a00, a21 = a00, a22 = a00, a23 = a00;
  __m512 a30 = a00, a31 = a00, a32 = a00, a33 = a00;
  for (int64_t k = k0; k < k1; ++k) {
    const float* wk = w + k * 4 * V;
    prefetch.at(k - k0);
    const __m512 w0 = _mm512_loadu_ps(wk);
    const __m512 w1 = _mm512_loadu_ps(wk + V);
    const __m512 w2 = _mm512_loadu_ps(wk + 2 * V);
    const __m512 w3 = _mm512_loadu_ps(wk + 3 * V);
    __m512 h = _mm512_set1_ps(h0[k]);
    a00 = _mm512_fmadd_ps(w0, h, a00), a01 = _mm512_fmadd_ps(w1, h, a01);
    a02 = _mm512_fmadd_ps(w2, h, a02), a03 = _mm512_fmadd_ps(w3, h, a03);
    h = _mm512_set1_ps(h1[k]);
    a10 = _mm512_fmadd_ps(w0, h, a10), a11 = _mm512_fmadd_ps(w1, h, a11);
    a12 = _mm512_fmadd_ps(w2, h, a12), a13 = _mm512_fmadd_ps(w3, h, a13);
    h = _mm512_set1_ps(h2[k]);
    a20 = _mm512_fmadd_ps(w0, h, a20), a21 = _mm512_fmadd_ps(w1, h, a21);
    a22 = _mm512_fmadd_ps(w2, h, a22), a23 = _mm512_fmadd_ps(w3, h, a23);
    h = _mm512_set1_ps(h3[k]);
    a30 = _mm512_fmadd_ps(w0, h, a30), a31 = _mm512_fmadd_ps(w1, h, a31);
    a32 = _mm512_fmadd_ps(w2, h, a32), a33 = _mm512_fmadd_ps(w3, h, a33);
  }
  const __m512 sums[4][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13},
                             {a20, a21, a22, a23}, {a30, a31, a32, a33}};
  add_tile_sums<4, 4>(t, row0, block, sums);
}

// Six rows x four vectors: 24 accumulators + 4 weights + 1 broadcast of the 32 zmm. Per k, 10
// loads feed 24 FMAs (4 x 4: 8 for 16), and a block's weights pass through the registers once per
// six rows instead of four.
template <>
inline void fused_accumulate<6, 4>(const TileTarget& t, const FusedOperand& op, int64_t row0,
                                   int64_t block, int64_t k0, int64_t k1,
                                   const WeightPrefetch& prefetch) {
  constexpr int64_t V = 16;
  const int64_t K = op.inner;
  const float* w = op.packed + block * K * 4 * V;
  const float* h0 = op.rows + row0 * op.stride;
  const float* h1 = h0 + op.stride;
  const float* h2 = h1 + op.stride;
  const float* h3 = h2 + op.stride;
  const float* h4 = h3 + op.stride;
  const float* h5 = h4 + op.stride;
  __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
  __m512 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
  __m512 a20 = a00, a21 = a00, a22 = a00, a23 = a00;
  __m512 a30 = a00, a31 = a00, a32 = a00, a33 = a00;
  __m512 a40 = a00, a41 = a00, a42 = a00, a43 = a00;
  __m512 a50 = a00, a51 = a00, a52 = a00, a53 = a00;
  for (int64_t k = k0; k < k1; ++k) {
    const float* wk = w + k * 4 * V;
    prefetch.at(k - k0);
    const __m512 w0 = _mm512_loadu_ps(wk);
    const __m512 w1 = _mm512_loadu_ps(wk + V);
    const __m512 w2 = _mm512_loadu_ps(wk + 2 * V);
    const __m512 w3 = _mm512_loadu_ps(wk + 3 * V);
    __m512 h = _mm512_set1_ps(h0[k]);
    a00 = _mm512_fmadd_ps(w0, h, a00), a01 = _mm512_fmadd_ps(w1, h, a01);
    a02 = _mm512_fmadd_ps(w2, h, a02), a03 = _mm512_fmadd_ps(w3, h, a03);
    h = _mm512_set1_ps(h1[k]);
    a10 = _mm512_fmadd_ps(w0, h, a10), a11 = _mm512_fmadd_ps(w1, h, a11);
    a12 = _mm512_fmadd_ps(w2, h, a12), a13 = _mm512_fmadd_ps(w3, h, a13);
    h = _mm512_set1_ps(h2[k]);
    a20 = _mm512_fmadd_ps(w0, h, a20), a21 = _mm512_fmadd_ps(w1, h, a21);
    a22 = _mm512_fmadd_ps(w2, h, a22), a23 = _mm512_fmadd_ps(w3, h, a23);
    h = _mm512_set1_ps(h3[k]);
    a30 = _mm512_fmadd_ps(w0, h, a30), a31 = _mm512_fmadd_ps(w1, h, a31);
    a32 = _mm512_fmadd_ps(w2, h, a32), a33 = _mm512_fmadd_ps(w3, h, a33);
    h = _mm512_set1_ps(h4[k]);
    a40 = _mm512_fmadd_ps(w0, h, a40), a41 = _mm512_fmadd_ps(w1, h, a41);
    a42 = _mm512_fmadd_ps(w2, h, a42), a43 = _mm512_fmadd_ps(w3, h, a43);
    h = _mm512_set1_ps(h5[k]);
    a50 = _mm512_fmadd_ps(w0, h, a50), a51 = _mm512_fmadd_ps(w1, h, a51);
    a52 = _mm512_fmadd_ps(w2, h, a52), a53 = _mm512_fmadd_ps(w3, h, a53);
  }
  const __m512 sums[6][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13},
                             {a20, a21, a22, a23}, {a30, a31, a32, a33},
                             {a40, a41, a42, a43}, {a50, a51, a52, a53}};
  add_tile_sums<6, 4>(t, row0, block, sums);
}
#endif

// fn(std::integral_constant<int, n>{}) for the run-time n in [0, Max]: turns a remainder count
// into the compile-time tile size the kernels are instantiated for (n = 0 calls nothing).
template <int Max, class Fn>
inline void with_count(int64_t n, const Fn& fn) {
  if constexpr (Max > 0) {
    if (n == Max) return fn(std::integral_constant<int, Max>{});
    with_count<Max - 1>(n, fn);
  }
}

// fn(std::integral_constant<int, n>{}, at) over [begin, end) in groups of n = N, then one group of
// the fewer than N that remain: the one idiom behind every kernel's full tiles and remainder.
template <int N, class Fn>
inline void for_each_group(int64_t begin, int64_t end, const Fn& fn) {
  int64_t at = begin;
  for (; at + N <= end; at += N) fn(std::integral_constant<int, N>{}, at);
  with_count<N - 1>(end - at, [&](auto n) { fn(n, at); });
}

// Runs the shared per-unit code `Units` (ForwardUnits / BackwardUnits, pointwise_cpu_kernel.h) on
// one vector of units [j0, j0 + V) of rows [row0, row0 + rows): up to kLockstep rows at a time in
// lockstep (their activations interleave, see vector_activations.h) with the lane policy RowPack
// (float32 buffers: RowPackLanes), or row by row for a ragged last vector, as one partial vector
// (unit by unit through libm it cost more than the block's other work).
template <template <typename, typename> class Units, typename scalar_t = float,
          template <int> class RowPack = RowPackLanes, typename Args>
inline void vector_units(const Args& a, int64_t row0, int64_t rows, int64_t j0) {
  constexpr int64_t V = FusedVec::size();
  const int64_t lanes = std::min<int64_t>(V, a.hidden - j0);
  if (lanes < V) {
    using Tail = PartialLanes<typename VectorLanesFor<scalar_t>::type>;
    static_assert(Tail::Compute::size() == V, "the tail is one native float vector");
    Tail::count = lanes;
    for (int64_t row = row0; row < row0 + rows; ++row) Units<scalar_t, Tail>::run(a, row, j0);
    return;
  }
  for_each_group<kLockstep>(row0, row0 + rows, [&](auto n, int64_t row) {
    Units<scalar_t, RowPack<decltype(n)::value>>::run(a, row, j0);
  });
}

// vector_units on one block of V units.
template <template <typename, typename> class Units, typename scalar_t = float,
          template <int> class RowPack = RowPackLanes, typename Args>
inline void block_units(const Args& a, int64_t row0, int64_t rows, int64_t block) {
  vector_units<Units, scalar_t, RowPack>(a, row0, rows, block * FusedVec::size());
}

// k per pass over a block's row tiles when there are several (float32): above, the block's
// weights for a pass (256 x 4 gates x 16 lanes x 4 B = 64 KiB) stream from L2 once per tile
// instead of staying in L1. Smaller passes cost more in their tiles' extra loads and stores of the
// sums: with passes of 128, I = H = 200 (two passes per part) ran 4% slower, with 64 15% slower,
// and H = 512 was the same (docs/performance.md).
constexpr int64_t kFusedInnerChunk = 256;

// Calls tile(std::integral_constant<int, n>, row) over `rows` in tiles of R rows, the remaining
// rows in one last tile, so a block's weights are streamed once more at most.
template <int R, class Tile>
inline void for_each_row_tile(int64_t rows, const Tile& tile) {
  for_each_group<R>(0, rows, tile);
}

// The same with tiles of Wide rows first where the rest still fills whole tiles of R (or
// nothing): 20 rows as 6 + 6 + 4 + 4, 50 as 7 x 6 + 4 + 4, rather than a ragged last tile.
template <int R, int Wide, class Tile>
inline void for_each_wide_row_tile(int64_t rows, const Tile& tile) {
  int64_t at = 0;
  if constexpr (Wide > R) {
    for (; rows - at >= Wide && (rows - at == Wide || rows - at - Wide >= R); at += Wide) {
      tile(std::integral_constant<int, Wide>{}, at);
    }
  }
  for_each_group<R>(at, rows, tile);
}

// A tile's wide row count: Tile::kWideRows where it has one, else Tile::kRows.
template <class Tile>
constexpr int wide_rows() {
  if constexpr (requires { Tile::kWideRows; }) {
    return Tile::kWideRows;
  } else {
    return Tile::kRows;
  }
}

// One part of a fused step (bias + x_t W_ih^T, or h_{t-1} W_hh^T): its operand and where its
// sums go.
template <class Op>
struct TilePart {
  Op op;
  TileTarget target;
};

// The float32 LSTM step's tile for fused_forward_blocks_with: operands of float rows and
// weights, the 4-gate tile above, the gate math on float32 buffers.
struct Float32Tile {
  static constexpr int kRows = fused_rows<4>();
#if defined(CPU_CAPABILITY_AVX512)
  static constexpr int kWideRows = 6;
#endif
  static constexpr int64_t kInnerChunk = kFusedInnerChunk;
  static int64_t rows(const FusedStepArgs& a) { return a.pointwise.rows; }
  static TilePart<FusedOperand> input(const FusedStepArgs& a) {
    return {input_operand<float>(a), lstm_target(a, /*init=*/true)};
  }
  static TilePart<FusedOperand> recurrent(const FusedStepArgs& a) {
    return {recurrent_operand<float>(a), lstm_target(a, /*init=*/false)};
  }
  template <int R>
  static void accumulate(const TileTarget& t, const FusedOperand& op, int64_t row0,
                         int64_t block, int64_t k0, int64_t k1, const WeightPrefetch& prefetch) {
    fused_accumulate<R, 4>(t, op, row0, block, k0, k1, prefetch);
  }
  static WeightRange pass_weights(const FusedOperand& op, int64_t block, int64_t k0, int64_t k1) {
    return float_pass_weights<4>(op, block, k0, k1);
  }
  static void gate_math(const FusedStepArgs& a, int64_t row0, int64_t rows, int64_t block) {
    block_units<ForwardUnits>(a.pointwise, row0, rows, block);
  }
};

// Per block, the parts of the step that `a.parts` asks for: the input part (input fusion), then
// the recurrent part, each in k chunks over the row tiles, then the gate math on the block's
// units while in L1: after each tile's last pass, or, for tiles whose rows split a lockstep
// group, all the block's rows in groups of four after the last pass (per tile, a six-row tile
// ran its rows as 4 + 2, the pair at half the lockstep's overlap: 1-3% of bfloat16 fastrnns and
// lm-2layer float32 inference; the GRU's 4-row tiles keep theirs). While a pass runs, its tiles
// prefetch the weights of the pass after it into L2 (the next step's first pass after the last):
// where a thread's weights do not fit its L2 they come from L3, and the first tile of a pass
// would wait for them.
// Tile: the cell's and element type's rows, parts, register tile and gate math (Float32Tile
// above; the bfloat16 one in fused_step_bf16.cpp; the GRU's and RNN's in fused_state_kernel.h).
// Args: FusedStepArgs or FusedStateStepArgs.
template <class Tile, class Args>
inline void fused_forward_blocks_with(const Args& a, int64_t block_begin, int64_t block_end) {
  const int64_t rows = Tile::rows(a);
  using Part = decltype(Tile::recurrent(a));
  Part parts[2] = {};
  int part_count = 0;
  if ((a.parts & kFusedInputPart) != 0 && a.x != nullptr) parts[part_count++] = Tile::input(a);
  if ((a.parts & kFusedRecurrentPart) != 0) parts[part_count++] = Tile::recurrent(a);
  if (part_count == 0) return;
  // With one tile of rows, a pass streams its weights once, as the hardware prefetcher expects,
  // and the tile's loads are its bottleneck: no prefetch, no k passes.
  const bool several_tiles = rows > Tile::kRows;
  // Tiles whose rows are not whole lockstep groups (6 = 4 + 2; AVX2's 3) leave their gate math
  // to the end of the block, where the rows go in groups of four.
  constexpr bool kSplitsLockstep =
      Tile::kRows % kLockstep != 0 || wide_rows<Tile>() % kLockstep != 0;
  const bool block_gate_math = several_tiles && kSplitsLockstep;
  const auto k_step = [&](const Part& part) {
    return several_tiles ? Tile::kInnerChunk : std::max<int64_t>(part.op.inner, 1);
  };
  // The weights of the pass after the one of part p at (block, k0).
  const auto next_pass = [&](int64_t block, int p, int64_t k0) {
    k0 += k_step(parts[p]);
    if (k0 >= parts[p].op.inner) {
      k0 = 0;
      if (++p == part_count) {
        p = 0;
        if (++block == block_end) block = block_begin;
      }
    }
    const auto& op = parts[p].op;
    return Tile::pass_weights(op, block, k0, std::min(op.inner, k0 + k_step(parts[p])));
  };
  for (int64_t block = block_begin; block < block_end; ++block) {
    for (int p = 0; p < part_count; ++p) {
      const Part& part = parts[p];
      const int64_t K = part.op.inner;
      const bool gate_math = p == part_count - 1 && (a.parts & kFusedRecurrentPart) != 0;
      TileTarget target = part.target;
      for (int64_t k0 = 0; k0 < K; k0 += k_step(part)) {
        const int64_t k1 = std::min(K, k0 + k_step(part));
        target.init = part.target.init && k0 == 0;
        const WeightRange next = several_tiles ? next_pass(block, p, k0) : WeightRange{};
        const int64_t lines = next.bytes / 64;
        for_each_wide_row_tile<Tile::kRows, wide_rows<Tile>()>(rows, [&](auto n, int64_t row) {
          constexpr int R = decltype(n)::value;
          // this tile's share of the next pass's lines, by rows
          const int64_t first = lines * row / rows;
          const WeightPrefetch prefetch{next.first + first * 64, lines * (row + R) / rows - first};
          Tile::template accumulate<R>(target, part.op, row, block, k0, k1, prefetch);
          if (gate_math && k1 == K && !block_gate_math) Tile::gate_math(a, row, R, block);
        });
      }
      if (gate_math && block_gate_math) Tile::gate_math(a, 0, rows, block);
    }
  }
}

inline void fused_forward_blocks(const FusedStepArgs& a, int64_t block_begin, int64_t block_end) {
  fused_forward_blocks_with<Float32Tile>(a, block_begin, block_end);
}

// The backward's recurrent GEMM for R rows and NB consecutive blocks of V output units j:
// grad_h[row][j] (+)= sum over k = (gate g, unit u) of grad_next[row][g * H + u] *
// W_hh[g * H + u][j], for a cell of C gates (LSTM 4, GRU 3, RNN 1); `kAccumulate` adds to what
// grad_h holds (the GRU's direct part of dL/dh). Each k loads one weight vector per block and one
// scalar per row: R * NB FMAs for R + NB loads (4 x 4: 16 FMAs for 8 loads, as the forward tile;
// one block with an accumulator per gate needed 20 loads for 16 FMAs, docs/performance.md).
template <int R, int NB, int C, bool kAccumulate>
inline void recurrent_backward_gemm(const float* grad_next, float* grad_h, const float* packed,
                                    int64_t H, int64_t row0, int64_t block0) {
  constexpr int64_t V = FusedVec::size();
  const int64_t block_stride = H * C * V;
  const float* w = packed + block0 * block_stride;
  const float* dg = grad_next + row0 * C * H;
  FusedVec acc[R][NB];
  each<R>([&](int r) { each<NB>([&](int b) { acc[r][b] = FusedVec(0.0f); }); });
  for (int64_t u = 0; u < H; ++u) {
    for (int64_t g = 0; g < C; ++g) {
      const float* wk = w + (u * C + g) * V;
      FusedVec wv[NB];
      each<NB>([&](int b) { wv[b] = FusedVec::loadu(wk + b * block_stride); });
      each<R>([&](int r) {
        const FusedVec d(dg[r * C * H + g * H + u]);
        each<NB>([&](int b) { acc[r][b] = at::vec::fmadd(wv[b], d, acc[r][b]); });
      });
    }
  }
  float* out = grad_h + row0 * H;
  each<R>([&](int r) {
    each<NB>([&](int b) {
      const int64_t j0 = (block0 + b) * V;
      const int64_t lanes = std::min<int64_t>(V, H - j0);
      float* dest = out + r * H + j0;
      if constexpr (kAccumulate) acc[r][b] = acc[r][b] + FusedVec::loadu(dest, lanes);
      acc[r][b].store(dest, lanes);
    });
  });
}

// The LSTM's: dL/dh_t = dgates_{t+1} W_hh into the step's grad_h_state.
template <int R, int NB>
inline void fused_backward_gemm(const FusedBackwardArgs& a, int64_t row0, int64_t block0) {
  recurrent_backward_gemm<R, NB, 4, false>(static_cast<const float*>(a.step.grad_gates_next),
                                           static_cast<float*>(a.step.grad_h_state),
                                           static_cast<const float*>(a.packed_weight), a.hidden,
                                           row0, block0);
}

// Blocks per backward GEMM tile (see fused_backward_gemm).
constexpr int kBackwardBlocks = 4;

// Calls tile(std::integral_constant<int, n>, block) over [block_begin, block_end) in groups of
// kBackwardBlocks blocks, the remaining ones in one last group.
template <class Tile>
inline void for_each_block_group(int64_t block_begin, int64_t block_end, const Tile& tile) {
  for_each_group<kBackwardBlocks>(block_begin, block_end, tile);
}

// The float32 backward's tile for fused_backward_blocks_with.
struct Float32BackwardTile {
  static constexpr int kRows = fused_rows<kBackwardBlocks>();
  template <int R, int NB>
  static void gemm(const FusedBackwardArgs& a, int64_t row0, int64_t block0) {
    fused_backward_gemm<R, NB>(a, row0, block0);
  }
  static void gate_math(const PointwiseBackwardArgs& a, int64_t block) {
    block_units<BackwardUnits>(a, 0, a.rows, block);
  }
};

// Per group of blocks: dL/dh_t of the group's units from the later step's gate gradients, then
// the pointwise backward of those units while dh is in L1. Tile: the element type's GEMM tile
// and gate math (Float32BackwardTile above; the bfloat16 one in fused_step_bf16.cpp).
template <class Tile>
inline void fused_backward_blocks_with(const FusedBackwardArgs& a, int64_t block_begin,
                                       int64_t block_end) {
  for_each_block_group(block_begin, block_end, [&](auto nb, int64_t block0) {
    constexpr int NB = decltype(nb)::value;
    for_each_row_tile<Tile::kRows>(a.step.gemm_rows, [&](auto n, int64_t row) {
      Tile::template gemm<decltype(n)::value, NB>(a, row, block0);
    });
    for (int64_t block = block0; block < block0 + NB; ++block) {
      Tile::gate_math(a.step.continuing, block);
      Tile::gate_math(a.step.starting, block);
    }
  });
}

inline void fused_backward_blocks(const FusedBackwardArgs& a, int64_t block_begin,
                                  int64_t block_end) {
  fused_backward_blocks_with<Float32BackwardTile>(a, block_begin, block_end);
}

}  // namespace CPU_CAPABILITY
}  // namespace fusedlstm::cpu
