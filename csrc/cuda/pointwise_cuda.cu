// The only code a GPU runs that no CPU test does: which (row, unit) each thread visits, and the
// launch. The per-unit work is pointwise_units.h / cell_math.h, which the CPU tests execute.
#include "pointwise_cuda.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <fusedlstm/pointwise_units.h>

#include <algorithm>

namespace fusedlstm::cuda {

namespace {

constexpr int kThreads = 256;
// Enough resident blocks to fill any current GPU; the grid-stride loop covers the rest.
constexpr int64_t kMaxBlocks = 65535;

template <typename scalar_t>
__global__ void C10_LAUNCH_BOUNDS_1(kThreads) forward_kernel(PointwiseForwardArgs args) {
  const int64_t units = args.rows * args.hidden;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < units;
       u += stride) {
    forward_units<scalar_t, ScalarLanes<scalar_t>>(args, u / args.hidden, u % args.hidden);
  }
}

template <typename scalar_t>
__global__ void C10_LAUNCH_BOUNDS_1(kThreads) backward_kernel(PointwiseBackwardArgs args) {
  const int64_t units = args.rows * args.hidden;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < units;
       u += stride) {
    backward_units<scalar_t, ScalarLanes<scalar_t>>(args, u / args.hidden, u % args.hidden);
  }
}

int blocks_for(int64_t units) {
  return static_cast<int>(std::min<int64_t>(kMaxBlocks, (units + kThreads - 1) / kThreads));
}

template <typename scalar_t, typename Args>
void launch(const Args& args, void (*kernel)(Args)) {
  const int64_t units = args.rows * args.hidden;
  if (units == 0) return;
  kernel<<<blocks_for(units), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(args);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

void CudaBackend::forward(const PointwiseForwardArgs& args) {
  switch (args.dtype) {
    case c10::ScalarType::Float:
      return launch<float>(args, &forward_kernel<float>);
    case c10::ScalarType::Double:
      return launch<double>(args, &forward_kernel<double>);
    case c10::ScalarType::BFloat16:
      return launch<c10::BFloat16>(args, &forward_kernel<c10::BFloat16>);
    case c10::ScalarType::Half:
      return launch<c10::Half>(args, &forward_kernel<c10::Half>);
    default:
      TORCH_CHECK(false, "fusedlstm: no CUDA pointwise kernel for dtype ", args.dtype);
  }
}

void CudaBackend::backward(const PointwiseBackwardArgs& args) {
  switch (args.dtype) {
    case c10::ScalarType::Float:
      return launch<float>(args, &backward_kernel<float>);
    case c10::ScalarType::Double:
      return launch<double>(args, &backward_kernel<double>);
    case c10::ScalarType::BFloat16:
      return launch<c10::BFloat16>(args, &backward_kernel<c10::BFloat16>);
    case c10::ScalarType::Half:
      return launch<c10::Half>(args, &backward_kernel<c10::Half>);
    default:
      TORCH_CHECK(false, "fusedlstm: no CUDA pointwise kernel for dtype ", args.dtype);
  }
}

}  // namespace fusedlstm::cuda
