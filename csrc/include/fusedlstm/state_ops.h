// The GRU and Elman RNN ops (gru_layer, rnn_layer, gru_cell, rnn_cell and their backwards, schemas
// in csrc/ops.cpp) over one device's back-ends, as the functions each device registers: the layer
// algorithm (state_layer.h) and the cell step (state_cell_algorithm.h).
#pragma once

#include <ATen/ATen.h>

#include <fusedlstm/state_cell_algorithm.h>
#include <fusedlstm/state_layer.h>

#include <string_view>
#include <tuple>

namespace fusedlstm {

// The RNN's nonlinearity argument, checked as nn.RNN checks it.
inline StateCell rnn_cell_kind(std::string_view nonlinearity, const char* op) {
  if (nonlinearity == "tanh") return StateCell::kRnnTanh;
  if (nonlinearity == "relu") return StateCell::kRnnRelu;
  TORCH_CHECK(false, op, ": unknown nonlinearity '", std::string(nonlinearity),
              "'; expected 'tanh' or 'relu'");
}

template <class LayerBackend, class CellBackend>
struct StateOps {
  using Tensor = at::Tensor;
  using OptionalTensor = c10::optional<at::Tensor>;
  using Layer = std::tuple<Tensor, Tensor, Tensor>;
  using Grads = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;
  using RnnGrads = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>;

  static Layer gru_layer(const Tensor& input, const Tensor& h0, const Tensor& w_ih,
                         const Tensor& w_hh, const OptionalTensor& b_ih,
                         const OptionalTensor& b_hh, const OptionalTensor& batch_sizes,
                         bool reverse, bool train) {
    return state_layer_forward_impl<LayerBackend>(StateCell::kGru, input, h0, w_ih, w_hh, b_ih,
                                                  b_hh, batch_sizes, reverse, train,
                                                  "fusedlstm::gru_layer");
  }

  static Grads gru_layer_backward(const Tensor& grad_output, const Tensor& grad_h_n,
                                  const Tensor& input, const Tensor& h0, const Tensor& w_ih,
                                  const Tensor& w_hh, const OptionalTensor& batch_sizes,
                                  bool reverse, const Tensor& output, const Tensor& saved,
                                  bool need_input_grad, bool need_weight_grads) {
    return state_layer_backward_impl<LayerBackend>(
        StateCell::kGru, grad_output, grad_h_n, input, h0, w_ih, w_hh, batch_sizes, reverse,
        output, saved, need_input_grad, need_weight_grads, "fusedlstm::gru_layer_backward");
  }

  static std::tuple<Tensor, Tensor> rnn_layer(const Tensor& input, const Tensor& h0,
                                              const Tensor& w_ih, const Tensor& w_hh,
                                              const OptionalTensor& b_ih,
                                              const OptionalTensor& b_hh,
                                              const OptionalTensor& batch_sizes, bool reverse,
                                              c10::string_view nonlinearity) {
    constexpr const char* op = "fusedlstm::rnn_layer";
    auto [output, h_n, saved] = state_layer_forward_impl<LayerBackend>(
        rnn_cell_kind(nonlinearity, op), input, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes,
        reverse, /*train=*/false, op);
    return {output, h_n};
  }

  static RnnGrads rnn_layer_backward(const Tensor& grad_output, const Tensor& grad_h_n,
                                     const Tensor& input, const Tensor& h0, const Tensor& w_ih,
                                     const Tensor& w_hh, const OptionalTensor& batch_sizes,
                                     bool reverse, c10::string_view nonlinearity,
                                     const Tensor& output, bool need_input_grad,
                                     bool need_weight_grads) {
    constexpr const char* op = "fusedlstm::rnn_layer_backward";
    auto [grad_input, grad_h0, grad_w_ih, grad_w_hh, grad_bias, unused] =
        state_layer_backward_impl<LayerBackend>(
            rnn_cell_kind(nonlinearity, op), grad_output, grad_h_n, input, h0, w_ih, w_hh,
            batch_sizes, reverse, output, at::empty({0}, input.options()), need_input_grad,
            need_weight_grads, op);
    return {grad_input, grad_h0, grad_w_ih, grad_w_hh, grad_bias};
  }

  static std::tuple<Tensor, Tensor> gru_cell(const Tensor& input, const Tensor& hx,
                                             const Tensor& w_ih, const Tensor& w_hh,
                                             const OptionalTensor& b_ih,
                                             const OptionalTensor& b_hh) {
    return state_cell_forward_impl<CellBackend>(StateCell::kGru, input, hx, w_ih, w_hh, b_ih,
                                                b_hh, "fusedlstm::gru_cell");
  }

  static Grads gru_cell_backward(const Tensor& grad_hy, const Tensor& input, const Tensor& hx,
                                 const Tensor& w_ih, const Tensor& w_hh, const Tensor& hy,
                                 const Tensor& saved, bool need_input_grad, bool need_hx_grad,
                                 bool need_weight_grads) {
    return cell_backward(StateCell::kGru, grad_hy, input, hx, w_ih, w_hh, hy, saved,
                         need_input_grad, need_hx_grad, need_weight_grads,
                         "fusedlstm::gru_cell_backward");
  }

  static Tensor rnn_cell(const Tensor& input, const Tensor& hx, const Tensor& w_ih,
                         const Tensor& w_hh, const OptionalTensor& b_ih,
                         const OptionalTensor& b_hh, c10::string_view nonlinearity) {
    constexpr const char* op = "fusedlstm::rnn_cell";
    return std::get<0>(state_cell_forward_impl<CellBackend>(
        rnn_cell_kind(nonlinearity, op), input, hx, w_ih, w_hh, b_ih, b_hh, op));
  }

  static RnnGrads rnn_cell_backward(const Tensor& grad_hy, const Tensor& input, const Tensor& hx,
                                    const Tensor& w_ih, const Tensor& w_hh, const Tensor& hy,
                                    c10::string_view nonlinearity, bool need_input_grad,
                                    bool need_hx_grad, bool need_weight_grads) {
    constexpr const char* op = "fusedlstm::rnn_cell_backward";
    auto [grad_input, grad_hx, grad_w_ih, grad_w_hh, grad_bias, unused] =
        cell_backward(rnn_cell_kind(nonlinearity, op), grad_hy, input, hx, w_ih, w_hh, hy,
                      at::empty({0}, input.options()), need_input_grad, need_hx_grad,
                      need_weight_grads, op);
    return {grad_input, grad_hx, grad_w_ih, grad_w_hh, grad_bias};
  }

 private:
  static Grads cell_backward(StateCell cell, const Tensor& grad_hy, const Tensor& input,
                             const Tensor& hx, const Tensor& w_ih, const Tensor& w_hh,
                             const Tensor& hy, const Tensor& saved, bool need_input_grad,
                             bool need_hx_grad, bool need_weight_grads, const char* op) {
    return state_cell_backward_impl<CellBackend>(cell, grad_hy, input, hx, w_ih, w_hh, hy, saved,
                                                 need_input_grad, need_hx_grad,
                                                 need_weight_grads, op);
  }
};

}  // namespace fusedlstm
