// CUDA implementations of the fusedlstm ops: the same shared algorithms as the CPU (and so the
// same host code the CPU tests run), with the CUDA pointwise back-end, under a device guard so
// that ATen's GEMMs and our launches target the input's GPU.
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <fusedlstm/cell_algorithm.h>
#include <fusedlstm/layer_algorithm.h>
#include <fusedlstm/state_ops.h>

#include "pointwise_cuda.h"

namespace fusedlstm::cuda {
namespace {

// Wraps an op implementation whose first tensor argument picks the device.
template <auto Impl>
struct Guarded;

template <typename Ret, typename... Args, Ret (*Impl)(const at::Tensor&, Args...)>
struct Guarded<Impl> {
  static Ret call(const at::Tensor& first, Args... args) {
    const c10::cuda::CUDAGuard guard(first.device());
    return Impl(first, args...);
  }
};

}  // namespace
}  // namespace fusedlstm::cuda

TORCH_LIBRARY_IMPL(fusedlstm, CUDA, m) {
  using fusedlstm::cuda::CudaBackend;
  using fusedlstm::cuda::Guarded;
  m.impl("lstm_cell", &Guarded<&fusedlstm::cell_forward_impl<CudaBackend>>::call);
  m.impl("lstm_cell_backward", &Guarded<&fusedlstm::cell_backward_impl<CudaBackend>>::call);
  m.impl("lstm_layer", &Guarded<&fusedlstm::layer_forward_impl<CudaBackend>>::call);
  m.impl("lstm_layer_backward", &Guarded<&fusedlstm::layer_backward_impl<CudaBackend>>::call);
  using State = fusedlstm::StateOps<CudaBackend, CudaBackend>;
  m.impl("gru_layer", &Guarded<&State::gru_layer>::call);
  m.impl("gru_layer_backward", &Guarded<&State::gru_layer_backward>::call);
  m.impl("rnn_layer", &Guarded<&State::rnn_layer>::call);
  m.impl("rnn_layer_backward", &Guarded<&State::rnn_layer_backward>::call);
  m.impl("gru_cell", &Guarded<&State::gru_cell>::call);
  m.impl("gru_cell_backward", &Guarded<&State::gru_cell_backward>::call);
  m.impl("rnn_cell", &Guarded<&State::rnn_cell>::call);
  m.impl("rnn_cell_backward", &Guarded<&State::rnn_cell_backward>::call);
}
