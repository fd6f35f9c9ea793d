// CPU implementations of the fusedlstm ops: the shared algorithms with the CPU back-end, or, while
// the CUDA kernels are emulated (simt/cuda_simt.h), with the CUDA back-end on the emulation.
#include <torch/library.h>

#include <fusedlstm/cell_algorithm.h>
#include <fusedlstm/state_ops.h>

#include "../simt/cuda_simt.h"
#include "cpu_backend.h"
#include "layer_cpu.h"

namespace fusedlstm::cpu {
namespace {

template <auto Cpu, auto Emulated>
struct Routed;

template <typename Ret, typename... Args, Ret (*Cpu)(Args...), Ret (*Emulated)(Args...)>
struct Routed<Cpu, Emulated> {
  static Ret call(Args... args) {
    return simt::emulate_cuda_kernels() ? Emulated(args...) : Cpu(args...);
  }
};

}  // namespace
}  // namespace fusedlstm::cpu

TORCH_LIBRARY_IMPL(fusedlstm, CPU, m) {
  using fusedlstm::cpu::CpuCellBackend;
  using fusedlstm::cpu::Routed;
  namespace simt = fusedlstm::simt;
  m.impl("lstm_cell",
         &Routed<&fusedlstm::cell_forward_impl<CpuCellBackend>, &simt::cell_forward>::call);
  m.impl("lstm_cell_backward",
         &Routed<&fusedlstm::cell_backward_impl<CpuCellBackend>, &simt::cell_backward>::call);
  m.impl("lstm_layer", &Routed<&fusedlstm::cpu::layer_forward_cpu, &simt::layer_forward>::call);
  m.impl("lstm_layer_backward",
         &Routed<&fusedlstm::cpu::layer_backward_cpu, &simt::layer_backward>::call);
  using Cpu = fusedlstm::StateOps<fusedlstm::cpu::CpuBackend, CpuCellBackend>;
  using Emulated = fusedlstm::StateOps<simt::CudaSimtBackend, simt::CudaSimtBackend>;
  m.impl("gru_layer", &Routed<&Cpu::gru_layer, &Emulated::gru_layer>::call);
  m.impl("gru_layer_backward",
         &Routed<&Cpu::gru_layer_backward, &Emulated::gru_layer_backward>::call);
  m.impl("rnn_layer", &Routed<&Cpu::rnn_layer, &Emulated::rnn_layer>::call);
  m.impl("rnn_layer_backward",
         &Routed<&Cpu::rnn_layer_backward, &Emulated::rnn_layer_backward>::call);
  m.impl("gru_cell", &Routed<&Cpu::gru_cell, &Emulated::gru_cell>::call);
  m.impl("gru_cell_backward", &Routed<&Cpu::gru_cell_backward, &Emulated::gru_cell_backward>::call);
  m.impl("rnn_cell", &Routed<&Cpu::rnn_cell, &Emulated::rnn_cell>::call);
  m.impl("rnn_cell_backward", &Routed<&Cpu::rnn_cell_backward, &Emulated::rnn_cell_backward>::call);
}
