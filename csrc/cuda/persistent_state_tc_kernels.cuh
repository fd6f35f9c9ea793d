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

// The backward tile kernel's shared memory and its product: float tiles of dL/dh (M x N, N = U
// padded), W_hh's ((G, H) row-major) columns of the block's units ([N][G_pad], row n = unit n's
// column, zero past U, H and G) and a chunk of the later step's gradients (M x chunk). The
// LSTM's persistent_backward_tc_kernel has the same layout as locals: written with this struct,
// it spilled 16 bytes on sm_90 for float16 (ptxas), these kernels do not.
template <typename scalar_t>
struct BackwardTiles {
  int64_t M, N, G;
  float* sums;
  scalar_t* w_columns;
  scalar_t* grad_rows;

  __device__ static int64_t padded(int64_t G) { return round_up(G, kTile); }
  __device__ static int64_t chunk_of(int64_t G) {
    return padded(G) < kBackwardChunk ? padded(G) : kBackwardChunk;
  }

  // Loads the columns; the first multiply's barrier orders them before any tile reads them.
  __device__ __forceinline__ BackwardTiles(unsigned char* shared, const void* w_hh,
                                           int64_t gate_rows, int64_t U, int64_t H,
                                           int64_t max_rows, int64_t first_unit)
      : M(round_up(max_rows, kTile)),
        N(round_up(U, kTile)),
        G(gate_rows),
        sums(reinterpret_cast<float*>(shared)),
        w_columns(reinterpret_cast<scalar_t*>(sums + M * N)),
        grad_rows(w_columns + N * padded(gate_rows)) {
    const scalar_t* w = static_cast<const scalar_t*>(w_hh);
    const int64_t G_pad = padded(G);
    for (int64_t i = threadIdx.x; i < N * G_pad; i += blockDim.x) {
      const int64_t n = i / G_pad, r = i % G_pad;
      const int64_t unit = first_unit + n;
      w_columns[i] = n < U && unit < H && r < G ? w[r * H + unit] : scalar_t(0);
    }
  }

  // sums = grad_next (rows x G, row-major) times the columns, staged `chunk` columns at a time.
  __device__ __forceinline__ void multiply(const void* grad_next, int64_t rows) {
    const scalar_t* next = static_cast<const scalar_t*>(grad_next);
    const int64_t G_pad = padded(G), chunk = chunk_of(G);
    for (int64_t first = 0; first < G_pad; first += chunk) {
      for (int64_t i = threadIdx.x; i < M * chunk; i += blockDim.x) {
        const int64_t row = i / chunk, r = first + i % chunk;
        grad_rows[i] = row < rows && r < G ? next[row * G + r] : scalar_t(0);
      }
      __syncthreads();
      // w_columns from column `first` on: b^T rows of ldm G_pad
      block_tile_gemm(sums, grad_rows, w_columns + first, M, N, chunk, G_pad,
                      /*accumulate=*/first > 0);
    }
  }

  __device__ __forceinline__ float sum(int64_t row, int64_t u) const { return sums[row * N + u]; }
};

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
