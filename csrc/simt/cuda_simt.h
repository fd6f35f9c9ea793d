// The CUDA back-end with its kernels emulated on CPU threads (simt/simt.h), for CPU tensors: the
// whole CUDA op path except cuBLAS and the stream, run by the CPU tests. The CPU ops take it
// while emulate_cuda_kernels() is on (fusedlstm.simt.emulated_cuda_kernels() in Python).
#pragma once

#include <ATen/ATen.h>
#include <fusedlstm/kernel_backend.h>

#include <tuple>

namespace fusedlstm::simt {

struct SimtKernels {
  static void forward(const PointwiseForwardArgs& args);
  static void backward(const PointwiseBackwardArgs& args);
  static void state_forward(const StateForwardArgs& args);  // GRU, Elman RNN
  static void state_backward(const StateBackwardArgs& args);

  // The persistent kernels on the emulation (as CudaKernels; persistent_simt.cpp).
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

// Cooperative (persistent-kernel) launches so far in this process, emulated.
int64_t emulated_cooperative_launches();
// Of those, the tensor-core (wmma) kernels'.
int64_t emulated_tensor_core_launches();

using CudaSimtBackend = KernelBackend<SimtKernels>;

// Whether the CPU ops run CudaSimtBackend (the switch cpu.emulate_cuda_kernels).
bool emulate_cuda_kernels();
// Emulated kernel launches so far in this process (tests check the emulation really ran).
int64_t emulated_launches();

std::tuple<at::Tensor, at::Tensor, at::Tensor> cell_forward(
    const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih,
    const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
    const c10::optional<at::Tensor>& b_hh);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cell_backward(
    const at::Tensor& grad_hy, const at::Tensor& grad_cy, const at::Tensor& input,
    const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih, const at::Tensor& w_hh,
    const at::Tensor& cy, const at::Tensor& gates, bool need_input_grad, bool need_hx_grad,
    bool need_weight_grads);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> layer_forward(
    const at::Tensor& input, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_ih,
    const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
    const c10::optional<at::Tensor>& b_hh, const c10::optional<at::Tensor>& w_hr,
    const c10::optional<at::Tensor>& batch_sizes, bool reverse, bool train);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
layer_backward(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
               const at::Tensor& grad_c_n, const at::Tensor& input, const at::Tensor& h0,
               const at::Tensor& c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
               const c10::optional<at::Tensor>& w_hr, const c10::optional<at::Tensor>& batch_sizes,
               bool reverse, const at::Tensor& output, const at::Tensor& gates,
               const at::Tensor& cells, bool need_input_grad, bool need_weight_grads);

}  // namespace fusedlstm::simt
