// The CUDA pointwise back-end of the time loop: grid-stride kernels over (row, unit) on PyTorch's
// current stream. Host code only; the kernels are in pointwise_cuda.cu.
#pragma once

#include <fusedlstm/pointwise.h>

namespace fusedlstm::cuda {

struct CudaPointwise {
  static void forward(const PointwiseForwardArgs& args);
  static void backward(const PointwiseBackwardArgs& args);
};

}  // namespace fusedlstm::cuda
