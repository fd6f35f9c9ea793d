// Autograd for the cell ops (lstm_cell, gru_cell, rnn_cell), registered at the Autograd key in
// C++. A decoder or a hand-written loop calls a cell op once per step, and a Python autograd
// formula (torch.library.register_autograd) costs ~12 us per forward and ~30 us per backward in
// the interpreter: more than a whole small RNN step (docs/performance.md, "Cell loops"). The
// layer ops, called once per sequence, keep their Python formulas (fusedlstm/_state_ops.py,
// fusedlstm/ops.py).
//
// The forward and backward ops are called through the dispatcher below the autograd keys, so
// Autocast, the fake kernels (torch.compile) and the CUDA emulation apply as to a direct call. A
// backward that must build a graph (create_graph=True with something to differentiate) cannot use
// the fused backward ops; it recomputes the step in differentiable ATen ops (as
// fusedlstm/_reference.py does for the layers) and differentiates that.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace fusedlstm {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptionalTensor = std::optional<Tensor>;
using Cell3 = std::tuple<Tensor, Tensor, Tensor>;
using Cell2 = std::tuple<Tensor, Tensor>;
using Grads6 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;
using Grads5 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>;

template <class Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

const auto& lstm_cell_op() {
  static const auto op = find_op<Cell3(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                       const Tensor&, const OptionalTensor&,
                                       const OptionalTensor&)>("fusedlstm::lstm_cell");
  return op;
}

const auto& lstm_cell_backward_op() {
  static const auto op =
      find_op<Grads6(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                     const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool, bool,
                     bool)>("fusedlstm::lstm_cell_backward");
  return op;
}

const auto& gru_cell_op() {
  static const auto op =
      find_op<Cell2(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                    const OptionalTensor&, const OptionalTensor&)>("fusedlstm::gru_cell");
  return op;
}

const auto& gru_cell_backward_op() {
  static const auto op =
      find_op<Grads6(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                     const Tensor&, const Tensor&, bool, bool, bool)>(
          "fusedlstm::gru_cell_backward");
  return op;
}

const auto& rnn_cell_op() {
  static const auto op =
      find_op<Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                     const OptionalTensor&, const OptionalTensor&, c10::string_view)>(
          "fusedlstm::rnn_cell");
  return op;
}

const auto& rnn_cell_backward_op() {
  static const auto op =
      find_op<Grads5(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                     const Tensor&, c10::string_view, bool, bool, bool)>(
          "fusedlstm::rnn_cell_backward");
  return op;
}

Tensor tensor_or_undefined(const OptionalTensor& t) { return t.has_value() ? *t : Tensor(); }

bool any_requires_grad(at::ArrayRef<Tensor> tensors) {
  return std::any_of(tensors.begin(), tensors.end(),
                     [](const Tensor& t) { return t.defined() && t.requires_grad(); });
}

// Whether a call must record a graph node: grad mode on and a tensor argument requiring grad.
bool records_graph(std::initializer_list<Tensor> tensors, const OptionalTensor& b_ih,
                   const OptionalTensor& b_hh) {
  return at::GradMode::is_enabled() &&
         (any_requires_grad(tensors) || any_requires_grad({tensor_or_undefined(b_ih),
                                                          tensor_or_undefined(b_hh)}));
}

// Whether a backward must build a graph of its own gradients: create_graph=True (grad mode stays
// on in the backward) with an input or an incoming gradient requiring grad.
bool backward_builds_graph(const variable_list& saved, const variable_list& grads) {
  return at::GradMode::is_enabled() && (any_requires_grad(saved) || any_requires_grad(grads));
}

// Which of the op's tensor inputs (as saved: an absent bias undefined) need a gradient.
// Autograd numbers only the tensors that were passed (an absent optional bias has no edge), so
// input i is edge i only while no bias before it is absent.
std::vector<bool> needed_grads(AutogradContext* ctx, const variable_list& inputs) {
  std::vector<bool> needed(inputs.size(), false);
  size_t edge = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].defined()) needed[i] = ctx->needs_input_grad(edge++);
  }
  return needed;
}

// Whether any of inputs [first, end) needs a gradient (the weights and biases: one GEMM each).
bool needs_any(const std::vector<bool>& needed, size_t first) {
  return std::any_of(needed.begin() + first, needed.end(), [](bool need) { return need; });
}

Tensor grad_or_zeros(const Tensor& grad, const Tensor& like) {
  return grad.defined() ? grad : at::zeros_like(like);
}

Tensor affine(const Tensor& x, const Tensor& w, const Tensor& b) {
  return b.defined() ? at::addmm(b, x, w.t()) : at::mm(x, w.t());
}

// The cells in differentiable ATen ops, gate rows as torch.nn's (LSTM i, f, g, o; GRU r, z, n).
// Each returns its outputs (LSTM: h', c').
variable_list reference_lstm_cell(const variable_list& in) {
  const Tensor gates = affine(in[0], in[3], in[5]) + affine(in[1], in[4], in[6]);
  const auto chunks = gates.chunk(4, 1);
  const Tensor c = at::sigmoid(chunks[1]) * in[2] + at::sigmoid(chunks[0]) * at::tanh(chunks[2]);
  return {at::sigmoid(chunks[3]) * at::tanh(c), c};
}

variable_list reference_gru_cell(const variable_list& in) {
  const auto x = affine(in[0], in[2], in[4]).chunk(3, 1);
  const auto h = affine(in[1], in[3], in[5]).chunk(3, 1);
  const Tensor r = at::sigmoid(x[0] + h[0]);
  const Tensor z = at::sigmoid(x[1] + h[1]);
  const Tensor n = at::tanh(x[2] + r * h[2]);
  return {(1 - z) * n + z * in[1]};
}

Tensor reference_rnn_cell(const variable_list& in, const std::string& nonlinearity) {
  const Tensor pre = affine(in[0], in[2], in[4]) + affine(in[1], in[3], in[5]);
  return nonlinearity == "relu" ? at::relu(pre) : at::tanh(pre);
}

// The gradients, with their own graph, of the step recomputed by `recompute` (a variable_list of
// the inputs to its outputs), for the inputs whose gradient is needed; the others undefined.
// `extra` undefined entries follow (one per non-tensor argument of the op). Each input enters
// through a view of its own, so an argument passed twice (hx as cx too) gets the gradient of each
// use rather than their sum.
template <class Recompute>
variable_list differentiable_grads(const std::vector<bool>& needed, const variable_list& inputs,
                                   const Recompute& recompute, const variable_list& grad_outputs,
                                   size_t extra) {
  variable_list own(inputs.size());
  variable_list wanted;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) continue;
    own[i] = inputs[i].view_as(inputs[i]);
    if (needed[i]) wanted.push_back(own[i]);
  }
  const variable_list outputs = recompute(own);
  variable_list found;
  if (!wanted.empty()) {
    found = torch::autograd::grad(outputs, wanted, grad_outputs, /*retain_graph=*/true,
                                  /*create_graph=*/true, /*allow_unused=*/true);
  }
  variable_list grads(inputs.size() + extra);
  size_t next = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (needed[i]) grads[i] = found[next++];
  }
  return grads;
}

// A fused backward's gradients for the inputs (..., b_ih, b_hh): the first `leading` as returned,
// then the one bias gradient for each bias present; undefined where no gradient is needed.
template <size_t N>
variable_list kept_grads(const std::vector<bool>& needed, const std::array<Tensor, N>& leading,
                         const Tensor& grad_b_ih, const Tensor& grad_b_hh, size_t extra) {
  variable_list grads(N + 2 + extra);
  for (size_t i = 0; i < N; ++i) grads[i] = leading[i];
  grads[N] = grad_b_ih;
  grads[N + 1] = grad_b_hh;
  for (size_t i = 0; i < N + 2; ++i) {
    if (!needed[i]) grads[i] = Tensor();
  }
  return grads;
}

struct LstmCellFunction : torch::autograd::Function<LstmCellFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& input, const Tensor& hx,
                               const Tensor& cx, const Tensor& w_ih, const Tensor& w_hh,
                               const OptionalTensor& b_ih, const OptionalTensor& b_hh) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [hy, cy, gates] = lstm_cell_op().call(input, hx, cx, w_ih, w_hh, b_ih, b_hh);
    ctx->set_materialize_grads(false);
    ctx->mark_non_differentiable({gates});
    ctx->save_for_backward({input, hx, cx, w_ih, w_hh, tensor_or_undefined(b_ih),
                            tensor_or_undefined(b_hh), cy, gates});
    return {hy, cy, gates};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const variable_list inputs(saved.begin(), saved.begin() + 7);
    const std::vector<bool> needed = needed_grads(ctx, inputs);
    const Tensor& cy = saved[7];
    const Tensor grad_hy = grad_or_zeros(grads[0], cy);
    const Tensor grad_cy = grad_or_zeros(grads[1], cy);
    if (backward_builds_graph(inputs, {grad_hy, grad_cy})) {
      return differentiable_grads(needed, inputs, reference_lstm_cell, {grad_hy, grad_cy}, 0);
    }
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [grad_input, grad_hx, grad_cx, grad_w_ih, grad_w_hh, grad_bias] =
        lstm_cell_backward_op().call(grad_hy, grad_cy, inputs[0], inputs[1], inputs[2],
                                     inputs[3], inputs[4], cy, saved[8], needed[0], needed[1],
                                     needs_any(needed, 3));
    return kept_grads<5>(needed, {grad_input, grad_hx, grad_cx, grad_w_ih, grad_w_hh}, grad_bias,
                         grad_bias, 0);
  }
};

struct GruCellFunction : torch::autograd::Function<GruCellFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& input, const Tensor& hx,
                               const Tensor& w_ih, const Tensor& w_hh,
                               const OptionalTensor& b_ih, const OptionalTensor& b_hh) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [hy, saved] = gru_cell_op().call(input, hx, w_ih, w_hh, b_ih, b_hh);
    ctx->set_materialize_grads(false);
    ctx->mark_non_differentiable({saved});
    ctx->save_for_backward(
        {input, hx, w_ih, w_hh, tensor_or_undefined(b_ih), tensor_or_undefined(b_hh), hy, saved});
    return {hy, saved};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const variable_list inputs(saved.begin(), saved.begin() + 6);
    const std::vector<bool> needed = needed_grads(ctx, inputs);
    const Tensor grad_hy = grad_or_zeros(grads[0], saved[6]);
    if (backward_builds_graph(inputs, {grad_hy})) {
      return differentiable_grads(needed, inputs, reference_gru_cell, {grad_hy}, 0);
    }
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [grad_input, grad_hx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh] =
        gru_cell_backward_op().call(grad_hy, inputs[0], inputs[1], inputs[2], inputs[3],
                                    saved[6], saved[7], needed[0], needed[1],
                                    needs_any(needed, 2));
    return kept_grads<4>(needed, {grad_input, grad_hx, grad_w_ih, grad_w_hh}, grad_b_ih, grad_b_hh,
                         0);
  }
};

struct RnnCellFunction : torch::autograd::Function<RnnCellFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& input, const Tensor& hx,
                               const Tensor& w_ih, const Tensor& w_hh,
                               const OptionalTensor& b_ih, const OptionalTensor& b_hh,
                               const std::string& nonlinearity) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    Tensor hy = rnn_cell_op().call(input, hx, w_ih, w_hh, b_ih, b_hh, nonlinearity);
    ctx->set_materialize_grads(false);
    ctx->saved_data["nonlinearity"] = nonlinearity;
    ctx->save_for_backward(
        {input, hx, w_ih, w_hh, tensor_or_undefined(b_ih), tensor_or_undefined(b_hh), hy});
    return {hy};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const variable_list inputs(saved.begin(), saved.begin() + 6);
    const std::vector<bool> needed = needed_grads(ctx, inputs);
    const std::string nonlinearity = ctx->saved_data["nonlinearity"].toStringRef();
    const Tensor grad_hy = grad_or_zeros(grads[0], saved[6]);
    if (backward_builds_graph(inputs, {grad_hy})) {
      const auto recompute = [&](const variable_list& in) {
        return variable_list{reference_rnn_cell(in, nonlinearity)};
      };
      return differentiable_grads(needed, inputs, recompute, {grad_hy}, 1);
    }
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [grad_input, grad_hx, grad_w_ih, grad_w_hh, grad_bias] = rnn_cell_backward_op().call(
        grad_hy, inputs[0], inputs[1], inputs[2], inputs[3], saved[6], nonlinearity,
        needed[0], needed[1], needs_any(needed, 2));
    return kept_grads<4>(needed, {grad_input, grad_hx, grad_w_ih, grad_w_hh}, grad_bias, grad_bias,
                         1);
  }
};

Cell3 lstm_cell_autograd(const Tensor& input, const Tensor& hx, const Tensor& cx,
                         const Tensor& w_ih, const Tensor& w_hh, const OptionalTensor& b_ih,
                         const OptionalTensor& b_hh) {
  if (!records_graph({input, hx, cx, w_ih, w_hh}, b_ih, b_hh)) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return lstm_cell_op().call(input, hx, cx, w_ih, w_hh, b_ih, b_hh);
  }
  auto out = LstmCellFunction::apply(input, hx, cx, w_ih, w_hh, b_ih, b_hh);
  return {out[0], out[1], out[2]};
}

Cell2 gru_cell_autograd(const Tensor& input, const Tensor& hx, const Tensor& w_ih,
                        const Tensor& w_hh, const OptionalTensor& b_ih,
                        const OptionalTensor& b_hh) {
  if (!records_graph({input, hx, w_ih, w_hh}, b_ih, b_hh)) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return gru_cell_op().call(input, hx, w_ih, w_hh, b_ih, b_hh);
  }
  auto out = GruCellFunction::apply(input, hx, w_ih, w_hh, b_ih, b_hh);
  return {out[0], out[1]};
}

Tensor rnn_cell_autograd(const Tensor& input, const Tensor& hx, const Tensor& w_ih,
                         const Tensor& w_hh, const OptionalTensor& b_ih,
                         const OptionalTensor& b_hh, c10::string_view nonlinearity) {
  if (!records_graph({input, hx, w_ih, w_hh}, b_ih, b_hh)) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return rnn_cell_op().call(input, hx, w_ih, w_hh, b_ih, b_hh, nonlinearity);
  }
  return RnnCellFunction::apply(input, hx, w_ih, w_hh, b_ih, b_hh,
                                std::string(nonlinearity))[0];
}

}  // namespace
}  // namespace fusedlstm

TORCH_LIBRARY_IMPL(fusedlstm, Autograd, m) {
  m.impl("lstm_cell", &fusedlstm::lstm_cell_autograd);
  m.impl("gru_cell", &fusedlstm::gru_cell_autograd);
  m.impl("rnn_cell", &fusedlstm::rnn_cell_autograd);
}
