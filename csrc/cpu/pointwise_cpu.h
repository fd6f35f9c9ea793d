// The CPU pointwise kernels, one set per vector capability, over a range of a step's rows.
// Framework-free: the capability translation units include nothing of ATen but at::vec.
#pragma once

#include <fusedlstm/pointwise.h>
#include <fusedlstm/state_cell_units.h>

#include <algorithm>
#include <cstdint>

namespace fusedlstm::cpu {

// Where a register tile's C vectors of one block of units go, as columns of a row of the
// destination buffer. The LSTM's and GRU's tiles hold the C = 4 / 3 gates of V units (vector c
// at column c * H + block * V); the Elman RNN's, with one gate, C = 4 consecutive vectors of
// units (vector c at column block * 4V + c * V), so its tile does as many FMAs per load.
struct TileColumns {
  int64_t hidden;
  int64_t gate_stride;   // columns between the tile's vectors' gates: H, or 0 (one gate)
  int64_t block_units;   // units per block: V, or C * V
  int64_t vector_units;  // units between the tile's vectors: 0 (one vector per gate), or V

  int64_t unit(int64_t block, int c) const { return block * block_units + c * vector_units; }
  int64_t column(int64_t block, int c) const { return c * gate_stride + unit(block, c); }
  // Units of vector c that exist (the last block's are zero-padded in the packed weight).
  int64_t lanes(int64_t block, int c, int64_t width) const {
    return std::clamp<int64_t>(hidden - unit(block, c), 0, width);
  }
};

// The columns of the LSTM's and GRU's tiles: one vector of `width` units per gate and block.
inline TileColumns gate_columns(int64_t hidden, int64_t width) {
  return {hidden, hidden, width, 0};
}

// Vectors per block of the Elman RNN's tiles (its one gate's units, consecutive).
constexpr int kRnnTileVectors = 4;

// The columns of a GRU's or RNN's tiles for vectors of `width` lanes.
inline TileColumns state_tile_columns(StateCell cell, int64_t hidden, int64_t width) {
  if (cell == StateCell::kGru) return gate_columns(hidden, width);
  return {hidden, 0, kRnnTileVectors * width, width};
}

// The vectors of a GRU's or RNN's tile: its gates, or kRnnTileVectors.
inline int state_tile_vectors(StateCell cell) {
  return cell == StateCell::kGru ? 3 : kRnnTileVectors;
}

// The fused recurrent step's arguments: the pointwise step, plus h_{t-1} and the packed W_hh
// (see fused_step_kernel.h). `preact` is updated in place: the kernel adds h_{t-1} W_hh^T into
// it before the pointwise math reads it. With `x` set (input fusion), the kernel first writes
// bias + x_t W_ih^T into `preact` itself: no input projection beforehand.
//
// float32 steps: everything float32, weights packed as [block][k][gate][lane]. bfloat16 steps
// (fused_step_bf16.cpp): h, x, c and the weights bfloat16, the weights packed as
// [block][k / 2][gate][lane][k % 2] (pairs of k for the pairwise dot product), while `preact`
// and `bias` are float32: the sums are accumulated and kept in float32 until the gate math.
struct FusedStepArgs {
  PointwiseForwardArgs pointwise;
  const void* h_prev;  // (rows, inner) with row stride h_prev_stride
  int64_t h_prev_stride;
  int64_t inner;               // P, the size of h_{t-1}
  const void* packed_weight;   // W_hh packed
  const void* x;               // (rows, x_inner) with row stride x_stride, or nullptr
  int64_t x_stride;
  int64_t x_inner;                  // I
  const void* packed_input_weight;  // W_ih packed the same way
  const float* bias;                // (4H) b_ih + b_hh, or nullptr for none
  int parts;  // which of kFusedInputPart / kFusedRecurrentPart this call runs
};

// The two parts of an input-fused step: bias + x_t W_ih^T into `preact` (independent of the step
// before), then + h_{t-1} W_hh^T and the pointwise step. A step without input fusion has only
// the second.
constexpr int kFusedInputPart = 1;
constexpr int kFusedRecurrentPart = 2;

// The GRU's and Elman RNN's fused step (fused_state_kernel.h): the pointwise step
// `state`, whose h_part the kernel writes (b_hh + h_{t-1} W_hh^T, h_{t-1} being state.h_prev;
// state.bias_hh is unused) before the cell math reads it, and with input fusion (`x` set) its
// x_part too (b_ih + x_t W_ih^T). Weights packed as the LSTM's, the tile's vectors being the
// GRU's three gates or four vectors of the RNN's units (TileColumns). float32 steps: everything
// float32; bfloat16 steps (fused_step_bf16.cpp, always with input fusion): x, h and the weights
// bfloat16 (pairs of k), x_part, h_part and the biases float32.
struct FusedStateStepArgs {
  StateForwardArgs state;
  const void* packed_weight;        // W_hh packed
  const void* x;                    // (rows, x_inner) with row stride x_stride, or nullptr
  int64_t x_stride;
  int64_t x_inner;                  // I
  const void* packed_input_weight;  // W_ih packed the same way
  const float* bias_ih;             // (G) or nullptr
  const float* bias_hh;             // (G) or nullptr
  int parts;                        // kFusedInputPart / kFusedRecurrentPart, as FusedStepArgs'
};

// The fused recurrent backward step's arguments: the step and W_hh packed as
// [block][u][gate][lane] (float32, see fused_step_kernel.h) or [block][u / 2][gate][lane][u % 2]
// (bfloat16, fused_step_bf16.cpp; there grad_h_state, dL/dh, is float32).
struct FusedBackwardArgs {
  RecurrentBackwardStep step;
  int64_t hidden;
  const void* packed_weight;
};

// The GRU's and Elman RNN's fused recurrent backward step (float32): the step, its cell (a
// chunk's last step has no rows and no cell of its own), W_hh packed as the LSTM's backward
// weight with the cell's gates.
struct FusedStateBackwardArgs {
  StateRecurrentBackwardStep step;
  StateCell cell;
  int64_t hidden;
  const void* packed_weight;
};

// The row-range kernels each capability translation unit provides.
using ForwardRowsFn = void (*)(const PointwiseForwardArgs&, int64_t row_begin, int64_t row_end);
using BackwardRowsFn = void (*)(const PointwiseBackwardArgs&, int64_t row_begin, int64_t row_end);
using FusedBlocksFn = void (*)(const FusedStepArgs&, int64_t block_begin, int64_t block_end);
using FusedBackwardBlocksFn = void (*)(const FusedBackwardArgs&, int64_t block_begin,
                                       int64_t block_end);
using FusedStateBlocksFn = void (*)(const FusedStateStepArgs&, int64_t block_begin,
                                    int64_t block_end);
using FusedStateBackwardBlocksFn = void (*)(const FusedStateBackwardArgs&, int64_t block_begin,
                                            int64_t block_end);
using StateForwardRowsFn = void (*)(const StateForwardArgs&, int64_t row_begin, int64_t row_end);
using StateBackwardRowsFn = void (*)(const StateBackwardArgs&, int64_t row_begin,
                                     int64_t row_end);
// dst[j * ld_dst + i] = src[i * ld_src + j] for i < rows, j < cols (float32): the fused steps'
// weight packing (weight_packing.cpp).
using TransposeFn = void (*)(const float* src, int64_t ld_src, float* dst, int64_t ld_dst,
                             int64_t rows, int64_t cols);

struct RowKernels {
  ForwardRowsFn forward;
  BackwardRowsFn backward;
  FusedBlocksFn fused_forward;  // over blocks of `block_width` hidden units
  FusedBackwardBlocksFn fused_backward;
  int64_t block_width;
  const char* capability;
  StateForwardRowsFn state_forward;  // GRU and Elman RNN (state_cell_units.h)
  StateBackwardRowsFn state_backward;
  FusedStateBlocksFn fused_state_forward;  // over blocks of state_tile_columns(...).block_units
  FusedStateBackwardBlocksFn fused_state_backward;  // over blocks of `block_width` units
  TransposeFn transpose;
};

// One per capability; AVX2 and AVX-512 exist only in x86-64 builds (FUSEDLSTM_X86_KERNELS).
RowKernels row_kernels_default();
RowKernels row_kernels_avx2();
RowKernels row_kernels_avx512();

// The kernels chosen for this process (honours ATEN_CPU_CAPABILITY, as ATen's own kernels do).
const RowKernels& selected_row_kernels();
// Whether they are the AVX2 ones (no AVX-512), where some back-end rules differ (measured on an
// AMD Zen 3: fused_step.h, cpu_gemm.h).
bool avx2_row_kernels();

// The bfloat16 fused steps (fused_step_bf16.cpp, AVX-512 with the BF16 dot product vdpbf16ps),
// block width 16. Only in x86-64 builds, called only where the CPU has avx512_bf16.
struct Bf16FusedKernels {
  FusedBlocksFn forward;
  FusedBackwardBlocksFn backward;
  FusedStateBlocksFn state_forward;  // GRU and RNN, over blocks of state_tile_columns(..., 16)
};
Bf16FusedKernels bf16_fused_kernels();
constexpr int64_t kBf16BlockWidth = 16;

// bf16_fused_kernels() where this process may use them (the CPU has avx512_bf16 and the selected
// capability is AVX512), otherwise nullptr.
const Bf16FusedKernels* selected_bf16_fused_kernels();

}  // namespace fusedlstm::cpu
