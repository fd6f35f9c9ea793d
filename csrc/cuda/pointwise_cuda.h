// The CUDA back-end of the time loop: grid-stride pointwise kernels over (row, unit) on PyTorch's
// current stream, and ATen's (cuBLAS) GEMMs. Host code only; kernels in pointwise_kernels.cuh.
#pragma once

#include <fusedlstm/kernel_backend.h>

namespace fusedlstm::cuda {

struct CudaKernels {
  static void forward(const PointwiseForwardArgs& args);
  static void backward(const PointwiseBackwardArgs& args);
};

using CudaBackend = KernelBackend<CudaKernels>;

}  // namespace fusedlstm::cuda
