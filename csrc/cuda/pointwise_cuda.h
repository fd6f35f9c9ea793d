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
  // The time loop's large buffers (PyTorch's CUDA caching allocator already reuses memory).
  static at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    return at::empty(sizes, options);
  }
};

}  // namespace fusedlstm::cuda
