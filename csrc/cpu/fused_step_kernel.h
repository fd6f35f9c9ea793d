// The fused recurrent step (float32), compiled per vector capability with the pointwise kernels:
// for a block of V hidden units (V = the vector width) and a tile of rows, accumulate
// h_{t-1} W_hh^T for the four gates of those units in registers, add it into the step's gate
// pre-activations, and run the shared pointwise code (pointwise_units.h) on them while they are
// still in L1. Each thread owns whole blocks, so its slice of the packed weight stays in its
// cache from step to step.
//
// Packed weight layout (fused_step.cpp packs it): [block][k][gate][lane], V lanes per block,
// units past H zero-padded, so one unaligned vector load per gate per k.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <fusedlstm/pointwise_units.h>

#include <algorithm>

#include "pointwise_cpu.h"

namespace fusedlstm::cpu {
inline namespace CPU_CAPABILITY {

using FusedVec = at::vec::Vectorized<float>;

inline int64_t fused_block_width() { return FusedVec::size(); }

// Rows per register tile: R rows x 4 gates accumulators + 4 weight vectors + a broadcast fit the
// register file (32 zmm on AVX-512, 16 ymm on AVX2).
constexpr int kFusedRowsAvx512 = 4;
constexpr int kFusedRowsOther = 2;

template <int R>
inline void fused_tile(const FusedStepArgs& a, int64_t row0, int64_t block) {
  constexpr int64_t V = FusedVec::size();
  const PointwiseForwardArgs& p = a.pointwise;
  const int64_t H = p.hidden;
  const int64_t K = a.inner;
  const int64_t j0 = block * V;
  const int64_t lanes = std::min<int64_t>(V, H - j0);
  const float* w = a.packed_weight + block * K * 4 * V;
  const float* h_prev = static_cast<const float*>(a.h_prev);

  FusedVec acc[R][4];
  for (int r = 0; r < R; ++r) {
    for (int g = 0; g < 4; ++g) acc[r][g] = FusedVec(0.0f);
  }
  for (int64_t k = 0; k < K; ++k) {
    const float* wk = w + k * 4 * V;
    const FusedVec w0 = FusedVec::loadu(wk);
    const FusedVec w1 = FusedVec::loadu(wk + V);
    const FusedVec w2 = FusedVec::loadu(wk + 2 * V);
    const FusedVec w3 = FusedVec::loadu(wk + 3 * V);
    for (int r = 0; r < R; ++r) {
      const FusedVec h(h_prev[(row0 + r) * a.h_prev_stride + k]);
      acc[r][0] = at::vec::fmadd(w0, h, acc[r][0]);
      acc[r][1] = at::vec::fmadd(w1, h, acc[r][1]);
      acc[r][2] = at::vec::fmadd(w2, h, acc[r][2]);
      acc[r][3] = at::vec::fmadd(w3, h, acc[r][3]);
    }
  }
  // All sums are stored before any pointwise call, so no accumulator is live across a call
  // (GCC would otherwise keep the whole array in memory, inside the k loop too).
  float* preact = static_cast<float*>(const_cast<void*>(p.preact));
  for (int r = 0; r < R; ++r) {
    float* row_gates = preact + (row0 + r) * 4 * H + j0;
    for (int g = 0; g < 4; ++g) {
      const FusedVec sum = FusedVec::loadu(row_gates + g * H, lanes) + acc[r][g];
      sum.store(row_gates + g * H, lanes);
    }
  }
  for (int r = 0; r < R; ++r) {
    if (lanes == V) {
      forward_units<float, FloatVectorLanes>(p, row0 + r, j0);
    } else {
      for (int64_t j = j0; j < j0 + lanes; ++j) {
        forward_units<float, ScalarLanes<float>>(p, row0 + r, j);
      }
    }
  }
}

inline void fused_forward_blocks(const FusedStepArgs& a, int64_t block_begin, int64_t block_end) {
#if defined(CPU_CAPABILITY_AVX512)
  constexpr int R = kFusedRowsAvx512;
#else
  constexpr int R = kFusedRowsOther;
#endif
  const int64_t rows = a.pointwise.rows;
  for (int64_t block = block_begin; block < block_end; ++block) {
    int64_t row = 0;
    for (; row + R <= rows; row += R) fused_tile<R>(a, row, block);
    // The remaining rows in one tile, so the block's weights are streamed once more at most.
    switch (rows - row) {
      case 0: break;
      case 1: fused_tile<1>(a, row, block); break;
      case 2: fused_tile<2>(a, row, block); break;
      default: fused_tile<std::min(3, R)>(a, row, block); break;
    }
  }
}

}  // namespace CPU_CAPABILITY
}  // namespace fusedlstm::cpu
