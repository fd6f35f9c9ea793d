// The GRU's and Elman RNN's persistent kernels (cuda/persistent_state_kernels.cuh) as a kernel
// back-end's FusedStateStep and FusedStateBackward (gemm.h): state_layer.h hands it a layer
// direction's steps (the backward: a chunk's) and it runs them in one cooperative launch. Chosen
// as the LSTM's (persistent_step.h): the switch cuda.step, the device's answer to whether every
// block can be resident with its slice of W_hh in shared memory, and a refused launch runs the
// same steps one at a time (a GEMM and the pointwise kernel each), never a grid barrier waited
// on by a grid that is not all there.
//
// Kernels provides, beside what persistent_step.h needs: resident_state_blocks(cell, dtype,
// backward, tensor_cores, threads, shared_bytes), launch(PersistentState{Forward,Backward}Params, dtype,
// geometry) and state_forward / state_backward (the pointwise kernels).
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <fusedlstm/persistent_state_geometry.h>
#include <fusedlstm/persistent_step.h>
#include <fusedlstm/state_cell_units.h>
#include <fusedlstm/switches.h>

namespace fusedlstm {

template <class Kernels>
class PersistentStateStep {
 public:
  // w_hh: (kGates H, H); max_rows: rows of the first step (B); calls: the steps the layer will
  // hand over. The input projection stays the layer's GEMM (w_ih, b_ih unused).
  PersistentStateStep(StateCell cell, const at::Tensor& w_hh, int64_t max_rows, int64_t calls,
                      const at::Tensor& /*w_ih*/, const c10::optional<at::Tensor>& /*b_ih*/,
                      const c10::optional<at::Tensor>& b_hh, bool /*inference*/)
      : cell_(cell),
        w_hh_(w_hh.contiguous()),
        bias_hh_(b_hh.has_value() ? b_hh->contiguous() : at::Tensor()),
        hidden_(w_hh.size(1)),
        max_rows_(max_rows),
        mode_(switch_value(Switch::kCudaStep)),
        active_(calls > 0 && chosen(max_rows, /*backward=*/false)) {}
  // The backward's: w_hh (kGates H, H).
  PersistentStateStep(StateCell cell, const at::Tensor& w_hh, int64_t max_rows, int64_t calls)
      : cell_(cell),
        w_hh_(w_hh.contiguous()),
        hidden_(w_hh.size(1)),
        max_rows_(max_rows),
        mode_(switch_value(Switch::kCudaStep)),
        active_(calls > 0 && chosen(max_rows, /*backward=*/true)) {}

  bool active() const { return active_; }
  bool fuses_input() const { return false; }
  // One launch for the whole sequence: the layer projects all steps' input at once.
  bool whole_sequence() const { return active_; }
  at::ScalarType preact_dtype(at::ScalarType dtype) const { return dtype; }

  void forward_steps(const StateRecurrentStep* steps, int64_t count) const {
    const kernels::PersistentStateForwardParams params{
        steps, count, cell_, w_hh_.const_data_ptr(), bias_hh_data(), hidden_,
        geometry_.units_per_block, max_rows_};
    if (launched(params)) return;
    for (int64_t s = 0; s < count; ++s) forward_step_by_step(steps[s]);
  }

  void backward_steps(const StateRecurrentBackwardStep* steps, int64_t count) const {
    const kernels::PersistentStateBackwardParams params{
        steps, count, cell_, w_hh_.const_data_ptr(), hidden_, geometry_.units_per_block,
        max_rows_};
    if (launched(params)) return;
    for (int64_t s = 0; s < count; ++s) backward_step_by_step(steps[s]);
  }

 private:
  bool chosen(int64_t max_rows, bool backward) {
    if (mode_ == kCudaStepPerStep || !Kernels::can_launch_persistent(w_hh_.device())) {
      return false;
    }
    // auto: the LSTM's placeholder rule until make gpu-check measures the crossover
    if (mode_ == kAuto && max_rows > 2 * kernels::kPersistentMaxThreads) return false;
    const int64_t slots = Kernels::multiprocessors(w_hh_.device());
    // float16 / bfloat16: tensor cores where the device has them and the tiles fit, else FMA
    const bool half = w_hh_.scalar_type() == at::kHalf || w_hh_.scalar_type() == at::kBFloat16;
    for (const bool tensor_cores : {true, false}) {
      if (tensor_cores && !(half && Kernels::has_tensor_cores(w_hh_.device()))) continue;
      geometry_ = kernels::persistent_state_geometry(state_cell_gates(cell_), hidden_, max_rows,
                                                     slots, w_hh_.element_size(), backward,
                                                     tensor_cores);
      if (Kernels::resident_state_blocks(cell_, w_hh_.scalar_type(), backward, tensor_cores,
                                         geometry_.threads,
                                         geometry_.shared_bytes) >= geometry_.blocks) {
        return true;
      }
    }
    return false;
  }

  template <class Params>
  bool launched(const Params& params) const {
    if (mode_ == kCudaStepPersistentRefused) return false;  // tests: as if the device refused
    return Kernels::launch(params, w_hh_.scalar_type(), geometry_);
  }

  const void* bias_hh_data() const {
    return bias_hh_.defined() ? bias_hh_.const_data_ptr() : nullptr;
  }

  at::Tensor rows_at(const void* base, int64_t first, int64_t count, int64_t width) const {
    const char* at_first = static_cast<const char*>(base) + first * width * w_hh_.element_size();
    return at::from_blob(const_cast<char*>(at_first), {count, width}, w_hh_.options());
  }

  // The refused launch's step: h_part = h_{t-1} W_hh^T, then the pointwise kernel (b_hh added
  // there) over the rows that carry on and those that start, each with its h_{t-1} rows.
  void forward_step_by_step(const StateRecurrentStep& step) const {
    const StateForwardArgs& args = step.state;
    const int64_t G = w_hh_.size(0);
    at::Tensor h_part = rows_at(args.h_part, 0, args.rows, G);
    const struct {
      int64_t first, count;
      const void* h_prev;
    } parts[] = {{0, step.continuing, step.h_prev},
                 {step.continuing, args.rows - step.continuing, step.h_start}};
    for (const auto& part : parts) {
      if (part.count <= 0) continue;
      at::Tensor out = h_part.narrow(0, part.first, part.count);
      at::mm_out(out, rows_at(part.h_prev, part.first, part.count, hidden_), w_hh_.t());
      StateForwardArgs rows = rows_of(args, part.first, part.count);
      rows.bias_hh = bias_hh_data();
      rows.h_prev = static_cast<const char*>(part.h_prev) +
                    part.first * hidden_ * w_hh_.element_size();
      Kernels::state_forward(rows);
    }
  }

  // The refused launch's backward step: dL/dh_t (+)= grad_recurrent_next W_hh (the GRU adds to
  // its direct part), then the pointwise kernel.
  void backward_step_by_step(const StateRecurrentBackwardStep& step) const {
    if (step.gemm_rows > 0) {
      at::Tensor grad_h = rows_at(step.grad_h_state, 0, step.gemm_rows, hidden_);
      const at::Tensor next =
          rows_at(step.grad_recurrent_next, 0, step.gemm_rows, w_hh_.size(0));
      if (cell_ == StateCell::kGru) {
        at::addmm_out(grad_h, grad_h, next, w_hh_);
      } else {
        at::mm_out(grad_h, next, w_hh_);
      }
    }
    if (step.state.rows > 0) Kernels::state_backward(step.state);
  }

  const StateCell cell_;
  const at::Tensor w_hh_;
  const at::Tensor bias_hh_;  // the forward's, or undefined
  const int64_t hidden_;
  const int64_t max_rows_;
  const int64_t mode_;
  kernels::PersistentGeometry geometry_;
  const bool active_;
};

}  // namespace fusedlstm
