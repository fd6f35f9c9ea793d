// The persistent recurrent kernels: a whole chunk of time steps of one layer direction in one
// cooperative launch. Built two ways like every kernel here: with nvcc for the GPU
// (persistent_cuda.cu) and as host C++ on the SIMT emulation (simt/persistent_simt.cpp).
//
// Each block owns a slice of hidden units (U of them, all four gate rows of each) and keeps its
// slice of W_hh in shared memory for the whole launch. Per step a thread takes (row, unit)
// pairs: it sums the unit's four recurrent products from h_{t-1} (global memory, written by every
// block at the step before), adds the precomputed input projection, runs cell_math.h through
// pointwise_units.h and stores h_t, c_t and the saved gates; then the grid waits at a barrier.
// This is the CPU fused step's schedule (slices of units, one wait per step) on a GPU's blocks.
// The backward is the same with W_hh's column slice: dL/dh_t of the block's units from the gate
// gradients of the step after, then the unit's pointwise backward.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/macros/Macros.h>

#include <fusedlstm/device_api.h>
#include <fusedlstm/persistent_geometry.h>
#include <fusedlstm/pointwise_units.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace fusedlstm::kernels {

// The FUSEDLSTM_SIMT_PLANT=3 build of the self-test leaves the step barrier out (it must then
// fail under ThreadSanitizer).
#if defined(FUSEDLSTM_SIMT_PLANT) && FUSEDLSTM_SIMT_PLANT == 3
#define FUSEDLSTM_STEP_BARRIER(grid)
#else
#define FUSEDLSTM_STEP_BARRIER(grid) grid.sync()
#endif

// Row `row` of a step's h_{t-1}: the previous step's output where the row carries on, h0's row
// where it starts at this step (packed input in reverse).
template <typename scalar_t>
C10_HOST_DEVICE inline const scalar_t* previous_h_row(const RecurrentStep& step, int64_t row) {
  const bool continuing = row < step.continuing;
  return static_cast<const scalar_t*>(continuing ? step.h_prev : step.h_start) +
         row * (continuing ? step.h_prev_stride : step.h_start_stride);
}

// The pointwise backward of unit j of row `row` of a step: its rows that carry on from the
// previous step's c, then those that start from c0; rows past both are not the step's.
template <typename scalar_t>
C10_HOST_DEVICE inline void backward_step_unit(const RecurrentBackwardStep& step, int64_t row,
                                               int64_t j) {
  if (row < step.continuing.rows) {
    backward_units<scalar_t, ScalarLanes<scalar_t>>(step.continuing, row, j);
  } else if (row < step.continuing.rows + step.starting.rows) {
    backward_units<scalar_t, ScalarLanes<scalar_t>>(step.starting, row - step.continuing.rows, j);
  }
}

// The block's slice of W_hh ((gates H, K) row-major) in shared memory, [k][gate][u]: the rows
// of units [first_unit, first_unit + U) of every gate (zero past H), consecutive units
// consecutive, so that neighbouring threads read neighbouring banks.
template <typename scalar_t>
__device__ inline void load_w_slice(scalar_t* w_slice, const scalar_t* w_hh, int64_t gates,
                                    int64_t U, int64_t H, int64_t K, int64_t first_unit) {
  for (int64_t i = threadIdx.x; i < gates * U * K; i += blockDim.x) {
    const int64_t k = i / (gates * U);
    const int64_t gate = i / U % gates;
    const int64_t unit = first_unit + i % U;
    w_slice[i] = unit < H ? w_hh[(gate * H + unit) * K + k] : scalar_t(0);
  }
  __syncthreads();
}

// The block's columns of W_hh ((G, H) row-major) in shared memory, [gate row][u]: columns
// [first_unit, first_unit + U) of every row (zero past H), for the backward's dL/dh of its units.
template <typename scalar_t>
__device__ inline void load_w_columns(scalar_t* w_columns, const scalar_t* w_hh, int64_t G,
                                      int64_t U, int64_t H, int64_t first_unit) {
  for (int64_t i = threadIdx.x; i < G * U; i += blockDim.x) {
    const int64_t unit = first_unit + i % U;
    w_columns[i] = unit < H ? w_hh[(i / U) * H + unit] : scalar_t(0);
  }
  __syncthreads();
}

template <typename scalar_t>
__global__ void __launch_bounds__(kPersistentMaxThreads)
    persistent_forward_kernel(PersistentForwardParams p) {
  using Compute = at::opmath_type<scalar_t>;
  FUSEDLSTM_DYNAMIC_SHARED(scalar_t, w_slice);  // [k][gate][u]: consecutive units, banks
  const int64_t U = p.units_per_block;
  const int64_t H = p.hidden;
  const int64_t K = p.columns;
  const int64_t first_unit = static_cast<int64_t>(blockIdx.x) * U;
  load_w_slice(w_slice, static_cast<const scalar_t*>(p.w_hh), 4, U, H, K, first_unit);
  auto grid = cooperative_groups::this_grid();
  for (int64_t s = 0; s < p.count; ++s) {
    const RecurrentStep& step = p.steps[s];
    const PointwiseForwardArgs& args = step.pointwise;
    for (int64_t i = threadIdx.x; i < args.rows * U; i += blockDim.x) {
      const int64_t row = i / U;
      const int64_t u = i % U;
      if (first_unit + u >= H) continue;
      const scalar_t* h_prev = previous_h_row<scalar_t>(step, row);
      Compute recurrent[4] = {0, 0, 0, 0};
      for (int64_t k = 0; k < K; ++k) {
        const Compute h = static_cast<Compute>(h_prev[k]);
        const scalar_t* w = w_slice + k * 4 * U + u;
        recurrent[0] += h * static_cast<Compute>(w[0]);
        recurrent[1] += h * static_cast<Compute>(w[U]);
        recurrent[2] += h * static_cast<Compute>(w[2 * U]);
        recurrent[3] += h * static_cast<Compute>(w[3 * U]);
      }
      forward_units_adding<scalar_t, ScalarLanes<scalar_t>>(args, row, first_unit + u, recurrent);
    }
    if (s + 1 < p.count) FUSEDLSTM_STEP_BARRIER(grid);
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kPersistentMaxThreads)
    persistent_backward_kernel(PersistentBackwardParams p) {
  using Compute = at::opmath_type<scalar_t>;
  FUSEDLSTM_DYNAMIC_SHARED(scalar_t, w_columns);  // [gate row][u]: W_hh's columns of the slice
  const int64_t U = p.units_per_block;
  const int64_t H = p.hidden;
  const int64_t G = 4 * H;
  const int64_t first_unit = static_cast<int64_t>(blockIdx.x) * U;
  load_w_columns(w_columns, static_cast<const scalar_t*>(p.w_hh), G, U, H, first_unit);
  auto grid = cooperative_groups::this_grid();
  for (int64_t s = 0; s < p.count; ++s) {
    const RecurrentBackwardStep& step = p.steps[s];
    const int64_t pointwise_rows = step.continuing.rows + step.starting.rows;
    const int64_t rows = std::max(step.gemm_rows, pointwise_rows);
    for (int64_t i = threadIdx.x; i < rows * U; i += blockDim.x) {
      const int64_t row = i / U;
      const int64_t u = i % U;
      const int64_t j = first_unit + u;
      if (j >= H) continue;
      if (row < step.gemm_rows) {  // dL/dh_t = dgates_{next} W_hh for this unit
        const scalar_t* grad_gates_next = static_cast<const scalar_t*>(step.grad_gates_next) +
                                          row * G;
        Compute grad_h = 0;
        for (int64_t r = 0; r < G; ++r) {
          grad_h += static_cast<Compute>(grad_gates_next[r]) *
                    static_cast<Compute>(w_columns[r * U + u]);
        }
        static_cast<scalar_t*>(step.grad_h_state)[row * H + j] = static_cast<scalar_t>(grad_h);
      }
      backward_step_unit<scalar_t>(step, row, j);
    }
    if (s + 1 < p.count) FUSEDLSTM_STEP_BARRIER(grid);
  }
}

}  // namespace fusedlstm::kernels

#include "persistent_tc_kernels.cuh"

namespace fusedlstm::kernels {

template <typename scalar_t>
constexpr bool kHalfPrecision =
    std::is_same_v<scalar_t, c10::Half> || std::is_same_v<scalar_t, c10::BFloat16>;

// The kernel of `params` (forward or backward) for scalar_t: the tensor-core one where the
// geometry says so (float16 / bfloat16 only), else the FMA one.
template <typename scalar_t>
auto persistent_kernel_for(const PersistentForwardParams&, bool tensor_cores) {
  if constexpr (kHalfPrecision<scalar_t>) {
    if (tensor_cores) return &persistent_forward_tc_kernel<scalar_t>;
  }
  return &persistent_forward_kernel<scalar_t>;
}

template <typename scalar_t>
auto persistent_kernel_for(const PersistentBackwardParams&, bool tensor_cores) {
  if constexpr (kHalfPrecision<scalar_t>) {
    if (tensor_cores) return &persistent_backward_tc_kernel<scalar_t>;
  }
  return &persistent_backward_kernel<scalar_t>;
}

// Launches the persistent kernel of `params` (forward or backward) for `dtype` through the
// device's cooperative launcher: launch(kernel, geometry, params) returns false when the launch
// is refused (its blocks cannot all be resident).
template <typename Params, typename Launch>
bool launch_persistent(const Params& params, c10::ScalarType dtype,
                       const PersistentGeometry& geometry, Launch&& launch) {
  bool launched = false;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "fusedlstm persistent", [&] {
    launched = launch(persistent_kernel_for<scalar_t>(params, geometry.tensor_cores), geometry,
                      params);
  });
  return launched;
}

}  // namespace fusedlstm::kernels
