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

// Adds h_prev W^T for R rows x the 4 gates of one block into the gate pre-activations. Generic
// version on at::vec; see the AVX-512 one below for why there is a second.
template <int R>
inline void fused_accumulate(const FusedStepArgs& a, int64_t row0, int64_t block) {
  constexpr int64_t V = FusedVec::size();
  const int64_t H = a.pointwise.hidden;
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
  float* preact = static_cast<float*>(const_cast<void*>(a.pointwise.preact));
  for (int r = 0; r < R; ++r) {
    float* row_gates = preact + (row0 + r) * 4 * H + j0;
    for (int g = 0; g < 4; ++g) {
      const FusedVec sum = FusedVec::loadu(row_gates + g * H, lanes) + acc[r][g];
      sum.store(row_gates + g * H, lanes);
    }
  }
}

#if defined(CPU_CAPABILITY_AVX512)
// Four rows with sixteen named zmm accumulators. GCC keeps an array of Vectorized accumulators
// in memory and stores it on every k iteration (seen in objdump), which made the generic tile
// store-bound; named __m512 values stay in registers (16 + 4 weights + 1 broadcast of 32).
template <>
inline void fused_accumulate<4>(const FusedStepArgs& a, int64_t row0, int64_t block) {
  constexpr int64_t V = 16;
  const int64_t H = a.pointwise.hidden;
  const int64_t K = a.inner;
  const int64_t j0 = block * V;
  const int64_t lanes = std::min<int64_t>(V, H - j0);
  const float* w = a.packed_weight + block * K * 4 * V;
  const float* h0 = static_cast<const float*>(a.h_prev) + row0 * a.h_prev_stride;
  const float* h1 = h0 + a.h_prev_stride;
  const float* h2 = h1 + a.h_prev_stride;
  const float* h3 = h2 + a.h_prev_stride;
  __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
  __m512 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
  __m512 a20 = a00, a21 = a00, a22 = a00, a23 = a00;
  __m512 a30 = a00, a31 = a00, a32 = a00, a33 = a00;
  for (int64_t k = 0; k < K; ++k) {
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
  const __mmask16 mask = static_cast<__mmask16>((1u << lanes) - 1u);
  float* preact = static_cast<float*>(const_cast<void*>(a.pointwise.preact)) + row0 * 4 * H + j0;
  const __m512 sums[4][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13},
                             {a20, a21, a22, a23}, {a30, a31, a32, a33}};
  for (int r = 0; r < 4; ++r) {
    for (int g = 0; g < 4; ++g) {
      float* p = preact + r * 4 * H + g * H;
      _mm512_mask_storeu_ps(p, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, p), sums[r][g]));
    }
  }
}
#endif

// Accumulates, then runs the shared pointwise code on the tile's units while they are in L1.
template <int R>
inline void fused_tile(const FusedStepArgs& a, int64_t row0, int64_t block) {
  fused_accumulate<R>(a, row0, block);
  constexpr int64_t V = FusedVec::size();
  const int64_t j0 = block * V;
  const int64_t lanes = std::min<int64_t>(V, a.pointwise.hidden - j0);
  for (int r = 0; r < R; ++r) {
    if (lanes == V) {
      forward_units<float, FloatVectorLanes>(a.pointwise, row0 + r, j0);
    } else {
      for (int64_t j = j0; j < j0 + lanes; ++j) {
        forward_units<float, ScalarLanes<float>>(a.pointwise, row0 + r, j);
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
