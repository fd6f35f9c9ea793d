#include "onednn_linear.h"

#include <ATen/Context.h>
#include <ATen/core/List.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <string>

namespace fusedlstm::cpu {

namespace {

using LinearFn = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                            c10::string_view, c10::List<std::optional<at::Scalar>>,
                            std::optional<c10::string_view>);
using PackFn = at::Tensor(const at::Tensor&, std::optional<int64_t>);

struct OneDnnOps {
  std::optional<c10::TypedOperatorHandle<LinearFn>> linear;
  std::optional<c10::TypedOperatorHandle<PackFn>> pack;
};

// Looked up once; absent when torch was built without oneDNN or renamed the ops.
const OneDnnOps& ops() {
  static const OneDnnOps found = [] {
    OneDnnOps result;
    if (!at::hasMKLDNN()) return result;
    auto& dispatcher = c10::Dispatcher::singleton();
    const auto linear = dispatcher.findSchema({"mkldnn::_linear_pointwise", ""});
    const auto pack = dispatcher.findSchema({"mkldnn::_reorder_linear_weight", ""});
    if (linear && pack && linear->hasKernelForDispatchKey(c10::DispatchKey::CPU)) {
      result.linear = linear->typed<LinearFn>();
      result.pack = pack->typed<PackFn>();
    }
    return result;
  }();
  return found;
}

}  // namespace

bool onednn_linear_available(at::ScalarType dtype) {
  return (dtype == at::kFloat || dtype == at::kBFloat16) && ops().linear.has_value();
}

at::Tensor onednn_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
  const c10::List<std::optional<at::Scalar>> no_scalars;
  const std::optional<at::Tensor> b = bias.defined() ? std::optional<at::Tensor>(bias)
                                                     : std::nullopt;
  return ops().linear->call(x, w, b, "none", no_scalars, std::nullopt);
}

at::Tensor onednn_pack_weight(const at::Tensor& w, int64_t rows_hint) {
  return ops().pack->call(w.contiguous(), rows_hint);
}

}  // namespace fusedlstm::cpu
