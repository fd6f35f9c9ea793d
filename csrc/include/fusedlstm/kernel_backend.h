// A back-end made of device pointwise kernels and ATen's GEMMs: the CUDA back-end, and its
// emulated twin that runs the same kernel sources on CPU tensors (simt/). `Kernels` provides
// static forward(PointwiseForwardArgs) / backward(PointwiseBackwardArgs) launchers.
#pragma once

#include <fusedlstm/gemm.h>
#include <fusedlstm/pointwise.h>

namespace fusedlstm {

template <class Kernels>
struct KernelBackend : AtenGemm {
  using StepGemm = AtenStepGemm;
  using FusedStep = NoFusedStep;
  using FusedBackward = NoFusedStep;
  static void forward(const PointwiseForwardArgs& args) { Kernels::forward(args); }
  static void backward(const PointwiseBackwardArgs& args) { Kernels::backward(args); }
  // The time loop's large buffers (PyTorch's caching allocator already reuses CUDA memory).
  static at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    return at::empty(sizes, options);
  }
};

}  // namespace fusedlstm
