// One direction of one LSTM layer over a whole sequence (the `lstm_layer` ops), written once for
// every device. `Backend` is the device's: `Backend::forward` / `Backend::backward` are its fused
// pointwise passes (see pointwise.h); `linear`, `matmul` and `StepGemm` its GEMMs (see gemm.h).
//
// Forward: one GEMM projects the input of all steps (bias folded in), then per step one GEMM adds
// h_{t-1} W_hh^T into that step's slice of the gate buffer and one fused pointwise pass writes
// h_t, c_t and the activated gates (kept for the backward when training). With a projection, one
// more GEMM per step maps m_t (H) to h_t (P).
//
// The recurrent state lives in (B, P) / (B, H) buffers updated in place for the rows a step
// touches. That single mechanism gives padded input, packed input in both directions (rows join
// or leave the batch) and h_n / c_n (each row's state after its last step) without special cases.
#pragma once

#include <fusedlstm/layer_backward.h>
#include <fusedlstm/layer_forward.h>
