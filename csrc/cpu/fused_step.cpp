#include "fused_step.h"

#include "cpu_gemm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <string>

namespace fusedlstm::cpu {

namespace {

// FUSEDLSTM_CPU_STEP=fused / =gemm forces the per-step strategy (tests run both on every shape).
std::string forced_strategy() {
  const char* env = std::getenv("FUSEDLSTM_CPU_STEP");
  return env == nullptr ? std::string() : std::string(env);
}

// Multiply-accumulates per task: below this a step's blocks run on one thread.
constexpr int64_t kMacsPerTask = 1 << 16;

}  // namespace

FusedRecurrentStep::FusedRecurrentStep(const at::Tensor& w_hh, int64_t max_rows, int64_t calls) {
  static const std::string forced = forced_strategy();
  if (forced == "gemm" || aten_gemms_only()) return;
  if (w_hh.scalar_type() != at::kFloat || !w_hh.device().is_cpu() || calls <= 1) return;
  const bool small_weight = w_hh.numel() * 4 <= kFusedStepMaxWeightBytes;
  const bool worth_it = max_rows <= kFusedStepAlwaysRows ||
                        (max_rows <= kFusedStepMaxRows && small_weight);
  if (forced != "fused" && !worth_it) return;

  const RowKernels& kernels = selected_row_kernels();
  const int64_t width = kernels.block_width;
  const int64_t hidden = w_hh.size(0) / 4;
  inner_ = w_hh.size(1);
  blocks_ = (hidden + width - 1) / width;
  kernel_ = kernels.fused_forward;

  // [block][k][gate][lane], zero past H.
  packed_ = at::zeros({blocks_ * inner_ * 4 * width}, w_hh.options());
  const at::Tensor w = w_hh.contiguous();
  const float* src = w.const_data_ptr<float>();
  float* dst = packed_.data_ptr<float>();
  at::parallel_for(0, blocks_, 1, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      const int64_t lanes = std::min(width, hidden - block * width);
      for (int64_t k = 0; k < inner_; ++k) {
        for (int64_t gate = 0; gate < 4; ++gate) {
          float* out = dst + ((block * inner_ + k) * 4 + gate) * width;
          for (int64_t lane = 0; lane < lanes; ++lane) {
            out[lane] = src[(gate * hidden + block * width + lane) * inner_ + k];
          }
        }
      }
    }
  });
}

void FusedRecurrentStep::forward(const PointwiseForwardArgs& args,
                                 const at::Tensor& h_prev) const {
  TORCH_CHECK(args.h_copy == nullptr && h_prev.stride(1) == 1 && h_prev.size(1) == inner_,
              "FusedRecurrentStep: bad arguments");
  const FusedStepArgs fused{args, h_prev.const_data_ptr(), h_prev.stride(0), inner_,
                            packed_.const_data_ptr<float>()};
  const int64_t macs_per_block = std::max<int64_t>(1, args.rows * inner_ * 4 * args.hidden /
                                                          std::max<int64_t>(1, blocks_));
  const int64_t grain = std::max<int64_t>(1, kMacsPerTask / macs_per_block);
  const FusedBlocksFn kernel = kernel_;
  at::parallel_for(0, blocks_, grain,
                   [&](int64_t begin, int64_t end) { kernel(fused, begin, end); });
}

}  // namespace fusedlstm::cpu
