// The CUDA back-end of the time loop: grid-stride pointwise kernels over (row, unit) on PyTorch's
// current stream, and ATen's (cuBLAS) per-step GEMM. Host code only; kernels in pointwise_cuda.cu.
#pragma once

#include <fusedlstm/pointwise.h>
#include <fusedlstm/gemm.h>

namespace fusedlstm::cuda {

struct CudaBackend : AtenGemm {
  using StepGemm = AtenStepGemm;
  using FusedStep = NoFusedStep;
  using FusedBackward = NoFusedStep;
  static void forward(const PointwiseForwardArgs& args);
  static void backward(const PointwiseBackwardArgs& args);
};

}  // namespace fusedlstm::cuda
