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
  // oneDNN's bfloat16 inner product needs AVX-512 (or AVX2-VNNI-2) on x86: on a plain AVX2 CPU it
  // fails to create its primitive at any size, so there bfloat16 products take ATen's GEMMs.
  bool bf16 = false;
};

// torch's own check of the CPU for oneDNN's bfloat16 kernels (false when the op is absent).
bool onednn_bf16_supported() {
  const auto check =
      c10::Dispatcher::singleton().findSchema({"mkldnn::_is_mkldnn_bf16_supported", ""});
  if (!check) return false;
  try {
    return check->typed<bool()>().call();
  } catch (const c10::Error&) {
    return false;
  }
}

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
      result.bf16 = onednn_bf16_supported();
    }
    return result;
  }();
  return found;
}

}  // namespace

bool onednn_linear_available(at::ScalarType dtype) {
  const OneDnnOps& found = ops();
  return found.linear.has_value() &&
         (dtype == at::kFloat || (dtype == at::kBFloat16 && found.bf16));
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
