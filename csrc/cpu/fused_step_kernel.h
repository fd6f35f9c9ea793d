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

// Rows per register tile: R rows x 4 gates accumulators + 4 weight vectors + a broadcast fit the
// register file (32 zmm on AVX-512, 16 ymm on AVX2).
constexpr int kFusedRowsAvx512 = 4;
constexpr int kFusedRowsOther = 2;

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

// What a tile's sums are added to for gate g: the pre-activations so far, or, for the first part
// of an input-fused step (`init`), the bias (row stride 0) or zero (nullptr).
inline const float* tile_base(const FusedStepArgs& a, float* gate_preact, int64_t g, int64_t j0,
                              bool init) {
  if (!init) return gate_preact;
  return a.bias == nullptr ? nullptr : a.bias + g * a.pointwise.hidden + j0;
}

// Adds the k in [k0, k1) part of op.rows op.W^T for R rows x the 4 gates of one block into the
// gate pre-activations (or writes it over them plus the bias, when `init`). Generic version on
// at::vec; see the AVX-512 one below for why there is a second.
template <int R>
inline void fused_accumulate(const FusedStepArgs& a, const FusedOperand& op, int64_t row0,
                             int64_t block, int64_t k0, int64_t k1, bool init) {
  constexpr int64_t V = FusedVec::size();
  const int64_t H = a.pointwise.hidden;
  const int64_t K = op.inner;
  const int64_t j0 = block * V;
  const int64_t lanes = std::min<int64_t>(V, H - j0);
  const float* w = op.packed + block * K * 4 * V;
  FusedVec acc[R][4];
  for (int r = 0; r < R; ++r) {
    for (int g = 0; g < 4; ++g) acc[r][g] = FusedVec(0.0f);
  }
  for (int64_t k = k0; k < k1; ++k) {
    const float* wk = w + k * 4 * V;
    const FusedVec w0 = FusedVec::loadu(wk);
    const FusedVec w1 = FusedVec::loadu(wk + V);
    const FusedVec w2 = FusedVec::loadu(wk + 2 * V);
    const FusedVec w3 = FusedVec::loadu(wk + 3 * V);
    for (int r = 0; r < R; ++r) {
      const FusedVec h(op.rows[(row0 + r) * op.stride + k]);
      acc[r][0] = at::vec::fmadd(w0, h, acc[r][0]);
      acc[r][1] = at::vec::fmadd(w1, h, acc[r][1]);
      acc[r][2] = at::vec::fmadd(w2, h, acc[r][2]);
      acc[r][3] = at::vec::fmadd(w3, h, acc[r][3]);
    }
  }
  float* preact = static_cast<float*>(const_cast<void*>(a.pointwise.preact));
  for (int r = 0; r < R; ++r) {
    float* row_gates = preact + (row0 + r) * 4 * H + j0;
    for (int g = 0; g < 4; ++g) {
      const float* base = tile_base(a, row_gates + g * H, g, j0, init);
      const FusedVec before = base == nullptr ? FusedVec(0.0f) : FusedVec::loadu(base, lanes);
      (before + acc[r][g]).store(row_gates + g * H, lanes);
    }
  }
}

#if defined(CPU_CAPABILITY_AVX512)
// Adds a register tile's sums (R rows x 4 gates of one block of 16 units, float32) into the gate
// pre-activations, or writes them over them plus the bias (`init`), masked to the block's units.
// The AVX-512 tiles' epilogue: float32 here, bfloat16 in fused_step_bf16.cpp.
template <int R>
inline void add_tile_sums(const FusedStepArgs& a, int64_t row0, int64_t block, bool init,
                          const __m512 (&sums)[R][4]) {
  constexpr int64_t V = 16;
  const int64_t H = a.pointwise.hidden;
  const int64_t j0 = block * V;
  const int64_t lanes = std::min<int64_t>(V, H - j0);
  const __mmask16 mask = static_cast<__mmask16>((1u << lanes) - 1u);
  float* preact = static_cast<float*>(const_cast<void*>(a.pointwise.preact)) + row0 * 4 * H + j0;
  for (int r = 0; r < R; ++r) {
    for (int g = 0; g < 4; ++g) {
      float* p = preact + r * 4 * H + g * H;
      const float* base = tile_base(a, p, g, j0, init);
      const __m512 before =
          base == nullptr ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask, base);
      _mm512_mask_storeu_ps(p, mask, _mm512_add_ps(before, sums[r][g]));
    }
  }
}

// Four rows with sixteen named zmm accumulators. GCC keeps an array of Vectorized accumulators
// in memory and stores it on every k iteration (seen in objdump), which made the generic tile
// store-bound; named __m512 values stay in registers (16 + 4 weights + 1 broadcast of 32).
template <>
inline void fused_accumulate<4>(const FusedStepArgs& a, const FusedOperand& op, int64_t row0,
                                int64_t block, int64_t k0, int64_t k1, bool init) {
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
  add_tile_sums<4>(a, row0, block, init, sums);
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
// one block's units of rows [row0, row0 + rows): up to kLockstep rows at a time in lockstep (their
// activations interleave, see vector_activations.h) with the lane policy RowPack (float32
// buffers: RowPackLanes), or row by row for a ragged last block: as one partial vector (float32;
// unit by unit through libm it cost more than the block's other work) or per lane.
template <template <typename, typename> class Units, typename scalar_t = float,
          template <int> class RowPack = RowPackLanes, typename Args>
inline void block_units(const Args& a, int64_t row0, int64_t rows, int64_t block) {
  constexpr int64_t V = FusedVec::size();
  const int64_t j0 = block * V;
  const int64_t lanes = std::min<int64_t>(V, a.hidden - j0);
  if (lanes < V) {
    for (int64_t row = row0; row < row0 + rows; ++row) {
      if constexpr (std::is_same_v<scalar_t, float>) {
        PartialLanes<FloatVectorLanes>::count = lanes;
        Units<float, PartialLanes<FloatVectorLanes>>::run(a, row, j0);
      } else {
        for (int64_t j = j0; j < j0 + lanes; ++j) {
          Units<scalar_t, ScalarLanes<scalar_t>>::run(a, row, j);
        }
      }
    }
    return;
  }
  for_each_group<kLockstep>(row0, row0 + rows, [&](auto n, int64_t row) {
    Units<scalar_t, RowPack<decltype(n)::value>>::run(a, row, j0);
  });
}

// k per pass over a block's row tiles when there are several: the block's weights for it
// (128 x 4 gates x 16 lanes x 4 B = 32 KiB) stay in L1 from tile to tile instead of streaming
// from L2 once per tile.
constexpr int64_t kFusedInnerChunk = 128;

#if defined(CPU_CAPABILITY_AVX512)
constexpr int kFusedRows = kFusedRowsAvx512;
#else
constexpr int kFusedRows = kFusedRowsOther;
#endif

// Calls tile(std::integral_constant<int, n>, row) over `rows` in tiles of kFusedRows rows, the
// remaining rows in one last tile, so a block's weights are streamed once more at most.
template <class Tile>
inline void for_each_row_tile(int64_t rows, const Tile& tile) {
  for_each_group<kFusedRows>(0, rows, tile);
}

// The float32 step's tile for fused_forward_blocks_with: operands of float rows and weights, the
// tile above, the gate math on float32 buffers.
struct Float32Tile {
  static constexpr int64_t kInnerChunk = kFusedInnerChunk;
  static FusedOperand input(const FusedStepArgs& a) { return input_operand<float>(a); }
  static FusedOperand recurrent(const FusedStepArgs& a) { return recurrent_operand<float>(a); }
  template <int R>
  static void accumulate(const FusedStepArgs& a, const FusedOperand& op, int64_t row0,
                         int64_t block, int64_t k0, int64_t k1, bool init) {
    fused_accumulate<R>(a, op, row0, block, k0, k1, init);
  }
  static void gate_math(const PointwiseForwardArgs& a, int64_t row0, int64_t rows, int64_t block) {
    block_units<ForwardUnits>(a, row0, rows, block);
  }
};

// Per block, the parts of the step that `a.parts` asks for: bias + x_t W_ih^T (input fusion),
// then + h_{t-1} W_hh^T, each in k chunks over the row tiles, and the gate math on a tile's units
// right after its last chunk, while in L1. Tile: the element type's operands, register tile and
// gate math (Float32Tile above; the bfloat16 one in fused_step_bf16.cpp).
template <class Tile>
inline void fused_forward_blocks_with(const FusedStepArgs& a, int64_t block_begin,
                                      int64_t block_end) {
  const int64_t rows = a.pointwise.rows;
  // op's product for one block over its k chunks and row tiles; `init`: the first chunk starts
  // from the bias (the input part), `gate_math`: the pointwise step after a tile's last chunk.
  const auto accumulate = [&](const auto& op, int64_t block, bool init, bool gate_math) {
    const int64_t K = op.inner;
    const int64_t k_step = rows > kFusedRows ? Tile::kInnerChunk : std::max<int64_t>(K, 1);
    for (int64_t k0 = 0; k0 < K; k0 += k_step) {
      const int64_t k1 = std::min(K, k0 + k_step);
      for_each_row_tile(rows, [&](auto n, int64_t row) {
        Tile::template accumulate<decltype(n)::value>(a, op, row, block, k0, k1, init && k0 == 0);
        if (gate_math && k1 == K) Tile::gate_math(a.pointwise, row, decltype(n)::value, block);
      });
    }
  };
  const bool input_part = (a.parts & kFusedInputPart) != 0 && a.x != nullptr;
  const bool recurrent_part = (a.parts & kFusedRecurrentPart) != 0;
  for (int64_t block = block_begin; block < block_end; ++block) {
    if (input_part) accumulate(Tile::input(a), block, /*init=*/true, /*gate_math=*/false);
    if (recurrent_part) {
      accumulate(Tile::recurrent(a), block, /*init=*/false, /*gate_math=*/true);
    }
  }
}

inline void fused_forward_blocks(const FusedStepArgs& a, int64_t block_begin, int64_t block_end) {
  fused_forward_blocks_with<Float32Tile>(a, block_begin, block_end);
}

// The backward's recurrent GEMM for R rows and NB consecutive blocks of V output units j:
// grad_h_state[row][j] = sum over k = (gate g, unit u) of grad_gates_next[row][g * H + u] *
// W_hh[g * H + u][j]. Each k loads one weight vector per block and one scalar per row: R * NB
// FMAs for R + NB loads (4 x 4: 16 FMAs for 8 loads, as the forward tile; one block with an
// accumulator per gate needed 20 loads for 16 FMAs, docs/performance.md).
template <int R, int NB>
inline void fused_backward_gemm(const FusedBackwardArgs& a, int64_t row0, int64_t block0) {
  constexpr int64_t V = FusedVec::size();
  const int64_t H = a.hidden;
  const int64_t block_stride = H * 4 * V;
  const float* w = static_cast<const float*>(a.packed_weight) + block0 * block_stride;
  const float* dg = static_cast<const float*>(a.step.grad_gates_next) + row0 * 4 * H;
  FusedVec acc[R][NB];
  each<R>([&](int r) { each<NB>([&](int b) { acc[r][b] = FusedVec(0.0f); }); });
  for (int64_t u = 0; u < H; ++u) {
    for (int64_t g = 0; g < 4; ++g) {
      const float* wk = w + (u * 4 + g) * V;
      FusedVec wv[NB];
      each<NB>([&](int b) { wv[b] = FusedVec::loadu(wk + b * block_stride); });
      each<R>([&](int r) {
        const FusedVec d(dg[r * 4 * H + g * H + u]);
        each<NB>([&](int b) { acc[r][b] = at::vec::fmadd(wv[b], d, acc[r][b]); });
      });
    }
  }
  float* out = static_cast<float*>(a.step.grad_h_state) + row0 * H;
  each<R>([&](int r) {
    each<NB>([&](int b) {
      const int64_t j0 = (block0 + b) * V;
      acc[r][b].store(out + r * H + j0, std::min<int64_t>(V, H - j0));
    });
  });
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
    for_each_row_tile(a.step.gemm_rows, [&](auto n, int64_t row) {
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
