// The GRU's and Elman RNN's fused recurrent step (float32), on the LSTM's machinery
// (fused_step_kernel.h): per block of units and tile of rows, b_hh + h_{t-1} W_hh^T accumulated
// in registers into the step's h_part (with input fusion first b_ih + x_t W_ih^T into its
// x_part: GRU's candidate gate needs the two apart), then the cell's shared per-unit code
// (state_cell_units.h) on those units while they are in L1. The GRU's tile holds its three
// gates of V units; the RNN's, one gate, four vectors of consecutive units (TileColumns).
#pragma once

#include <fusedlstm/state_cell_units.h>

#include "fused_step_kernel.h"
#include "pointwise_cpu.h"

namespace fusedlstm::cpu {
inline namespace CPU_CAPABILITY {

// The fused step's tile for one cell (Math: GruMath, RnnTanhMath, RnnReluMath) on operands of
// element type T: float32 here; the bits of bfloat16 (uint16_t) in fused_step_bf16.cpp, which
// derives its tile from this one with its own accumulate and gate math.
template <class Math, class T = float>
struct StateTile {
  static constexpr int kVectors = Math::kGates == 1 ? kRnnTileVectors : Math::kGates;
  static constexpr int kRows = fused_rows<kVectors>();
#if defined(CPU_CAPABILITY_AVX512)
  // The RNN's tile takes the LSTM's six-row tile of four vectors (fused_step_kernel.h).
  static constexpr int kWideRows = kVectors == 4 ? 6 : kRows;
#endif
  static constexpr int64_t kInnerChunk = kFusedInnerChunk;

  static TileColumns columns(const FusedStateStepArgs& a) {
    return state_tile_columns(a.state.cell, a.state.hidden, FusedVec::size());
  }
  static int64_t rows(const FusedStateStepArgs& a) { return a.state.rows; }
  // Both parts start from their bias: nothing was written before them.
  static TilePart<Operand<T>> input(const FusedStateStepArgs& a) {
    const int64_t G = Math::kGates * a.state.hidden;
    return {{static_cast<const T*>(a.x), a.x_stride, a.x_inner,
             static_cast<const T*>(a.packed_input_weight)},
            {columns(a), static_cast<float*>(const_cast<void*>(a.state.x_part)), G, a.bias_ih,
             /*init=*/true}};
  }
  static TilePart<Operand<T>> recurrent(const FusedStateStepArgs& a) {
    const int64_t H = a.state.hidden;
    return {{static_cast<const T*>(a.state.h_prev), H, H,
             static_cast<const T*>(a.packed_weight)},
            {columns(a), static_cast<float*>(const_cast<void*>(a.state.h_part)),
             Math::kGates * H, a.bias_hh, /*init=*/true}};
  }
  template <int R>
  static void accumulate(const TileTarget& t, const FusedOperand& op, int64_t row0,
                         int64_t block, int64_t k0, int64_t k1, const WeightPrefetch& prefetch) {
    fused_accumulate<R, kVectors>(t, op, row0, block, k0, k1, prefetch);
  }
  static WeightRange pass_weights(const FusedOperand& op, int64_t block, int64_t k0, int64_t k1) {
    return float_pass_weights<kVectors>(op, block, k0, k1);
  }
  // The cell (Units, on buffers of scalar_t through RowPack) on the block's units: one vector
  // per gate (GRU) or kVectors of them (RNN).
  template <template <typename, typename> class Units, typename scalar_t = float,
            template <int> class RowPack = RowPackLanes>
  static void units_of_block(const FusedStateStepArgs& a, int64_t row0, int64_t rows,
                             int64_t block) {
    const TileColumns c = columns(a);
    constexpr int kUnitVectors = Math::kGates == 1 ? kVectors : 1;
    for (int v = 0; v < kUnitVectors; ++v) {
      const int64_t j0 = c.unit(block, v);
      if (j0 >= a.state.hidden) break;
      vector_units<Units, scalar_t, RowPack>(a.state, row0, rows, j0);
    }
  }
  static void gate_math(const FusedStateStepArgs& a, int64_t row0, int64_t rows, int64_t block) {
    units_of_block<StateUnits<Math>::template Forward>(a, row0, rows, block);
  }
};

inline void fused_state_forward_blocks(const FusedStateStepArgs& a, int64_t block_begin,
                                       int64_t block_end) {
  with_state_cell(a.state.cell, [&](auto math) {
    fused_forward_blocks_with<StateTile<decltype(math)>>(a, block_begin, block_end);
  });
}

// The backward of one step over blocks of V units (V = the vector width), as the LSTM's
// fused_backward_blocks_with: per group of blocks, dL/dh_t of the group's units from the later
// step's recurrent-side gradients (added to the GRU's direct part already there, in place of it
// for the RNN), then the cell's pointwise backward of those units while dL/dh is in L1.
template <class Math>
inline void fused_state_backward_blocks_with(const FusedStateBackwardArgs& a,
                                             int64_t block_begin, int64_t block_end) {
  constexpr int kRows = fused_rows<kBackwardBlocks>();
  const StateRecurrentBackwardStep& step = a.step;
  const StateBackwardArgs& state = step.state;
  for_each_block_group(block_begin, block_end, [&](auto nb, int64_t block0) {
    constexpr int NB = decltype(nb)::value;
    for_each_row_tile<kRows>(step.gemm_rows, [&](auto n, int64_t row) {
      recurrent_backward_gemm<decltype(n)::value, NB, Math::kGates, Math::kDirectHPath>(
          static_cast<const float*>(step.grad_recurrent_next),
          static_cast<float*>(step.grad_h_state), static_cast<const float*>(a.packed_weight),
          a.hidden, row, block0);
    });
    if (state.rows == 0) return;
    for (int64_t block = block0; block < block0 + NB; ++block) {
      vector_units<StateUnits<Math>::template Backward>(state, 0, state.rows,
                                                        block * FusedVec::size());
    }
  });
}

inline void fused_state_backward_blocks(const FusedStateBackwardArgs& a, int64_t block_begin,
                                        int64_t block_end) {
  with_state_cell(a.cell, [&](auto math) {
    fused_state_backward_blocks_with<decltype(math)>(a, block_begin, block_end);
  });
}

}  // namespace CPU_CAPABILITY
}  // namespace fusedlstm::cpu
