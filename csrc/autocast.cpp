// The fusedlstm ops under torch.autocast, as nn.LSTM and nn.LSTMCell behave there.
//
// An op without a kernel for the Autocast keys falls through them with autocast still on, and the
// ATen GEMMs inside our kernels were then autocast themselves: a bfloat16 product where the time
// loop expects float32, read past its end (heap corruption and a crash, seen under
// torch.autocast("cpu")). So every op here runs with autocast off. Before that, the layer op casts
// its float32 tensors to the autocast dtype, because nn.LSTM runs in it (aten::lstm is on CUDA's
// lower-precision list, mkldnn_rnn_layer on the CPU's): fusedlstm.LSTM returns what nn.LSTM
// returns. (One quirk not copied: on the CPU with proj_size > 0, which its oneDNN path lacks,
// nn.LSTM falls back to ATen's composite LSTM, whose c_n comes out float32 next to a bfloat16
// output and h_n; ours is bfloat16 throughout.) The cell op casts on CUDA (lstm_cell is on CUDA's
// list) and stays float32 on the CPU, where nn.LSTMCell's output is float32 too. The backward ops
// take the forward's tensors as they are.
#include <ATen/autocast_mode.h>
#include <torch/library.h>

namespace fusedlstm {
namespace {

template <c10::DeviceType kDevice, bool kCastInputs>
void autocast_kernel(const c10::OperatorHandle& op, c10::DispatchKeySet /*keys*/,
                     torch::jit::Stack* stack) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  if constexpr (kCastInputs) {
    const size_t arguments = op.schema().arguments().size();
    // as ATen's autocast wrappers: float32 tensors of this device to the autocast dtype (float64
    // and integer tensors, and other devices' tensors, as they are); weights cast once per
    // autocast region (cached_cast)
    const at::ScalarType dtype = at::autocast::get_autocast_dtype(kDevice);
    for (size_t i = stack->size() - arguments; i < stack->size(); ++i) {
      c10::IValue& value = (*stack)[i];
      if (value.isTensor()) value = at::autocast::cached_cast(dtype, value.toTensor(), kDevice);
    }
  }
  op.callBoxed(stack);
}

template <c10::DeviceType kDevice, bool kCastInputs>
torch::CppFunction autocast_function() {
  return torch::CppFunction::makeFromBoxedFunction<&autocast_kernel<kDevice, kCastInputs>>();
}

// The ops' autocast kernels on one device; the LSTM layer op always casts, the cell ops (and the
// GRU / RNN layers) where kCastCell (CUDA), the backward ops never.
template <c10::DeviceType kDevice, bool kCastCell>
void register_autocast(torch::Library& m) {
  m.impl("lstm_layer", autocast_function<kDevice, true>());
  m.impl("lstm_layer_backward", autocast_function<kDevice, false>());
  m.impl("lstm_cell", autocast_function<kDevice, kCastCell>());
  m.impl("lstm_cell_backward", autocast_function<kDevice, false>());
  // GRU and RNN as nn.GRU / nn.RNN come out: on CUDA all in the autocast dtype (cuDNN's RNN and
  // the cells are on its list). On the CPU, where their math is ATen's composite, the RNN's linear
  // products are autocast and its state and output with them, so ours cast; nn.GRU's state
  // stays float32 (its z * h_{t-1} promotes), so ours computes in float32 throughout.
  for (const char* op : {"gru_layer", "gru_cell"}) {
    m.impl(op, autocast_function<kDevice, kCastCell>());
  }
  for (const char* op : {"rnn_layer", "rnn_cell"}) {
    m.impl(op, autocast_function<kDevice, true>());
  }
  for (const char* backward :
       {"gru_layer_backward", "rnn_layer_backward", "gru_cell_backward", "rnn_cell_backward"}) {
    m.impl(backward, autocast_function<kDevice, false>());
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedlstm, AutocastCPU, m) {
  register_autocast<c10::DeviceType::CPU, /*kCastCell=*/false>(m);
}

TORCH_LIBRARY_IMPL(fusedlstm, AutocastCUDA, m) {
  register_autocast<c10::DeviceType::CUDA, /*kCastCell=*/true>(m);
}

}  // namespace fusedlstm
