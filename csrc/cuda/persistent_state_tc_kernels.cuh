// The GRU's and Elman RNN's persistent kernels for float16 / bfloat16 on tensor cores: the
// schedule of persistent_state_kernels.cuh (a block owns U hidden units, one grid barrier per
// step) with each step's recurrent product a block-level tile GEMM in shared memory
// (block_tile_gemm, persistent_tc_kernels.cuh), as the LSTM's. Included by
// persistent_state_kernels.cuh.
//
// Forward step: h_{t-1}'s rows staged into shared memory (zero-padded to 16), times the block's
// W_hh slice (M x H times H x kGates U), float sums; each (row, unit) thread adds b_hh and runs
// the cell from its kGates sums (the GRU's candidate sum stays apart, as in the FMA kernel).
// Backward step: dL/dh_t of the block's units = the later step's recurrent-side gradients
// (M x kGates H, staged kBackwardChunk columns at a time) times W_hh's columns (kGates H x U), in
// the float tiles; the thread adds the GRU's direct part and runs the unit's pointwise backward.
#pragma once

namespace fusedlstm::kernels {

template <class Math, typename scalar_t>
__global__ void __launch_bounds__(kPersistentMaxThreads)
    persistent_state_forward_tc_kernel(PersistentStateForwardParams p) {
  using Compute = at::opmath_type<scalar_t>;
  constexpr int kGates = Math::kGates;
  FUSEDLSTM_DYNAMIC_SHARED(unsigned char, shared);
  const int64_t U = p.units_per_block;
  const int64_t H = p.hidden;
  const int64_t M = round_up(p.max_rows, kTile), N = round_up(kGates * U, kTile);
  const int64_t K = round_up(H, kTile);
  float* sums = reinterpret_cast<float*>(shared);                 // [M][N]
  scalar_t* w_slice = reinterpret_cast<scalar_t*>(sums + M * N);  // [N][K]: gate row n
  scalar_t* h_rows = w_slice + N * K;                             // [M][K]
  const int64_t first_unit = static_cast<int64_t>(blockIdx.x) * U;
  const scalar_t* w_hh = static_cast<const scalar_t*>(p.w_hh);
  const scalar_t* bias = static_cast<const scalar_t*>(p.bias_hh);
  load_tile_gate_rows(w_slice, w_hh, kGates, U, H, H, N, K, first_unit);
  auto grid = cooperative_groups::this_grid();
  for (int64_t s = 0; s < p.count; ++s) {
    const StateRecurrentStep& step = p.steps[s];
    const int64_t rows = step.state.rows;
    for (int64_t i = threadIdx.x; i < M * K; i += blockDim.x) {
      const int64_t row = i / K, k = i % K;
      scalar_t value(0);
      if (row < rows && k < H) {
        value = static_cast<const scalar_t*>(row < step.continuing ? step.h_prev
                                                                   : step.h_start)[row * H + k];
      }
      h_rows[i] = value;
    }
    __syncthreads();
    block_tile_gemm(sums, h_rows, w_slice, M, N, K, K, /*accumulate=*/false);
    for (int64_t i = threadIdx.x; i < rows * U; i += blockDim.x) {
      const int64_t row = i / U, u = i % U;
      const int64_t j = first_unit + u;
      if (j >= H) continue;
      Compute unit_sums[kGates];
      for (int g = 0; g < kGates; ++g) {
        unit_sums[g] = static_cast<Compute>(sums[row * N + g * U + u]) +
                       (bias ? static_cast<Compute>(bias[g * H + j]) : Compute(0));
      }
      state_forward_from_sums<Math, scalar_t, ScalarLanes<scalar_t>>(
          step.state, row, j, unit_sums, static_cast<Compute>(h_rows[row * K + j]));
    }
    if (s + 1 < p.count) FUSEDLSTM_STEP_BARRIER(grid);
  }
}

template <class Math, typename scalar_t>
__global__ void __launch_bounds__(kPersistentMaxThreads)
    persistent_state_backward_tc_kernel(PersistentStateBackwardParams p) {
  using Compute = at::opmath_type<scalar_t>;
  FUSEDLSTM_DYNAMIC_SHARED(unsigned char, shared);
  const int64_t U = p.units_per_block;
  const int64_t H = p.hidden;
  const int64_t first_unit = static_cast<int64_t>(blockIdx.x) * U;
  BackwardTiles<scalar_t> tiles(shared, p.w_hh, Math::kGates * H, U, H, p.max_rows, first_unit);
  auto grid = cooperative_groups::this_grid();
  for (int64_t s = 0; s < p.count; ++s) {
    const StateRecurrentBackwardStep& step = p.steps[s];
    if (step.gemm_rows > 0) tiles.multiply(step.grad_recurrent_next, step.gemm_rows);
    const int64_t rows = step.gemm_rows > step.state.rows ? step.gemm_rows : step.state.rows;
    for (int64_t i = threadIdx.x; i < rows * U; i += blockDim.x) {
      const int64_t row = i / U, u = i % U;
      const int64_t j = first_unit + u;
      if (j >= H) continue;
      if (row < step.gemm_rows) {
        scalar_t* carried = static_cast<scalar_t*>(step.grad_h_state) + row * H + j;
        Compute grad_h = static_cast<Compute>(tiles.sum(row, u));
        if constexpr (Math::kDirectHPath) grad_h += static_cast<Compute>(*carried);
        *carried = static_cast<scalar_t>(grad_h);
      }
      if (row < step.state.rows) {
        state_backward_units<Math, scalar_t, ScalarLanes<scalar_t>>(step.state, row, j);
      }
    }
    if (s + 1 < p.count) FUSEDLSTM_STEP_BARRIER(grid);
  }
}

}  // namespace fusedlstm::kernels
