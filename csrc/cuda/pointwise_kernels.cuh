// The CUDA pointwise kernels and their launch geometry, in one source that builds two ways: with
// nvcc for the GPU (pointwise_cuda.cu) and as host C++ against the SIMT emulation for the CPU
// tests (simt/pointwise_simt.cpp). Which (row, unit) each thread visits is all that is here; the
// per-unit work is pointwise_units.h / cell_math.h.
#pragma once

#include <ATen/Dispatch.h>
#include <c10/macros/Macros.h>

#include <fusedlstm/device_api.h>
#include <fusedlstm/pointwise_units.h>
#include <fusedlstm/state_cell_units.h>

#include <algorithm>
#include <cstdint>

namespace fusedlstm::kernels {

constexpr int kPointwiseThreads = 256;
// Enough resident blocks to fill any current GPU; the grid-stride loop covers the rest.
constexpr int64_t kPointwiseMaxBlocks = 65535;

// One unit of an LSTM forward or backward pass (the device code of pointwise_units.h).
struct LstmUnits {
  template <typename scalar_t>
  static C10_HOST_DEVICE inline void run(const PointwiseForwardArgs& args, int64_t row, int64_t j) {
    forward_units<scalar_t, ScalarLanes<scalar_t>>(args, row, j);
  }
  template <typename scalar_t>
  static C10_HOST_DEVICE inline void run(const PointwiseBackwardArgs& args, int64_t row,
                                         int64_t j) {
    backward_units<scalar_t, ScalarLanes<scalar_t>>(args, row, j);
  }
};

// One unit of a GRU or Elman RNN pass (state_cell_units.h), the cell's math `Math`.
template <class Math>
struct StateUnits {
  template <typename scalar_t>
  static C10_HOST_DEVICE inline void run(const StateForwardArgs& args, int64_t row, int64_t j) {
    state_forward_units<Math, scalar_t, ScalarLanes<scalar_t>>(args, row, j);
  }
  template <typename scalar_t>
  static C10_HOST_DEVICE inline void run(const StateBackwardArgs& args, int64_t row, int64_t j) {
    state_backward_units<Math, scalar_t, ScalarLanes<scalar_t>>(args, row, j);
  }
};

// A grid-stride loop over the rows x hidden units of the pass, one unit per thread and turn.
template <typename scalar_t, typename Units, typename Args>
__global__ void C10_LAUNCH_BOUNDS_1(kPointwiseThreads) pointwise_kernel(Args args) {
  const int64_t units = args.rows * args.hidden;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < units;
       u += stride) {
    Units::template run<scalar_t>(args, u / args.hidden, u % args.hidden);
  }
}

// Runs the pass `args` with the per-unit code `Units` through the device's launcher:
// launch(kernel, blocks, threads, args) is nvcc's <<<>>> or the emulation's simt::launch.
template <typename Units, typename Args, typename Launch>
void launch_units(const Args& args, Launch&& launch) {
  const int64_t units = args.rows * args.hidden;
  if (units == 0) return;
  const int blocks = static_cast<int>(
      std::min<int64_t>(kPointwiseMaxBlocks, (units + kPointwiseThreads - 1) / kPointwiseThreads));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, args.dtype, "fusedlstm pointwise", [&] {
    launch(&pointwise_kernel<scalar_t, Units, Args>, blocks, kPointwiseThreads, args);
  });
}

// The LSTM pointwise pass `args` (forward or backward).
template <typename Args, typename Launch>
void launch_pointwise(const Args& args, Launch&& launch) {
  launch_units<LstmUnits>(args, launch);
}

// A GRU / Elman RNN pass (StateForwardArgs or StateBackwardArgs): one kernel per cell.
template <typename Args, typename Launch>
void launch_state_pointwise(const Args& args, Launch&& launch) {
  with_state_cell(args.cell, [&](auto math) {
    launch_units<StateUnits<decltype(math)>>(args, launch);
  });
}

}  // namespace fusedlstm::kernels
