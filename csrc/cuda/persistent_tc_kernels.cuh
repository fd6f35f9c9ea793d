// The persistent kernels for float16 / bfloat16 on tensor cores (nvcuda::wmma m16n16k16, float
// accumulators): the schedule of persistent_kernels.cuh (a block owns U hidden units, one grid
// barrier per step), with each step's recurrent product done as a block-level tile GEMM in shared
// memory instead of per-thread dot products. Included by persistent_kernels.cuh.
//
// Forward step: the step's h_{t-1} rows are staged into shared memory (zero-padded to 16), the
// warps multiply them by the block's W_hh slice (M x K times K x 4U, 16x16 tiles), store float
// sums, and each (row, unit) thread finishes its unit as the FMA kernel does.
// Backward step: dL/dh_t of the block's units = dgates_{t+1} (M x 4H, staged kBackwardChunk
// columns at a time) times W_hh's columns (4H x U), accumulated in the float tiles; then each
// thread's pointwise backward.
#pragma once

// Tensor cores for 16-bit inputs need sm_80 (bfloat16); the host only picks these kernels there.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define FUSEDLSTM_WMMA_AVAILABLE 1
#else
#define FUSEDLSTM_WMMA_AVAILABLE 0
#endif

namespace fusedlstm::kernels {

// out (M x N float, row-major, ldm N) = a (M x K, row-major, ldm K) * b, b given as N rows of
// K (b^T row-major, ldm b_ldm): matrix_b col_major. `accumulate` adds to what out holds. Every
// side a multiple of 16; warps share the tiles. Ends with the block's barrier.
template <typename scalar_t>
__device__ inline void block_tile_gemm(float* out, const scalar_t* a, const scalar_t* b,
                                       int64_t M, int64_t N, int64_t K, int64_t b_ldm,
                                       bool accumulate) {
#if FUSEDLSTM_WMMA_AVAILABLE
  namespace wmma = nvcuda::wmma;
  using Element = typename WmmaElement<scalar_t>::type;
  const int64_t warps = blockDim.x / warpSize;
  const int64_t tiles_n = N / kTile;
  for (int64_t tile = threadIdx.x / warpSize; tile < M / kTile * tiles_n; tile += warps) {
    const int64_t row0 = tile / tiles_n * kTile;
    const int64_t col0 = tile % tiles_n * kTile;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> sum;
    if (accumulate) {
      wmma::load_matrix_sync(sum, out + row0 * N + col0, static_cast<unsigned>(N),
                             wmma::mem_row_major);
    } else {
      wmma::fill_fragment(sum, 0.0f);
    }
    for (int64_t k = 0; k < K; k += kTile) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, Element, wmma::row_major> a_tile;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, Element, wmma::col_major> b_tile;
      wmma::load_matrix_sync(a_tile, reinterpret_cast<const Element*>(a + row0 * K + k),
                             static_cast<unsigned>(K));
      wmma::load_matrix_sync(b_tile, reinterpret_cast<const Element*>(b + col0 * b_ldm + k),
                             static_cast<unsigned>(b_ldm));
      wmma::mma_sync(sum, a_tile, b_tile, sum);
    }
    wmma::store_matrix_sync(out + row0 * N + col0, sum, static_cast<unsigned>(N),
                            wmma::mem_row_major);
  }
#endif
  __syncthreads();
}

// The forward's weight operand: the block's gate rows of W_hh ((gates H, K) row-major) as
// [N][K_pad], row n = gate * U + u; zero past the slice's gates, past H and past K.
template <typename scalar_t>
__device__ inline void load_tile_gate_rows(scalar_t* w_slice, const scalar_t* w_hh, int64_t gates,
                                           int64_t U, int64_t H, int64_t K, int64_t N,
                                           int64_t K_pad, int64_t first_unit) {
  for (int64_t i = threadIdx.x; i < N * K_pad; i += blockDim.x) {
    const int64_t n = i / K_pad, k = i % K_pad;
    const int64_t unit = first_unit + n % U;
    const bool real = n < gates * U && unit < H && k < K;
    w_slice[i] = real ? w_hh[(n / U * H + unit) * K + k] : scalar_t(0);
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kPersistentMaxThreads)
    persistent_forward_tc_kernel(PersistentForwardParams p) {
  FUSEDLSTM_DYNAMIC_SHARED(unsigned char, shared);
  const int64_t U = p.units_per_block;
  const int64_t H = p.hidden;
  const int64_t K = p.columns;
  const int64_t M = round_up(p.max_rows, kTile), N = round_up(4 * U, kTile);
  const int64_t K_pad = round_up(K, kTile);
  float* sums = reinterpret_cast<float*>(shared);                      // [M][N]
  scalar_t* w_slice = reinterpret_cast<scalar_t*>(sums + M * N);       // [N][K_pad]: gate row n
  scalar_t* h_rows = w_slice + N * K_pad;                              // [M][K_pad]
  const int64_t first_unit = static_cast<int64_t>(blockIdx.x) * U;
  const scalar_t* w_hh = static_cast<const scalar_t*>(p.w_hh);
  load_tile_gate_rows(w_slice, w_hh, 4, U, H, K, N, K_pad, first_unit);
  auto grid = cooperative_groups::this_grid();
  for (int64_t s = 0; s < p.count; ++s) {
    const RecurrentStep& step = p.steps[s];
    const PointwiseForwardArgs& args = step.pointwise;
    for (int64_t i = threadIdx.x; i < M * K_pad; i += blockDim.x) {
      const int64_t row = i / K_pad, k = i % K_pad;
      scalar_t value(0);
      if (row < args.rows && k < K) value = previous_h_row<scalar_t>(step, row)[k];
      h_rows[i] = value;
    }
    __syncthreads();
    block_tile_gemm(sums, h_rows, w_slice, M, N, K_pad, K_pad, /*accumulate=*/false);
    for (int64_t i = threadIdx.x; i < args.rows * U; i += blockDim.x) {
      const int64_t row = i / U, u = i % U;
      if (first_unit + u >= H) continue;
      const float recurrent[4] = {sums[row * N + u], sums[row * N + U + u],
                                  sums[row * N + 2 * U + u], sums[row * N + 3 * U + u]};
      forward_units_adding<scalar_t, ScalarLanes<scalar_t>>(args, row, first_unit + u, recurrent);
    }
    if (s + 1 < p.count) FUSEDLSTM_STEP_BARRIER(grid);
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kPersistentMaxThreads)
    persistent_backward_tc_kernel(PersistentBackwardParams p) {
  FUSEDLSTM_DYNAMIC_SHARED(unsigned char, shared);
  const int64_t U = p.units_per_block;
  const int64_t H = p.hidden;
  const int64_t G = 4 * H;
  const int64_t M = round_up(p.max_rows, kTile), N = round_up(U, kTile);
  const int64_t G_pad = round_up(G, kTile);
  const int64_t chunk = G_pad < kBackwardChunk ? G_pad : kBackwardChunk;
  float* sums = reinterpret_cast<float*>(shared);                   // [M][N]
  scalar_t* w_columns = reinterpret_cast<scalar_t*>(sums + M * N);  // [N][G_pad]: unit u's column
  scalar_t* grad_rows = w_columns + N * G_pad;                      // [M][chunk]
  const int64_t first_unit = static_cast<int64_t>(blockIdx.x) * U;
  const scalar_t* w_hh = static_cast<const scalar_t*>(p.w_hh);
  for (int64_t i = threadIdx.x; i < N * G_pad; i += blockDim.x) {
    const int64_t n = i / G_pad, r = i % G_pad;
    const int64_t unit = first_unit + n;
    w_columns[i] = n < U && unit < H && r < G ? w_hh[r * H + unit] : scalar_t(0);
  }
  auto grid = cooperative_groups::this_grid();
  for (int64_t s = 0; s < p.count; ++s) {
    const RecurrentBackwardStep& step = p.steps[s];
    const int64_t pointwise_rows = step.continuing.rows + step.starting.rows;
    if (step.gemm_rows > 0) {
      const scalar_t* grad_gates_next = static_cast<const scalar_t*>(step.grad_gates_next);
      for (int64_t first = 0; first < G_pad; first += chunk) {
        for (int64_t i = threadIdx.x; i < M * chunk; i += blockDim.x) {
          const int64_t row = i / chunk, r = first + i % chunk;
          grad_rows[i] = row < step.gemm_rows && r < G ? grad_gates_next[row * G + r]
                                                        : scalar_t(0);
        }
        __syncthreads();
        // w_columns from column `first` on: b^T rows of ldm G_pad
        block_tile_gemm(sums, grad_rows, w_columns + first, M, N, chunk, G_pad,
                        /*accumulate=*/first > 0);
      }
    }
    const int64_t rows = std::max(step.gemm_rows, pointwise_rows);
    for (int64_t i = threadIdx.x; i < rows * U; i += blockDim.x) {
      const int64_t row = i / U, u = i % U;
      const int64_t j = first_unit + u;
      if (j >= H) continue;
      if (row < step.gemm_rows) {
        static_cast<scalar_t*>(step.grad_h_state)[row * H + j] =
            static_cast<scalar_t>(sums[row * N + u]);
      }
      backward_step_unit<scalar_t>(step, row, j);
    }
    if (s + 1 < p.count) FUSEDLSTM_STEP_BARRIER(grid);
  }
}

}  // namespace fusedlstm::kernels
