// CPU implementations of the fusedlstm ops: the shared algorithms with the CPU pointwise back-end.
#include <torch/library.h>

#include <fusedlstm/cell_algorithm.h>

#include "cpu_backend.h"
#include "layer_cpu.h"

TORCH_LIBRARY_IMPL(fusedlstm, CPU, m) {
  using fusedlstm::cpu::CpuBackend;
  m.impl("lstm_cell", &fusedlstm::cell_forward_impl<CpuBackend>);
  m.impl("lstm_cell_backward", &fusedlstm::cell_backward_impl<CpuBackend>);
  m.impl("lstm_layer", &fusedlstm::cpu::layer_forward_cpu);
  m.impl("lstm_layer_backward", &fusedlstm::cpu::layer_backward_cpu);
}
