// The CPU pointwise kernels, one set per vector capability, over a range of a step's rows.
// Framework-free: the capability translation units include nothing of ATen but at::vec.
#pragma once

#include <fusedlstm/pointwise.h>
#include <fusedlstm/state_cell_units.h>

#include <cstdint>

namespace fusedlstm::cpu {

// The fused recurrent step's arguments: the pointwise step, plus h_{t-1} and the packed W_hh
// (see fused_step_kernel.h). `preact` is updated in place: the kernel adds h_{t-1} W_hh^T into
// it before the pointwise math reads it. With `x` set (input fusion), the kernel first writes
// bias + x_t W_ih^T into `preact` itself: no input projection beforehand.
//
// float32 steps: everything float32, weights packed as [block][k][gate][lane]. bfloat16 steps
// (fused_step_bf16.cpp): h, x, c and the weights bfloat16, the weights packed as
// [block][k / 2][gate][lane][k % 2] (pairs of k for the pairwise dot product), while `preact`
// and `bias` are float32: the sums are accumulated and kept in float32 until the gate math.
struct FusedStepArgs {
  PointwiseForwardArgs pointwise;
  const void* h_prev;  // (rows, inner) with row stride h_prev_stride
  int64_t h_prev_stride;
  int64_t inner;               // P, the size of h_{t-1}
  const void* packed_weight;   // W_hh packed
  const void* x;               // (rows, x_inner) with row stride x_stride, or nullptr
  int64_t x_stride;
  int64_t x_inner;                  // I
  const void* packed_input_weight;  // W_ih packed the same way
  const float* bias;                // (4H) b_ih + b_hh, or nullptr for none
  int parts;  // which of kFusedInputPart / kFusedRecurrentPart this call runs
};

// The two parts of an input-fused step: bias + x_t W_ih^T into `preact` (independent of the step
// before), then + h_{t-1} W_hh^T and the pointwise step. A step without input fusion has only
// the second.
constexpr int kFusedInputPart = 1;
constexpr int kFusedRecurrentPart = 2;

// The fused recurrent backward step's arguments: the step and W_hh packed as
// [block][u][gate][lane] (float32, see fused_step_kernel.h) or [block][u / 2][gate][lane][u % 2]
// (bfloat16, fused_step_bf16.cpp; there grad_h_state, dL/dh, is float32).
struct FusedBackwardArgs {
  RecurrentBackwardStep step;
  int64_t hidden;
  const void* packed_weight;
};

// The row-range kernels each capability translation unit provides.
using ForwardRowsFn = void (*)(const PointwiseForwardArgs&, int64_t row_begin, int64_t row_end);
using BackwardRowsFn = void (*)(const PointwiseBackwardArgs&, int64_t row_begin, int64_t row_end);
using FusedBlocksFn = void (*)(const FusedStepArgs&, int64_t block_begin, int64_t block_end);
using FusedBackwardBlocksFn = void (*)(const FusedBackwardArgs&, int64_t block_begin,
                                       int64_t block_end);
using StateForwardRowsFn = void (*)(const StateForwardArgs&, int64_t row_begin, int64_t row_end);
using StateBackwardRowsFn = void (*)(const StateBackwardArgs&, int64_t row_begin,
                                     int64_t row_end);

struct RowKernels {
  ForwardRowsFn forward;
  BackwardRowsFn backward;
  FusedBlocksFn fused_forward;  // over blocks of `block_width` hidden units
  FusedBackwardBlocksFn fused_backward;
  int64_t block_width;
  const char* capability;
  StateForwardRowsFn state_forward;  // GRU and Elman RNN (state_cell_units.h)
  StateBackwardRowsFn state_backward;
};

// One per capability; AVX2 and AVX-512 exist only in x86-64 builds (FUSEDLSTM_X86_KERNELS).
RowKernels row_kernels_default();
RowKernels row_kernels_avx2();
RowKernels row_kernels_avx512();

// The kernels chosen for this process (honours ATEN_CPU_CAPABILITY, as ATen's own kernels do).
const RowKernels& selected_row_kernels();

// The bfloat16 fused steps (fused_step_bf16.cpp, AVX-512 with the BF16 dot product vdpbf16ps),
// block width 16. Only in x86-64 builds, called only where the CPU has avx512_bf16.
struct Bf16FusedKernels {
  FusedBlocksFn forward;
  FusedBackwardBlocksFn backward;
};
Bf16FusedKernels bf16_fused_kernels();
constexpr int64_t kBf16BlockWidth = 16;

// bf16_fused_kernels() where this process may use them (the CPU has avx512_bf16 and the selected
// capability is AVX512), otherwise nullptr.
const Bf16FusedKernels* selected_bf16_fused_kernels();

}  // namespace fusedlstm::cpu
