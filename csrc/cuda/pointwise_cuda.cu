// The GPU launcher of the pointwise kernels (pointwise_kernels.cuh): PyTorch's current stream,
// every launch checked. The emulated twin is simt/pointwise_simt.cpp.
#include "pointwise_cuda.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include "pointwise_kernels.cuh"

namespace fusedlstm::cuda {
namespace {

struct GpuLaunch {
  template <typename Args>
  void operator()(void (*kernel)(Args), int blocks, int threads, const Args& args) const {
    kernel<<<blocks, threads, 0, c10::cuda::getCurrentCUDAStream()>>>(args);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace

void CudaKernels::forward(const PointwiseForwardArgs& args) {
  kernels::launch_pointwise(args, GpuLaunch{});
}

void CudaKernels::backward(const PointwiseBackwardArgs& args) {
  kernels::launch_pointwise(args, GpuLaunch{});
}

void CudaKernels::state_forward(const StateForwardArgs& args) {
  kernels::launch_state_pointwise(args, GpuLaunch{});
}

void CudaKernels::state_backward(const StateBackwardArgs& args) {
  kernels::launch_state_pointwise(args, GpuLaunch{});
}

}  // namespace fusedlstm::cuda
