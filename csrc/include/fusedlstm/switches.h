// The run-time strategy switches: one switchboard, settable from Python at any time
// (fusedlstm.backends, in the style of torch.backends) and read where a strategy is chosen, with
// one relaxed atomic load. Not environment variables: those are for the build.
#pragma once

#include <cstdint>

namespace fusedlstm {

// Each switch holds a small integer: the index of its choice (switches.cpp names them), or a
// count for backward_chunk_steps (0: automatic).
enum class Switch : int {
  kCpuStep,             // auto | fused | gemm: the CPU's per-step strategy
  kCpuInputFusion,      // auto | on | off: x_t W_ih^T inside the fused step
  kCpuGemm,             // auto | aten: the CUDA build's ATen GEMMs on the CPU, no fused step
  kCpuBf16Compute,      // auto | float | bf16: how bfloat16 layers compute without vdpbf16ps
  kCpuEmulateCuda,      // off | on: CPU tensors take the CUDA back-end on the SIMT emulation
  kBackwardChunkSteps,  // steps per backward chunk; 0: ~8 MiB of gate gradients
  kCudaStep,            // auto | persistent | per_step | persistent_refused (persistent_step.h)
  kCount,
};

// Choice indices, for readability at the call sites.
inline constexpr int64_t kAuto = 0;
inline constexpr int64_t kCpuStepFused = 1, kCpuStepGemm = 2;
inline constexpr int64_t kInputFusionOn = 1, kInputFusionOff = 2;
inline constexpr int64_t kCpuGemmAten = 1;
inline constexpr int64_t kBf16ComputeFloat = 1, kBf16ComputeBf16 = 2;

// The switch's current value. In the CPU extension a load of the switchboard; in the CUDA
// extension (a separate library) a call of the fusedlstm::_switch op, which reads the same one.
int64_t switch_value(Switch which);

}  // namespace fusedlstm
