// The CUDA back-end of the time loop: grid-stride pointwise kernels over (row, unit) and the
// persistent recurrent kernels on PyTorch's current stream, and ATen's (cuBLAS) GEMMs. Host code
// only; kernels in pointwise_kernels.cuh and persistent_kernels.cuh.
#pragma once

#include <c10/core/Device.h>

#include <fusedlstm/kernel_backend.h>

namespace fusedlstm::cuda {

struct CudaKernels {
  static void forward(const PointwiseForwardArgs& args);
  static void backward(const PointwiseBackwardArgs& args);
  static void state_forward(const StateForwardArgs& args);  // GRU, Elman RNN
  static void state_backward(const StateBackwardArgs& args);

  // The persistent kernels (persistent_step.h): the device's multiprocessors, how many blocks of
  // a launch can be resident at once (0 when its shared memory exceeds the device's), whether
  // a launch may be made now (not while the stream captures a CUDA graph), and the cooperative
  // launch itself (false when the device refuses it).
  static int64_t multiprocessors(c10::Device device);
  static bool has_tensor_cores(c10::Device device);
  static int64_t resident_blocks(c10::ScalarType dtype, bool backward, bool tensor_cores,
                                 int threads, size_t shared_bytes);
  static bool can_launch_persistent(c10::Device device);
  static bool launch(const kernels::PersistentForwardParams& params, c10::ScalarType dtype,
                     const kernels::PersistentGeometry& geometry);
  static bool launch(const kernels::PersistentBackwardParams& params, c10::ScalarType dtype,
                     const kernels::PersistentGeometry& geometry);
  // The GRU's / RNN's persistent kernels (persistent_state_step.h).
  static int64_t resident_state_blocks(StateCell cell, c10::ScalarType dtype, bool backward,
                                       bool tensor_cores, int threads, size_t shared_bytes);
  static bool launch(const kernels::PersistentStateForwardParams& params, c10::ScalarType dtype,
                     const kernels::PersistentGeometry& geometry);
  static bool launch(const kernels::PersistentStateBackwardParams& params, c10::ScalarType dtype,
                     const kernels::PersistentGeometry& geometry);
};

using CudaBackend = KernelBackend<CudaKernels>;

}  // namespace fusedlstm::cuda
