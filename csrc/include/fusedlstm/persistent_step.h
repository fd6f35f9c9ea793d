// The persistent kernels (cuda/persistent_kernels.cuh) as a kernel back-end's FusedStep and
// FusedBackward (gemm.h): the layer algorithm hands a chunk of steps to forward_steps /
// backward_steps, which runs them in one cooperative launch.
//
// Chosen at construction: the switch cuda.step (auto / persistent / per_step), and the device's
// answer to whether every block of the launch can be resident with its slice of W_hh in shared
// memory (Kernels::resident_blocks). A launch the device refuses anyway runs the same steps one
// at a time (a GEMM and the pointwise kernel each), so a grid barrier is never waited on by a
// grid that is not all there.
//
// Kernels provides: multiprocessors(); has_tensor_cores(device) (wmma for float16 / bfloat16);
// resident_blocks(dtype, backward, tensor_cores, threads, shared_bytes);
// can_launch_persistent(device) (false while a CUDA graph is captured); forward / backward
// (the pointwise kernels); launch(params, dtype, geometry) for both params, false if refused.
#pragma once

#include <ATen/ATen.h>

#include <fusedlstm/persistent_geometry.h>
#include <fusedlstm/pointwise.h>
#include <fusedlstm/switches.h>

namespace fusedlstm {

// The choices of the switch cuda.step.
inline constexpr int64_t kCudaStepPersistent = 1, kCudaStepPerStep = 2,
                         kCudaStepPersistentRefused = 3;

template <class Kernels>
class PersistentStep {
 public:
  // w_hh: (4H, K); max_rows: rows of the first step (B); calls: steps the layer will hand over
  // (0: none, the layer uses its per-step path).
  PersistentStep(const at::Tensor& w_hh, int64_t max_rows, int64_t calls)
      : w_hh_(w_hh.contiguous()),
        hidden_(w_hh.size(0) / 4),
        columns_(w_hh.size(1)),
        max_rows_(max_rows),
        mode_(switch_value(Switch::kCudaStep)),
        active_(calls > 0 && chosen(max_rows)) {}
  PersistentStep(const at::Tensor& w_hh, int64_t max_rows, int64_t calls,
                 const at::Tensor& /*w_ih*/, const at::Tensor& /*bias*/, bool /*inference*/)
      : PersistentStep(w_hh, max_rows, calls) {}

  bool active() const { return active_; }
  bool fuses_input() const { return false; }
  // One launch for the whole sequence: the layer need not cut inference into cache-sized chunks.
  bool whole_sequence() const { return active_; }
  at::ScalarType preact_dtype(at::ScalarType dtype) const { return dtype; }
  at::ScalarType grad_h_dtype(at::ScalarType dtype) const { return dtype; }

  void forward_steps(const RecurrentStep* steps, int64_t count) const {
    const kernels::PersistentForwardParams params{steps, count, w_hh_.const_data_ptr(), hidden_,
                                                  columns_, forward_.units_per_block, max_rows_};
    if (launched(params, forward_)) return;
    for (int64_t s = 0; s < count; ++s) forward_step_by_step(steps[s]);
  }

  void backward_steps(const RecurrentBackwardStep* steps, int64_t count) const {
    const kernels::PersistentBackwardParams params{steps, count, w_hh_.const_data_ptr(), hidden_,
                                                   backward_.units_per_block, max_rows_};
    if (launched(params, backward_)) return;
    for (int64_t s = 0; s < count; ++s) backward_step_by_step(steps[s]);
  }

 private:
  bool chosen(int64_t max_rows) {
    if (mode_ == kCudaStepPerStep || !Kernels::can_launch_persistent(w_hh_.device())) {
      return false;
    }
    // auto: batches of at most 512 rows, a placeholder until make gpu-check measures the
    // crossover with the per-step path (docs/cuda.md)
    if (mode_ == kAuto && max_rows > 2 * kernels::kPersistentMaxThreads) return false;
    const int64_t slots = Kernels::multiprocessors(w_hh_.device());
    const size_t elem = w_hh_.element_size();
    // float16 / bfloat16: tensor cores where the device has them and the tiles fit, else FMA
    const bool half = w_hh_.scalar_type() == at::kHalf || w_hh_.scalar_type() == at::kBFloat16;
    for (const bool tensor_cores : {true, false}) {
      if (tensor_cores && !(half && Kernels::has_tensor_cores(w_hh_.device()))) continue;
      forward_ = kernels::persistent_forward_geometry(4, hidden_, columns_, max_rows, slots, elem,
                                                      tensor_cores);
      backward_ = kernels::persistent_backward_geometry(4, hidden_, max_rows, slots, elem,
                                                        tensor_cores);
      if (fits(forward_, false) && (columns_ != hidden_ || fits(backward_, true))) return true;
    }
    return false;
  }

  bool fits(const kernels::PersistentGeometry& g, bool backward) const {
    return Kernels::resident_blocks(w_hh_.scalar_type(), backward, g.tensor_cores, g.threads,
                                    g.shared_bytes) >= g.blocks;
  }

  template <class Params>
  bool launched(const Params& params, const kernels::PersistentGeometry& geometry) const {
    if (mode_ == kCudaStepPersistentRefused) return false;  // tests: as if the device refused
    return Kernels::launch(params, w_hh_.scalar_type(), geometry);
  }

  at::Tensor rows_of(const void* base, int64_t first, int64_t count, int64_t stride,
                     int64_t width) const {
    const char* at_first = static_cast<const char*>(base) + first * stride * w_hh_.element_size();
    return at::from_blob(const_cast<char*>(at_first), {count, width}, {stride, 1},
                         w_hh_.options());
  }

  // The refused launch's steps, one at a time: preact += h_{t-1} W_hh^T, then the pointwise
  // kernel, as the per-step path.
  void forward_step_by_step(const RecurrentStep& step) const {
    const PointwiseForwardArgs& args = step.pointwise;
    at::Tensor preact = rows_of(args.preact, 0, args.rows, 4 * hidden_, 4 * hidden_);
    const int64_t continuing = step.continuing;
    if (continuing > 0) {
      preact.narrow(0, 0, continuing)
          .addmm_(rows_of(step.h_prev, 0, continuing, step.h_prev_stride, columns_), w_hh_.t());
    }
    if (args.rows > continuing) {
      preact.narrow(0, continuing, args.rows - continuing)
          .addmm_(rows_of(step.h_start, continuing, args.rows - continuing,
                          step.h_start_stride, columns_),
                  w_hh_.t());
    }
    Kernels::forward(args);
  }

  void backward_step_by_step(const RecurrentBackwardStep& step) const {
    if (step.gemm_rows > 0) {
      at::Tensor grad_h = rows_of(step.grad_h_state, 0, step.gemm_rows, hidden_, hidden_);
      at::mm_out(grad_h, rows_of(step.grad_gates_next, 0, step.gemm_rows, 4 * hidden_,
                                 4 * hidden_),
                 w_hh_);
    }
    if (step.continuing.rows > 0) Kernels::backward(step.continuing);
    if (step.starting.rows > 0) Kernels::backward(step.starting);
  }

  const at::Tensor w_hh_;
  const int64_t hidden_;
  const int64_t columns_;
  const int64_t max_rows_;
  const int64_t mode_;
  kernels::PersistentGeometry forward_;
  kernels::PersistentGeometry backward_;
  const bool active_;
};

}  // namespace fusedlstm
