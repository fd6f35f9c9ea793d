// A back-end made of device kernels and ATen's GEMMs: the CUDA back-end, and its emulated twin
// that runs the same kernel sources on CPU tensors (simt/). `Kernels` provides static
// forward(PointwiseForwardArgs) / backward(PointwiseBackwardArgs) launchers and what
// persistent_step.h needs of the persistent kernels.
#pragma once

#include <fusedlstm/gemm.h>
#include <fusedlstm/persistent_state_step.h>
#include <fusedlstm/persistent_step.h>
#include <fusedlstm/pointwise.h>
#include <fusedlstm/state_cell_units.h>

namespace fusedlstm {

template <class Kernels>
struct KernelBackend : AtenGemm {
  using StepGemm = AtenStepGemm;
  using FusedStep = PersistentStep<Kernels>;
  using FusedBackward = PersistentStep<Kernels>;
  using FusedStateStep = PersistentStateStep<Kernels>;
  using FusedStateBackward = PersistentStateStep<Kernels>;
  static void forward(const PointwiseForwardArgs& args) { Kernels::forward(args); }
  static void backward(const PointwiseBackwardArgs& args) { Kernels::backward(args); }
  static void state_forward(const StateForwardArgs& args) { Kernels::state_forward(args); }
  static void state_backward(const StateBackwardArgs& args) { Kernels::state_backward(args); }
  // The time loop's large buffers (PyTorch's caching allocator already reuses CUDA memory).
  static at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    return at::empty(sizes, options);
  }
};

}  // namespace fusedlstm
