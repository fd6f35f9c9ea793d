// Every op schema of the `fusedlstm` namespace, in one place. Device implementations register in
// cpu/ops_cpu.cpp and cuda/ops_cuda.cpp; fake kernels in fusedlstm/ops.py and _state_ops.py, the
// layers' autograd there too, the cells' in cell_autograd.cpp.
#include <torch/library.h>

#include "cpu/buffer_pool.h"
#include "cpu/fused_step.h"
#include "simt/cuda_simt.h"
#include "switch_ops.h"

TORCH_LIBRARY(fusedlstm, m) {
  // One step: returns (h', c', gates) with gates the activated gates (B, 4H) kept for backward.
  m.def(
      "lstm_cell(Tensor input, Tensor hx, Tensor cx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
      "Tensor? b_hh) -> (Tensor, Tensor, Tensor)");
  // Returns (grad_input, grad_hx, grad_cx, grad_w_ih, grad_w_hh, grad_bias); grad_input, grad_hx
  // and the weight and bias gradients are empty unless asked for (each skipped one saves a GEMM).
  m.def(
      "lstm_cell_backward(Tensor grad_hy, Tensor grad_cy, Tensor input, Tensor hx, Tensor cx, "
      "Tensor w_ih, Tensor w_hh, Tensor cy, Tensor gates, bool need_input_grad=True, "
      "bool need_hx_grad=True, bool need_weight_grads=True) -> (Tensor, Tensor, Tensor, Tensor, "
      "Tensor, Tensor)");
  // One direction of one layer over a sequence: input (T, B, I), or packed data (N, I) with
  // batch_sizes. Returns (output, h_n, c_n, gates, cells); gates and cells are empty unless train.
  m.def(
      "lstm_layer(Tensor input, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
      "Tensor? b_hh, Tensor? w_hr, Tensor? batch_sizes, bool reverse, bool train) -> (Tensor, "
      "Tensor, Tensor, Tensor, Tensor)");
  // Returns (grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_bias, grad_w_hr);
  // grad_w_hr is empty without a projection, grad_input unless need_input_grad, the weight and
  // bias gradients unless need_weight_grads (each skipped one saves a GEMM over all steps).
  m.def(
      "lstm_layer_backward(Tensor grad_output, Tensor grad_h_n, Tensor grad_c_n, Tensor input, "
      "Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? w_hr, Tensor? batch_sizes, "
      "bool reverse, Tensor output, Tensor gates, Tensor cells, bool need_input_grad, "
      "bool need_weight_grads) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // GRU and Elman RNN (state_layer.h), the same contract for cells whose only state is h. A GRU
  // layer returns (output, h_n, saved) with saved the (N, 4H) r, z, n and W_hn h + b_hn of every
  // step, empty unless train; its backward returns (grad_input, grad_h0, grad_w_ih, grad_w_hh,
  // grad_b_ih, grad_b_hh): b_ih's and b_hh's differ in the candidate rows. An RNN keeps nothing
  // but its output; nonlinearity is 'tanh' or 'relu'; its bias gradient serves both biases.
  m.def(
      "gru_layer(Tensor input, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? batch_sizes, bool reverse, bool train) -> (Tensor, Tensor, Tensor)");
  m.def(
      "gru_layer_backward(Tensor grad_output, Tensor grad_h_n, Tensor input, Tensor h0, "
      "Tensor w_ih, Tensor w_hh, Tensor? batch_sizes, bool reverse, Tensor output, Tensor saved, "
      "bool need_input_grad, bool need_weight_grads) -> (Tensor, Tensor, Tensor, Tensor, Tensor, "
      "Tensor)");
  m.def(
      "rnn_layer(Tensor input, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? batch_sizes, bool reverse, str nonlinearity) -> (Tensor, Tensor)");
  m.def(
      "rnn_layer_backward(Tensor grad_output, Tensor grad_h_n, Tensor input, Tensor h0, "
      "Tensor w_ih, Tensor w_hh, Tensor? batch_sizes, bool reverse, str nonlinearity, "
      "Tensor output, bool need_input_grad, bool need_weight_grads) -> (Tensor, Tensor, Tensor, "
      "Tensor, Tensor)");
  // One step: (hy, saved) for GRU, hy for the RNN. Backwards as the layers', grad_hx empty
  // unless need_hx_grad.
  m.def(
      "gru_cell(Tensor input, Tensor hx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh) "
      "-> (Tensor, Tensor)");
  m.def(
      "gru_cell_backward(Tensor grad_hy, Tensor input, Tensor hx, Tensor w_ih, Tensor w_hh, "
      "Tensor hy, Tensor saved, bool need_input_grad=True, bool need_hx_grad=True, "
      "bool need_weight_grads=True) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "rnn_cell(Tensor input, Tensor hx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "str nonlinearity) -> Tensor");
  m.def(
      "rnn_cell_backward(Tensor grad_hy, Tensor input, Tensor hx, Tensor w_ih, Tensor w_hh, "
      "Tensor hy, str nonlinearity, bool need_input_grad=True, bool need_hx_grad=True, "
      "bool need_weight_grads=True) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  // The switchboard (fusedlstm/switches.h; fusedlstm.backends in Python): a switch's value by
  // name, setting one (returns the previous value), and a raw read for the CUDA extension.
  m.def("_switch(str name) -> str", &fusedlstm::get_switch);
  m.def("_set_switch(str name, str value) -> str", &fusedlstm::set_switch);
  m.def("_switch_code(int which) -> int", &fusedlstm::switch_code);
  // Queries of the CPU back-end (fusedlstm.buffers, fusedlstm.cpu_kernels).
  m.def("_cpu_pool_enabled() -> bool", &fusedlstm::cpu::pool_enabled);
  m.def("_cpu_cached_bytes() -> int", &fusedlstm::cpu::pooled_cached_bytes);
  m.def("_release_cpu_buffers() -> int", &fusedlstm::cpu::release_pooled_buffers);
  m.def("_cpu_bf16_fused_step() -> bool", &fusedlstm::cpu::bf16_fused_step_available);
  // Emulated CUDA kernel launches so far (fusedlstm.simt): tests check the emulation ran.
  m.def("_emulated_launches() -> int", &fusedlstm::simt::emulated_launches);
  m.def("_emulated_cooperative_launches() -> int",
        &fusedlstm::simt::emulated_cooperative_launches);
  m.def("_emulated_tensor_core_launches() -> int",
        &fusedlstm::simt::emulated_tensor_core_launches);
}
