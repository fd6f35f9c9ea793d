#include "fused_step.h"

#include <fusedlstm/switches.h>

#include "buffer_pool.h"
#include "cpu_gemm.h"

#include <ATen/Config.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <string>
#include <thread>

namespace fusedlstm::cpu {

namespace {

// The switch cpu.step: fused / gemm force the per-step strategy (tests run both on every shape).
int64_t forced_strategy() { return switch_value(Switch::kCpuStep); }

// The switch cpu.input_fusion: off turns input fusion off, on turns it on at any batch size (A/B
// measurements; tests run all three).
int64_t forced_input_fusion() { return switch_value(Switch::kCpuInputFusion); }

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins while other slices finish their step (a few microseconds at most), then yields, so an
// oversubscribed machine still makes progress.
void wait_until(const std::atomic<int64_t>& counter, int64_t target) {
  constexpr int kSpinsBeforeYield = 4096;
  for (int spins = 0; counter.load(std::memory_order_acquire) < target; ++spins) {
    if (spins < kSpinsBeforeYield) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

// Part of a step: blocks [block_begin, block_end) of rows [row_begin, row_end) (row_end may pass
// the step's rows: the caller intersects).
struct SliceWork {
  int64_t block_begin;
  int64_t block_end;
  int64_t row_begin;
  int64_t row_end;
};

// Rows per share of a slice's work: the fused tiles' row packs (kLockstep rows, in the
// capability headers).
constexpr int64_t kRowGroup = 4;

// Calls fn(SliceWork) for the work of slices [begin, end) of `slices`, equal shares of blocks x
// row_groups (block-major): whole blocks where a share covers them, else part of a block's rows.
// Splitting inside a block keeps odd block counts balanced (13 blocks on 2 threads: 32 and 33
// block-row groups instead of 7 and 6 blocks).
template <class Fn>
void for_each_piece(int64_t blocks, int64_t row_groups, int64_t slices, int64_t begin,
                    int64_t end, const Fn& fn) {
  const int64_t total = blocks * row_groups;
  const int64_t hi = total * end / slices;
  for (int64_t w = total * begin / slices; w < hi;) {
    const int64_t block = w / row_groups;
    const int64_t group = w % row_groups;
    if (group == 0 && hi - w >= row_groups) {
      const int64_t whole = (hi - w) / row_groups;
      fn(SliceWork{block, block + whole, 0, std::numeric_limits<int64_t>::max()});
      w += whole * row_groups;
    } else {
      const int64_t last = std::min(hi, (block + 1) * row_groups);
      const int64_t row_end = last == (block + 1) * row_groups
                                  ? std::numeric_limits<int64_t>::max()
                                  : (last - block * row_groups) * kRowGroup;
      fn(SliceWork{block, block + 1, group * kRowGroup, row_end});
      w = last;
    }
  }
}

// Runs run_step(i, work) for steps i = 0..count-1 over `blocks` blocks x `row_groups` groups of
// rows split into `slices`, each slice on its own thread for all steps (the same share every
// step). `done` counts finished (step, slice) pairs: step i may start once done >= i * slices.
// Each parallel_for call owns the slices [begin, end) for every step, however OpenMP sized the
// team. ahead(i, work) is the part of step i that does not depend on step i - 1 (the input
// projection): a slice runs it right after finishing step i - 1 and before waiting for the
// other slices, so it hides that wait.
template <class RunStep, class Ahead>
void run_sliced(int64_t count, int64_t blocks, int64_t row_groups, int64_t slices,
                const RunStep& run_step, const Ahead& ahead) {
  const SliceWork all{0, blocks, 0, std::numeric_limits<int64_t>::max()};
  if (slices <= 1) {
    for (int64_t i = 0; i < count; ++i) {
      ahead(i, all);
      run_step(i, all);
    }
    return;
  }
  std::atomic<int64_t> done{0};
  at::parallel_for(0, slices, 1, [&](int64_t begin, int64_t end) {
    const auto each_piece = [&](const auto& fn) {
      for_each_piece(blocks, row_groups, slices, begin, end, fn);
    };
    if (count > 0) each_piece([&](const SliceWork& work) { ahead(0, work); });
    for (int64_t i = 0; i < count; ++i) {
      if (i > 0) wait_until(done, i * slices);
      each_piece([&](const SliceWork& work) { run_step(i, work); });
      done.fetch_add(end - begin, std::memory_order_acq_rel);
      if (i + 1 < count) each_piece([&](const SliceWork& work) { ahead(i + 1, work); });
    }
  });
}

template <class RunStep>
void run_sliced(int64_t count, int64_t blocks, int64_t slices, const RunStep& run_step) {
  run_sliced(count, blocks, /*row_groups=*/1, slices, run_step,
             [](int64_t, const SliceWork&) {});
}

// Packs `blocks` blocks of `width` lanes of a weight whose elements are src(gate, unit, k) (type
// T) as [block][k / kPair][gate][lane][k % kPair], zero past `lanes_total` units and past
// `inner`: kPair = 1 is the float32 steps' [block][k][gate][lane], kPair = 2 the bfloat16 steps'
// pairs of k (each lane's pair one 32-bit element of the dot product).
template <class T, int kPair, class Source>
at::Tensor pack_blocks(int64_t blocks, int64_t inner, int64_t width, int64_t lanes_total,
                       const at::TensorOptions& options, const Source& src) {
  static_assert(sizeof(T) * kPair == 4, "float32, or pairs of 16-bit values");
  const int64_t groups = (inner + kPair - 1) / kPair;
  at::Tensor packed = pooled_empty({blocks * groups * kPair * 4 * width}, options).zero_();
  T* dst = static_cast<T*>(packed.data_ptr());
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      const int64_t lanes = std::min(width, lanes_total - block * width);
      for (int64_t k = 0; k < inner; ++k) {
        for (int64_t gate = 0; gate < 4; ++gate) {
          T* out = dst + ((block * groups + k / kPair) * 4 + gate) * width * kPair + k % kPair;
          for (int64_t lane = 0; lane < lanes; ++lane) {
            out[lane * kPair] = src(gate, block * width + lane, k);
          }
        }
      }
    }
  });
  return packed;
}

// A float32 or bfloat16 weight (contiguous) packed by pack_blocks, its element (gate, unit, k) at
// index(gate, unit, k); bfloat16 in pairs of k.
template <class Index>
at::Tensor pack_weight_elements(const at::Tensor& w, int64_t blocks, int64_t width, int64_t inner,
                                int64_t lanes_total, const Index& index) {
  const auto pack = [&](auto element, auto pair) {
    using T = decltype(element);
    const T* src = static_cast<const T*>(w.const_data_ptr());
    return pack_blocks<T, decltype(pair)::value>(
        blocks, inner, width, lanes_total, w.options(),
        [&](int64_t gate, int64_t unit, int64_t k) { return src[index(gate, unit, k)]; });
  };
  if (w.scalar_type() == at::kBFloat16) return pack(uint16_t{}, std::integral_constant<int, 2>{});
  return pack(float{}, std::integral_constant<int, 1>{});
}

// W (4H, inner) packed for the fused forward step: unit (lane) = row of W within its gate, k =
// column.
at::Tensor pack_weight(const at::Tensor& weight, int64_t blocks, int64_t width) {
  const at::Tensor w = weight.contiguous();
  const int64_t hidden = w.size(0) / 4;
  const int64_t inner = w.size(1);
  return pack_weight_elements(w, blocks, width, inner, hidden,
                              [&](int64_t gate, int64_t unit, int64_t k) {
                                return (gate * hidden + unit) * inner + k;
                              });
}

// W_hh (4H, H) packed for the fused backward step: lane = output unit j (column of W_hh), k =
// unit u of the gate rows: W_hh[gate * H + u][j].
at::Tensor pack_weight_backward(const at::Tensor& w_hh, int64_t blocks, int64_t width) {
  const at::Tensor w = w_hh.contiguous();
  const int64_t hidden = w.size(1);
  return pack_weight_elements(w, blocks, width, hidden, hidden,
                              [&](int64_t gate, int64_t j, int64_t u) {
                                return (gate * hidden + u) * hidden + j;
                              });
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
  const int64_t min_rows = inference ? kInputFusionMinRows : kInputFusionMinRowsTraining;
  return w_ih.defined() && forced != kInputFusionOff && w_ih.scalar_type() == at::kFloat &&
         w_ih.device().is_cpu() && w_ih.dim() == 2 && w_ih.size(0) == w_hh.size(0) &&
         w_ih.size(1) > 0 && (max_rows >= min_rows || forced == kInputFusionOn);
}

bool fused_inference_applies(const at::Tensor& w_ih, const at::Tensor& w_hh, int64_t max_rows,
                             int64_t calls) {
  if (fused_step_applies(w_hh, max_rows, calls)) return true;
  // forced fused: applied above; forced gemm: never
  if (forced_strategy() != kAuto || aten_gemms_only() || calls <= 1) return false;
  if (!input_fusion_applies(w_ih, w_hh, max_rows, /*inference=*/true) ||
      w_hh.scalar_type() != at::kFloat) {
    return false;
  }
  const int64_t weight_bytes = (w_ih.numel() + w_hh.numel()) * 4;
  return max_rows <= kInputFusedMaxRows && weight_bytes <= kInputFusedMaxWeightBytes;
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

FusedRecurrentStep::FusedRecurrentStep(const at::Tensor& w_hh, int64_t max_rows, int64_t calls,
                                       const at::Tensor& w_ih, const at::Tensor& bias,
                                       bool inference) {
  bool fuse_input = false;
  if (w_hh.scalar_type() == at::kBFloat16) {
    if (!bf16_fused_applies(w_ih, w_hh, max_rows, calls)) return;
    dtype_ = at::kBFloat16;
    width_ = kBf16BlockWidth;
    kernel_ = selected_bf16_fused_kernels()->forward;
    fuse_input = true;  // the bfloat16 step always computes its input part
  } else {
    const bool applies = inference ? fused_inference_applies(w_ih, w_hh, max_rows, calls)
                                   : fused_step_applies(w_hh, max_rows, calls);
    if (!applies) return;
    const RowKernels& kernels = selected_row_kernels();
    width_ = kernels.block_width;
    kernel_ = kernels.fused_forward;
    fuse_input = input_fusion_applies(w_ih, w_hh, max_rows, inference);
  }
  inner_ = w_hh.size(1);
  blocks_ = (w_hh.size(0) / 4 + width_ - 1) / width_;
  packed_ = pack_weight(w_hh, blocks_, width_);
  if (fuse_input) {
    input_inner_ = w_ih.size(1);
    packed_input_ = pack_weight(w_ih, blocks_, width_);
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
  // A slice's input part of step i + 1 writes only its own share's pre-activations, which its
  // own step i has finished reading (the shares are the same every step).
  const auto input_part = [&](int64_t i, const SliceWork& work) {
    if (fuses_input()) run_parts(i, work, kFusedInputPart);
  };
  const auto recurrent_part = [&](int64_t i, const SliceWork& work) {
    run_parts(i, work, kFusedRecurrentPart);
  };
  const int64_t macs_per_step = max_rows * (inner_ + input_inner_) * 4 * blocks_ * width_;
  const int64_t row_groups = (max_rows + kRowGroup - 1) / kRowGroup;
  run_sliced(count, blocks_, std::max<int64_t>(1, row_groups),
             slices_for(macs_per_step, blocks_), recurrent_part, input_part);
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
  packed_ = pack_weight_backward(w_hh, blocks_, width_);
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
