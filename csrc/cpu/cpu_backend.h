// The CPU back-end of the shared time loop: the fused pointwise passes (a step's rows split over
// threads, each running the kernel compiled for this CPU's vector capability) and the per-step
// GEMMs (cpu_gemm.h).
#pragma once

#include <fusedlstm/pointwise.h>
#include <fusedlstm/state_cell_units.h>

#include "buffer_pool.h"
#include "cpu_gemm.h"
#include "fused_state_step.h"
#include "fused_step.h"

namespace fusedlstm::cpu {

struct CpuBackend : CpuGemm {
  using StepGemm = CpuStepGemm;
  using FusedStep = FusedRecurrentStep;
  using FusedBackward = FusedRecurrentBackward;
  using FusedStateStep = cpu::FusedStateStep;
  using FusedStateBackward = cpu::FusedStateBackward;
  static void forward(const PointwiseForwardArgs& args);
  static void backward(const PointwiseBackwardArgs& args);
  static void state_forward(const StateForwardArgs& args);  // GRU, Elman RNN
  static void state_backward(const StateBackwardArgs& args);
  // The time loop's large buffers: from the pool, reused across calls (buffer_pool.h).
  static at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    return pooled_empty(sizes, options);
  }
};

// The cell ops' back-end: the same pointwise passes; the forward's products by the layers' rule
// (oneDNN for the large ones), the backward's by ATen (MKL): there oneDNN's transposed copies of
// dgates cost more than its faster GEMM saves. Cell loops, fused / nn, B=64 I=H=512 float32 on an
// AMD EPYC: inference 0.93-0.97 -> 0.37-0.55, training 0.90-0.99 -> 0.69-0.85; all oneDNN made
// training at B=32 H=256 slower (docs/performance.md, "The cells' GEMMs").
struct CpuCellBackend : AtenGemm {
  using StepGemm = CpuStepGemm;
  static at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
    return CpuGemm::linear(x, w, bias);
  }
  static at::Tensor matmul(const at::Tensor& a, const at::Tensor& b) {
    if (!computed_in_float(a.scalar_type())) return AtenGemm::matmul(a, b);
    return AtenGemm::matmul(a.to(at::kFloat), b.to(at::kFloat)).to(a.scalar_type());
  }
  static at::Tensor matmul_tn(const at::Tensor& a, const at::Tensor& b) {
    if (!computed_in_float(a.scalar_type())) return AtenGemm::matmul_tn(a, b);
    return AtenGemm::matmul_tn(a.to(at::kFloat), b.to(at::kFloat)).to(a.scalar_type());
  }
  static void forward(const PointwiseForwardArgs& args) { CpuBackend::forward(args); }
  static void backward(const PointwiseBackwardArgs& args) { CpuBackend::backward(args); }
  static void state_forward(const StateForwardArgs& args) { CpuBackend::state_forward(args); }
  static void state_backward(const StateBackwardArgs& args) { CpuBackend::state_backward(args); }
  static at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    return at::empty(sizes, options);
  }
};

}  // namespace fusedlstm::cpu
