// CPU implementations of the fusedlstm ops: the shared algorithms with the CPU pointwise back-end.
#include <torch/library.h>

#include <fusedlstm/cell_algorithm.h>
#include <fusedlstm/layer_algorithm.h>

#include "pointwise_cpu.h"

TORCH_LIBRARY_IMPL(fusedlstm, CPU, m) {
  using fusedlstm::cpu::CpuPointwise;
  m.impl("lstm_cell", &fusedlstm::cell_forward_impl<CpuPointwise>);
  m.impl("lstm_cell_backward", &fusedlstm::cell_backward_impl<CpuPointwise>);
  m.impl("lstm_layer", &fusedlstm::layer_forward_impl<CpuPointwise>);
  m.impl("lstm_layer_backward", &fusedlstm::layer_backward_impl<CpuPointwise>);
}
