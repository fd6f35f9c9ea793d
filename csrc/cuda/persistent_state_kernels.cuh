// The GRU's and Elman RNN's persistent kernels. The forward: a chunk of time steps of one layer
// direction in one cooperative launch, on the LSTM's schedule (persistent_kernels.cuh): each
// block owns a slice of U hidden units with all their gate rows of W_hh in shared memory; per
// step a thread takes (row, unit) pairs, sums the unit's recurrent products from h_{t-1} (the
// rows every block wrote at the step before) in registers, adds b_hh and runs the cell
// (state_cell_units.h), then the grid waits at a barrier. The GRU's candidate sum stays apart
// from the input side (r * (W_hn h + b_hn)) because the sums are the cell's h_part.
// Built with nvcc for the GPU (persistent_cuda.cu) and as host C++ on the SIMT emulation
// (simt/persistent_simt.cpp).
//
// The backward, per step: W_hh's columns of the block's units in shared memory; a (row, unit)
// thread adds the later step's recurrent-side gradients times its column to dL/dh_t (the GRU's
// direct part z dL/dh_{t+1}, which this same thread wrote at the step before, is already there),
// then runs the unit's pointwise backward, which writes its gates' gradients for the next step's
// threads; then the barrier.
//
// float16 / bfloat16 on devices with tensor cores take the tile kernels of
// persistent_state_tc_kernels.cuh instead.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/macros/Macros.h>

#include <fusedlstm/device_api.h>
#include <fusedlstm/persistent_state_geometry.h>
#include <fusedlstm/state_cell_units.h>

#include <cstdint>

#include "persistent_kernels.cuh"  // FUSEDLSTM_STEP_BARRIER, load_w_slice, load_w_columns

namespace fusedlstm::kernels {

template <class Math, typename scalar_t>
__global__ void __launch_bounds__(kPersistentMaxThreads)
    persistent_state_forward_kernel(PersistentStateForwardParams p) {
  using Compute = at::opmath_type<scalar_t>;
  constexpr int kGates = Math::kGates;
  FUSEDLSTM_DYNAMIC_SHARED(scalar_t, w_slice);  // [k][gate][u] (load_w_slice)
  const int64_t U = p.units_per_block;
  const int64_t H = p.hidden;
  const int64_t first_unit = static_cast<int64_t>(blockIdx.x) * U;
  const scalar_t* bias = static_cast<const scalar_t*>(p.bias_hh);
  load_w_slice(w_slice, static_cast<const scalar_t*>(p.w_hh), kGates, U, H, H, first_unit);
  auto grid = cooperative_groups::this_grid();
  for (int64_t s = 0; s < p.count; ++s) {
    const StateRecurrentStep& step = p.steps[s];
    for (int64_t i = threadIdx.x; i < step.state.rows * U; i += blockDim.x) {
      const int64_t row = i / U;
      const int64_t u = i % U;
      const int64_t j = first_unit + u;
      if (j >= H) continue;
      const scalar_t* h_prev = static_cast<const scalar_t*>(
                                   row < step.continuing ? step.h_prev : step.h_start) +
                               row * H;
      Compute sums[kGates];
      for (int g = 0; g < kGates; ++g) {
        sums[g] = bias ? static_cast<Compute>(bias[g * H + j]) : Compute(0);
      }
      for (int64_t k = 0; k < H; ++k) {
        const Compute h = static_cast<Compute>(h_prev[k]);
        const scalar_t* w = w_slice + k * kGates * U + u;
        for (int g = 0; g < kGates; ++g) sums[g] += h * static_cast<Compute>(w[g * U]);
      }
      state_forward_from_sums<Math, scalar_t, ScalarLanes<scalar_t>>(
          step.state, row, j, sums, static_cast<Compute>(h_prev[j]));
    }
    if (s + 1 < p.count) FUSEDLSTM_STEP_BARRIER(grid);
  }
}

template <class Math, typename scalar_t>
__global__ void __launch_bounds__(kPersistentMaxThreads)
    persistent_state_backward_kernel(PersistentStateBackwardParams p) {
  using Compute = at::opmath_type<scalar_t>;
  FUSEDLSTM_DYNAMIC_SHARED(scalar_t, w_columns);  // [gate row][u] (load_w_columns)
  const int64_t U = p.units_per_block;
  const int64_t H = p.hidden;
  const int64_t G = Math::kGates * H;
  const int64_t first_unit = static_cast<int64_t>(blockIdx.x) * U;
  load_w_columns(w_columns, static_cast<const scalar_t*>(p.w_hh), G, U, H, first_unit);
  auto grid = cooperative_groups::this_grid();
  for (int64_t s = 0; s < p.count; ++s) {
    const StateRecurrentBackwardStep& step = p.steps[s];
    const int64_t rows = step.gemm_rows > step.state.rows ? step.gemm_rows : step.state.rows;
    for (int64_t i = threadIdx.x; i < rows * U; i += blockDim.x) {
      const int64_t row = i / U;
      const int64_t u = i % U;
      const int64_t j = first_unit + u;
      if (j >= H) continue;
      if (row < step.gemm_rows) {
        const scalar_t* grad_next =
            static_cast<const scalar_t*>(step.grad_recurrent_next) + row * G;
        Compute grad_h = 0;
        for (int64_t r = 0; r < G; ++r) {
          grad_h += static_cast<Compute>(grad_next[r]) * static_cast<Compute>(w_columns[r * U + u]);
        }
        scalar_t* carried = static_cast<scalar_t*>(step.grad_h_state) + row * H + j;
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

#include "persistent_state_tc_kernels.cuh"

namespace fusedlstm::kernels {

// The kernel of `params` for the cell and scalar_t: the tensor-core one where the geometry says
// so (float16 / bfloat16 only), else the FMA one.
template <class Math, typename scalar_t>
auto persistent_state_kernel_for(const PersistentStateForwardParams&, bool tensor_cores) {
  if constexpr (kHalfPrecision<scalar_t>) {
    if (tensor_cores) return &persistent_state_forward_tc_kernel<Math, scalar_t>;
  }
  return &persistent_state_forward_kernel<Math, scalar_t>;
}

template <class Math, typename scalar_t>
auto persistent_state_kernel_for(const PersistentStateBackwardParams&, bool tensor_cores) {
  if constexpr (kHalfPrecision<scalar_t>) {
    if (tensor_cores) return &persistent_state_backward_tc_kernel<Math, scalar_t>;
  }
  return &persistent_state_backward_kernel<Math, scalar_t>;
}

// The kernel of Params (forward or backward) for `cell`, `dtype` and the geometry's choice of
// tensor cores, passed to f (an occupancy query or a launch).
template <typename Params, typename F>
void with_persistent_state_kernel(StateCell cell, c10::ScalarType dtype, bool tensor_cores,
                                  F&& f) {
  with_state_cell(cell, [&](auto math) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "fusedlstm persistent", [&] {
      f(persistent_state_kernel_for<decltype(math), scalar_t>(Params{}, tensor_cores));
    });
  });
}

// Launches the kernel of `params` (forward or backward) through the device's cooperative
// launcher (as launch_persistent): false when the launch is refused.
template <typename Params, typename Launch>
bool launch_persistent_state(const Params& params, c10::ScalarType dtype,
                             const PersistentGeometry& geometry, Launch&& launch) {
  bool launched = false;
  with_persistent_state_kernel<Params>(params.cell, dtype, geometry.tensor_cores, [&](auto kernel) {
    launched = launch(kernel, geometry, params);
  });
  return launched;
}

}  // namespace fusedlstm::kernels
