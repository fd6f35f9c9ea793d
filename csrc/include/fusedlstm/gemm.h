// The GEMMs of the time loop, as a device back-end provides them:
//   Backend::linear(x, w, bias)   x w^T + bias   (the input projection of all steps of a layer or
//                                 of chunks of them; a cell's input product)
//   Backend::matmul(a, b)         a b            (the backward's input gradient)
//   Backend::matmul_tn(a, b)      a^T b          (the backward's weight gradients)
//   Backend::weight_grads_transposed(dtype)
//                                 whether the layers take a weight gradient dW = dgates^T rows
//                                 as dW^T = rows^T dgates (the smaller operand first; transposed
//                                 once at the end), for a product that copies its first operand
//                                 transposed (oneDNN's), or directly
//   Backend::transposed(t)        t^T, contiguous (that final transpose)
//   Backend::StepGemm             out (+)= in op(W), W fixed for a whole call (the per-step GEMM;
//                                 also the input projection of each chunk of steps)
//   Backend::FusedStep            the per-step GEMM and the gate math in one pass, where a
//                                 back-end has one (active() says whether it applies; with
//                                 fuses_input(), the input projection in the same pass;
//                                 preact_dtype(dtype), the type of its pre-activation buffer;
//                                 whole_sequence(): inference hands it all steps at once)
//   Backend::FusedStateStep       the same for the GRU's and RNN's forward step
//   Backend::FusedStateBackward   and for their backward step
//   Backend::FusedBackward        the same for the backward step (grad_h_dtype(dtype), the type
//                                 of the dL/dh it carries between steps)
// These ATen versions serve every device; the CPU back-end replaces them with oneDNN / MKL-packed
// ones where that is faster (cpu/cpu_gemm.h).
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

namespace fusedlstm {

// b_ih + b_hh, either alone, or an undefined tensor when the layer has no bias.
inline at::Tensor summed_bias(const c10::optional<at::Tensor>& b_ih,
                              const c10::optional<at::Tensor>& b_hh) {
  if (b_ih.has_value() && b_hh.has_value()) return *b_ih + *b_hh;
  if (b_ih.has_value()) return *b_ih;
  if (b_hh.has_value()) return *b_hh;
  return at::Tensor();
}


struct AtenGemm {
  static at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
    return bias.defined() ? at::addmm(bias, x, w.t()) : at::mm(x, w.t());
  }
  static at::Tensor matmul(const at::Tensor& a, const at::Tensor& b) { return at::mm(a, b); }
  // a^T b, for a (N, M) and b (N, K): the weight gradients, summed over all rows N.
  static at::Tensor matmul_tn(const at::Tensor& a, const at::Tensor& b) {
    return at::mm(a.t(), b);
  }
  // cuBLAS and MKL read a transposed operand in place: dW directly, with no transposed copy.
  static bool weight_grads_transposed(at::ScalarType /*dtype*/) { return false; }
  static at::Tensor transposed(const at::Tensor& t) { return t.t().contiguous(); }
};

class AtenStepGemm {
 public:
  // transpose: use W^T (the forward's h W_hh^T); otherwise W (the backward's dgates W_hh).
  // max_rows: the most rows `in` will have; calls: how many times it will run (0 for never).
  // Both unused here; they let other back-ends decide whether pre-packing W pays.
  AtenStepGemm(const at::Tensor& weight, bool transpose, int64_t /*max_rows*/, int64_t /*calls*/)
      : rhs_(transpose ? weight.t() : weight) {}

  void operator()(at::Tensor& out, const at::Tensor& in, bool accumulate) const {
    if (accumulate) {
      at::addmm_out(out, out, in, rhs_);
    } else {
      at::mm_out(out, in, rhs_);
    }
  }

  // Adds in . op(W) to out, or, where the GEMM cannot accumulate in place, returns the product
  // for the caller to add (the fused pointwise pass takes it as an addend: no extra pass).
  at::Tensor add_to(at::Tensor& out, const at::Tensor& in) const {
    (*this)(out, in, /*accumulate=*/true);
    return at::Tensor();
  }

  // in . op(W) + bias (bias may be undefined) as a new tensor: the input projection of each
  // chunk of steps.
  at::Tensor product(const at::Tensor& in, const at::Tensor& bias) const {
    return bias.defined() ? at::addmm(bias, in, rhs_) : at::mm(in, rhs_);
  }

 private:
  at::Tensor rhs_;
};

// For back-ends without fused recurrent steps (GEMM and gate math in one pass): never active.
// A FusedStep's `forward_steps(steps, count)` runs `count` consecutive steps (pointwise.h's
// RecurrentStep), each one's h_{t-1} being the h_t that the one before it wrote; a
// FusedBackward's `backward_steps(steps, count)` runs RecurrentBackwardSteps the same way.
struct NoFusedStep {
  NoFusedStep(const at::Tensor& /*w_hh*/, int64_t /*max_rows*/, int64_t /*calls*/) {}
  NoFusedStep(const at::Tensor& /*w_hh*/, int64_t /*max_rows*/, int64_t /*calls*/,
              const at::Tensor& /*w_ih*/, const at::Tensor& /*bias*/, bool /*inference*/) {}
  template <class Cell>
  NoFusedStep(Cell /*cell*/, const at::Tensor& /*w_hh*/, int64_t /*max_rows*/, int64_t /*calls*/,
              const at::Tensor& /*w_ih*/, const c10::optional<at::Tensor>& /*b_ih*/,
              const c10::optional<at::Tensor>& /*b_hh*/, bool /*inference*/) {}
  template <class Cell>
  NoFusedStep(Cell /*cell*/, const at::Tensor& /*w_hh*/, int64_t /*max_rows*/, int64_t /*calls*/) {}
  bool active() const { return false; }
  bool fuses_input() const { return false; }
  bool whole_sequence() const { return false; }
  at::ScalarType preact_dtype(at::ScalarType dtype) const { return dtype; }
  at::ScalarType grad_h_dtype(at::ScalarType dtype) const { return dtype; }
  template <class Step>
  void forward_steps(const Step* /*steps*/, int64_t /*count*/) const {}
  template <class Step>
  void backward_steps(const Step* /*steps*/, int64_t /*count*/) const {}
};

}  // namespace fusedlstm
