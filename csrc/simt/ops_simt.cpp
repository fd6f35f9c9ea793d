// The op implementations of the CUDA back-end with emulated kernels (cuda_simt.h), and the switch
// that routes the CPU ops to them.
#include "cuda_simt.h"

#include <fusedlstm/cell_algorithm.h>
#include <fusedlstm/layer_algorithm.h>

#include <fusedlstm/switches.h>

namespace fusedlstm::simt {

bool emulate_cuda_kernels() { return switch_value(Switch::kCpuEmulateCuda) != 0; }

std::tuple<at::Tensor, at::Tensor, at::Tensor> cell_forward(
    const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih,
    const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
    const c10::optional<at::Tensor>& b_hh) {
  return cell_forward_impl<CudaSimtBackend>(input, hx, cx, w_ih, w_hh, b_ih, b_hh);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cell_backward(
    const at::Tensor& grad_hy, const at::Tensor& grad_cy, const at::Tensor& input,
    const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih, const at::Tensor& w_hh,
    const at::Tensor& cy, const at::Tensor& gates, bool need_input_grad, bool need_hx_grad,
    bool need_weight_grads) {
  return cell_backward_impl<CudaSimtBackend>(grad_hy, grad_cy, input, hx, cx, w_ih, w_hh, cy,
                                             gates, need_input_grad, need_hx_grad,
                                             need_weight_grads);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> layer_forward(
    const at::Tensor& input, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_ih,
    const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
    const c10::optional<at::Tensor>& b_hh, const c10::optional<at::Tensor>& w_hr,
    const c10::optional<at::Tensor>& batch_sizes, bool reverse, bool train) {
  return layer_forward_impl<CudaSimtBackend>(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr,
                                             batch_sizes, reverse, train);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
layer_backward(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
               const at::Tensor& grad_c_n, const at::Tensor& input, const at::Tensor& h0,
               const at::Tensor& c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
               const c10::optional<at::Tensor>& w_hr, const c10::optional<at::Tensor>& batch_sizes,
               bool reverse, const at::Tensor& output, const at::Tensor& gates,
               const at::Tensor& cells, bool need_input_grad, bool need_weight_grads) {
  return layer_backward_impl<CudaSimtBackend>(grad_output, grad_h_n, grad_c_n, input, h0, c0,
                                              w_ih, w_hh, w_hr, batch_sizes, reverse, output,
                                              gates, cells, need_input_grad, need_weight_grads);
}

}  // namespace fusedlstm::simt
