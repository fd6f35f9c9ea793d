#include "fused_step.h"

#include <fusedlstm/switches.h>

#include "cpu_gemm.h"
#include "sliced_steps.h"
#include "weight_packing.h"

#include <ATen/Config.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <string>

namespace fusedlstm::cpu {

namespace {

// The switch cpu.step: fused / gemm force the per-step strategy (tests run both on every shape).
int64_t forced_strategy() { return switch_value(Switch::kCpuStep); }

// The switch cpu.input_fusion: off turns input fusion off, on turns it on at any batch size (A/B
// measurements; tests run all three).
int64_t forced_input_fusion() { return switch_value(Switch::kCpuInputFusion); }

// Bytes of float32 W_ih (when defined) and W_hh.
int64_t float_weight_bytes(const at::Tensor& w_ih, const at::Tensor& w_hh) {
  return ((w_ih.defined() ? w_ih.numel() : 0) + w_hh.numel()) * 4;
}

}  // namespace

bool fused_step_applies(const at::Tensor& w_hh, int64_t max_rows, int64_t calls) {
  const int64_t forced = forced_strategy();
  if (forced == kCpuStepGemm || aten_gemms_only()) return false;
  if (w_hh.scalar_type() != at::kFloat || !w_hh.device().is_cpu() || calls <= 1) return false;
  if (forced == kCpuStepFused) return true;
  const int64_t weight_bytes = w_hh.numel() * 4;
  return max_rows <= kFusedStepAlwaysRows ||
         (max_rows <= kFusedStepSmallWeightMaxRows &&
          weight_bytes <= kFusedStepSmallWeightBytes) ||
         (max_rows <= kFusedStepMaxRows && weight_bytes <= kFusedStepMaxWeightBytes);
}

bool input_fusion_applies(const at::Tensor& w_ih, const at::Tensor& w_hh, int64_t max_rows,
                          bool inference) {
  const int64_t forced = forced_input_fusion();
  if (!w_ih.defined() || forced == kInputFusionOff || w_ih.scalar_type() != at::kFloat ||
      !w_ih.device().is_cpu() || w_ih.dim() != 2 || w_ih.size(0) != w_hh.size(0) ||
      w_ih.size(1) == 0) {
    return false;
  }
  if (forced == kInputFusionOn) return true;
  const bool streamed = float_weight_bytes(w_ih, w_hh) > kInputFusedMaxWeightBytes;
  const int64_t min_rows = !inference ? kInputFusionMinRowsTraining
                           : streamed ? kStreamedInputFusionMinRows
                                      : kInputFusionMinRows;
  return max_rows >= min_rows;
}

bool fused_inference_applies(const at::Tensor& w_ih, const at::Tensor& w_hh, int64_t max_rows,
                             int64_t calls, int tile_vectors) {
  if (fused_step_applies(w_hh, max_rows, calls)) return true;
  // forced fused: applied above; forced gemm: never
  if (forced_strategy() != kAuto || aten_gemms_only() || calls <= 1) return false;
  if (w_hh.scalar_type() != at::kFloat || max_rows > kInputFusedMaxRows) return false;
  const int64_t weight_bytes = float_weight_bytes(w_ih, w_hh);
  if (avx2_row_kernels()) return weight_bytes <= kStreamedFusedMaxWeightBytes;
  if (cpu_vendor() == CpuVendor::kAmd && weight_bytes <= kStreamedFusedMaxWeightBytes &&
      (tile_vectors >= 4 || max_rows < kStreamedInputFusionMinRows)) {
    return true;
  }
  return input_fusion_applies(w_ih, w_hh, max_rows, /*inference=*/true) &&
         weight_bytes <= kInputFusedMaxWeightBytes;
}

const Bf16FusedKernels* selected_bf16_fused_kernels() {
#if defined(FUSEDLSTM_X86_KERNELS)
  static const Bf16FusedKernels kernels = bf16_fused_kernels();
  static const bool usable = [] {
    if (std::string(selected_row_kernels().capability) != "AVX512") return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") != 0;
  }();
  return usable ? &kernels : nullptr;
#else
  return nullptr;
#endif
}

bool cpu_has_amx_bf16() {
#if defined(FUSEDLSTM_X86_KERNELS)
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("amx-bf16") != 0;
  }();
  return has;
#else
  return false;
#endif
}

bool bf16_fused_applies(const at::Tensor& w_ih, const at::Tensor& w_hh, int64_t max_rows,
                        int64_t calls) {
  const int64_t forced = forced_strategy();
  if (forced == kCpuStepGemm || aten_gemms_only() || selected_bf16_fused_kernels() == nullptr) {
    return false;
  }
  // calls == 0: never used (the backward of a layer with a projection)
  if (w_hh.scalar_type() != at::kBFloat16 || !w_hh.device().is_cpu() || w_hh.dim() != 2 ||
      calls == 0) {
    return false;
  }
  // the forward fuses the input projection: it needs W_ih (the backward passes none)
  const bool forward = w_ih.defined();
  if (forward && (w_ih.scalar_type() != at::kBFloat16 || w_ih.dim() != 2 || w_ih.size(1) == 0 ||
                  forced_input_fusion() == kInputFusionOff)) {
    return false;
  }
  if (forced == kCpuStepFused) return true;
  const int64_t weight_bytes = ((forward ? w_ih.numel() : 0) + w_hh.numel()) * 2;
  // a forward step's products: x_t W_ih^T and h W_hh^T; a backward step's: dgates W_hh
  const int64_t step_macs =
      max_rows * w_hh.size(0) * ((forward ? w_ih.size(1) : 0) + w_hh.size(1));
  if (cpu_has_amx_bf16() && step_macs > kBf16FusedMaxStepMacsWithAmx) return false;
  return calls > 1 && max_rows <= kBf16FusedMaxRows && weight_bytes <= kInputFusedMaxWeightBytes;
}

int64_t slices_for(int64_t macs_per_step, int64_t blocks) {
#if AT_PARALLEL_OPENMP
  // Waiting on other slices needs them to run at the same time: OpenMP's team threads do;
  // inside another parallel region parallel_for runs inline, one slice.
  if (at::in_parallel_region()) return 1;
  const int64_t by_work = std::max<int64_t>(1, macs_per_step / kMinMacsPerSlice);
  return std::min<int64_t>({at::get_num_threads(), blocks, by_work});
#else
  (void)macs_per_step;
  (void)blocks;
  return 1;
#endif
}

FusedForwardChoice choose_fused_forward(const at::Tensor& w_ih, const at::Tensor& w_hh,
                                        int64_t max_rows, int64_t calls, bool inference,
                                        int tile_vectors) {
  if (w_hh.scalar_type() == at::kBFloat16) {
    if (!bf16_fused_applies(w_ih, w_hh, max_rows, calls)) return {};
    // the bfloat16 step always computes its input part
    return {true, at::kBFloat16, kBf16BlockWidth, /*fuse_input=*/true};
  }
  const bool applies = inference ? fused_inference_applies(w_ih, w_hh, max_rows, calls,
                                                           tile_vectors)
                                 : fused_step_applies(w_hh, max_rows, calls);
  if (!applies) return {};
  return {true, at::kFloat, selected_row_kernels().block_width,
          input_fusion_applies(w_ih, w_hh, max_rows, inference)};
}

FusedRecurrentStep::FusedRecurrentStep(const at::Tensor& w_hh, int64_t max_rows, int64_t calls,
                                       const at::Tensor& w_ih, const at::Tensor& bias,
                                       bool inference) {
  const FusedForwardChoice choice =
      choose_fused_forward(w_ih, w_hh, max_rows, calls, inference, /*tile_vectors=*/4);
  if (!choice.applies) return;
  dtype_ = choice.dtype;
  width_ = choice.width;
  kernel_ = dtype_ == at::kBFloat16 ? selected_bf16_fused_kernels()->forward
                                    : selected_row_kernels().fused_forward;
  inner_ = w_hh.size(1);
  blocks_ = (w_hh.size(0) / 4 + width_ - 1) / width_;
  const TileColumns columns = gate_columns(w_hh.size(0) / 4, width_);
  packed_ = pack_forward_weight(w_hh, blocks_, width_, 4, columns);
  if (choice.fuse_input) {
    input_inner_ = w_ih.size(1);
    packed_input_ = pack_forward_weight(w_ih, blocks_, width_, 4, columns);
    if (bias.defined()) bias_ = bias.to(at::kFloat).contiguous();
  }
}

void FusedRecurrentStep::forward_steps(const RecurrentStep* steps, int64_t count) const {
  int64_t max_rows = 0;
  for (int64_t i = 0; i < count; ++i) {
    // (an empty batch has no input rows to point at)
    const bool input_as_fused =
        fuses_input() ? steps[i].x != nullptr || steps[i].pointwise.rows == 0 : !steps[i].x;
    TORCH_CHECK(steps[i].pointwise.h_copy == nullptr && steps[i].pointwise.dtype == dtype_ &&
                    input_as_fused,
                "FusedRecurrentStep: bad arguments");
    max_rows = std::max(max_rows, steps[i].pointwise.rows);
  }
  const FusedBlocksFn kernel = kernel_;
  const void* packed = packed_.const_data_ptr();
  const void* packed_input = fuses_input() ? packed_input_.const_data_ptr() : nullptr;
  const float* bias = bias_.defined() ? bias_.const_data_ptr<float>() : nullptr;
  const int64_t elem = static_cast<int64_t>(c10::elementSize(dtype_));
  // Row `first` of a buffer of rows of `stride` elements.
  const auto at_row = [&](const void* base, int64_t first, int64_t stride) {
    return base == nullptr ? nullptr
                           : static_cast<const void*>(static_cast<const char*>(base) +
                                                      first * stride * elem);
  };
  // Kernel arguments for rows [first, first + count) of a step, whose h_{t-1} rows start at h.
  const auto rows_args = [&](const RecurrentStep& step, int64_t first, int64_t count,
                             const void* h, int64_t h_stride, int parts) {
    PointwiseForwardArgs pointwise = rows_of(step.pointwise, first, count);
    // (rows_of moved preact by elements of dtype_; a bfloat16 step's preact is float32)
    pointwise.preact =
        static_cast<const float*>(step.pointwise.preact) + first * 4 * pointwise.hidden;
    return FusedStepArgs{pointwise,
                         at_row(h, first, h_stride),
                         h_stride,
                         inner_,
                         packed,
                         at_row(step.x, first, step.x_stride),
                         step.x_stride,
                         input_inner_,
                         packed_input,
                         bias,
                         parts};
  };
  // The rows of `work` within [lo, hi) of a step, whose h_{t-1} is h (numbered as the step's
  // rows).
  const auto run_rows = [&](const RecurrentStep& step, const SliceWork& work, int64_t lo,
                            int64_t hi, const void* h, int64_t h_stride, int parts) {
    const int64_t first = std::max(lo, work.row_begin);
    const int64_t last = std::min(hi, work.row_end);
    if (first >= last) return;
    kernel(rows_args(step, first, last - first, h, h_stride, parts), work.block_begin,
           work.block_end);
  };
  const auto run_parts = [&](int64_t i, const SliceWork& work, int parts) {
    const RecurrentStep& step = steps[i];
    const int64_t rows = step.pointwise.rows;
    const int64_t continuing = std::min(step.continuing, rows);
    run_rows(step, work, 0, continuing, step.h_prev, step.h_prev_stride, parts);
    run_rows(step, work, continuing, rows, step.h_start, step.h_start_stride, parts);
  };
  const int64_t macs_per_step = max_rows * (inner_ + input_inner_) * 4 * blocks_ * width_;
  run_fused_forward(count, blocks_, max_rows, slices_for(macs_per_step, blocks_), fuses_input(),
                    run_parts);
}

FusedRecurrentBackward::FusedRecurrentBackward(const at::Tensor& w_hh, int64_t max_rows,
                                               int64_t calls) {
  const int64_t hidden = w_hh.size(0) / 4;
  if (w_hh.scalar_type() == at::kBFloat16) {
    if (!bf16_fused_applies(at::Tensor(), w_hh, max_rows, calls)) return;
    dtype_ = at::kBFloat16;
    width_ = kBf16BlockWidth;
    kernel_ = selected_bf16_fused_kernels()->backward;
  } else {
    if (!fused_step_applies(w_hh, max_rows, calls)) return;
    const RowKernels& kernels = selected_row_kernels();
    width_ = kernels.block_width;
    kernel_ = kernels.fused_backward;
  }
  TORCH_CHECK(w_hh.size(1) == hidden, "FusedRecurrentBackward: W_hh must be (4H, H)");
  hidden_ = hidden;
  blocks_ = (hidden + width_ - 1) / width_;
  packed_ = pack_backward_weight(w_hh, blocks_, width_, 4);
}

void FusedRecurrentBackward::backward_steps(const RecurrentBackwardStep* steps,
                                            int64_t count) const {
  int64_t max_rows = 0;
  for (int64_t i = 0; i < count; ++i) {
    TORCH_CHECK(steps[i].continuing.dtype == dtype_ && steps[i].starting.dtype == dtype_,
                "FusedRecurrentBackward: bad arguments");
    max_rows = std::max({max_rows, steps[i].gemm_rows,
                         steps[i].continuing.rows + steps[i].starting.rows});
  }
  const FusedBackwardBlocksFn kernel = kernel_;
  const void* packed = packed_.const_data_ptr();
  const int64_t hidden = hidden_;
  const auto run_step = [&](int64_t i, const SliceWork& work) {  // whole blocks: row_groups 1
    kernel(FusedBackwardArgs{steps[i], hidden, packed}, work.block_begin, work.block_end);
  };
  const int64_t macs_per_step = max_rows * hidden * 4 * blocks_ * width_;
  run_sliced(count, blocks_, slices_for(macs_per_step, blocks_), run_step);
}

}  // namespace fusedlstm::cpu

bool fusedlstm::cpu::bf16_fused_step_available() {
  return selected_bf16_fused_kernels() != nullptr;
}
