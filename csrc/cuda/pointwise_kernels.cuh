// The CUDA pointwise kernels and their launch geometry, in one source that builds two ways: with
// nvcc for the GPU (pointwise_cuda.cu) and as host C++ against the SIMT emulation for the CPU
// tests (simt/pointwise_simt.cpp). Which (row, unit) each thread visits is all that is here; the
// per-unit work is pointwise_units.h / cell_math.h.
#pragma once

#include <ATen/Dispatch.h>
#include <c10/macros/Macros.h>

#include <fusedlstm/device_api.h>
#include <fusedlstm/pointwise_units.h>

#include <algorithm>
#include <cstdint>

namespace fusedlstm::kernels {

constexpr int kPointwiseThreads = 256;
// Enough resident blocks to fill any current GPU; the grid-stride loop covers the rest.
constexpr int64_t kPointwiseMaxBlocks = 65535;

// One unit of a forward or a backward pass (the device code of pointwise_units.h).
template <typename scalar_t>
C10_HOST_DEVICE inline void pointwise_units(const PointwiseForwardArgs& args, int64_t row,
                                            int64_t j) {
  forward_units<scalar_t, ScalarLanes<scalar_t>>(args, row, j);
}
template <typename scalar_t>
C10_HOST_DEVICE inline void pointwise_units(const PointwiseBackwardArgs& args, int64_t row,
                                            int64_t j) {
  backward_units<scalar_t, ScalarLanes<scalar_t>>(args, row, j);
}

// A grid-stride loop over the rows x hidden units of the pass, one unit per thread and turn.
template <typename scalar_t, typename Args>
__global__ void C10_LAUNCH_BOUNDS_1(kPointwiseThreads) pointwise_kernel(Args args) {
  const int64_t units = args.rows * args.hidden;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < units;
       u += stride) {
    pointwise_units<scalar_t>(args, u / args.hidden, u % args.hidden);
  }
}

// Runs the pointwise pass `args` (forward or backward) through the device's launcher:
// launch(kernel, blocks, threads, args) is nvcc's <<<>>> or the emulation's simt::launch.
template <typename Args, typename Launch>
void launch_pointwise(const Args& args, Launch&& launch) {
  const int64_t units = args.rows * args.hidden;
  if (units == 0) return;
  const int blocks = static_cast<int>(
      std::min<int64_t>(kPointwiseMaxBlocks, (units + kPointwiseThreads - 1) / kPointwiseThreads));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, args.dtype, "fusedlstm pointwise", [&] {
    launch(&pointwise_kernel<scalar_t, Args>, blocks, kPointwiseThreads, args);
  });
}

}  // namespace fusedlstm::kernels
