// switch_value() in the CUDA extension, a separate library from the switchboard: through the
// fusedlstm::_switch_code op (a microsecond, read once per decision per call).
#include <ATen/core/dispatch/Dispatcher.h>

#include <fusedlstm/switches.h>

namespace fusedlstm {

int64_t switch_value(Switch which) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fusedlstm::_switch_code", "")
                             .typed<int64_t(int64_t)>();
  return op.call(static_cast<int64_t>(which));
}

}  // namespace fusedlstm
