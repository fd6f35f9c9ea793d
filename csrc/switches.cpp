// The switchboard (fusedlstm/switches.h) and the ops through which Python and the CUDA extension
// reach it: _switch(name) -> value, _set_switch(name, value) -> previous value.
#include "switch_ops.h"

#include <fusedlstm/switches.h>

#include <c10/util/Exception.h>

#include <array>
#include <atomic>
#include <charconv>
#include <string>
#include <string_view>
#include <vector>

namespace fusedlstm {
namespace {

struct SwitchInfo {
  const char* name;
  std::vector<const char*> choices;  // empty: a count (>= 0)
};

const std::array<SwitchInfo, static_cast<size_t>(Switch::kCount)>& switch_infos() {
  static const std::array<SwitchInfo, static_cast<size_t>(Switch::kCount)> infos = {{
      {"cpu.step", {"auto", "fused", "gemm"}},
      {"cpu.input_fusion", {"auto", "on", "off"}},
      {"cpu.gemm", {"auto", "aten"}},
      {"cpu.bf16_compute", {"auto", "float", "bf16"}},
      {"cpu.emulate_cuda_kernels", {"off", "on"}},
      {"backward_chunk_steps", {}},
      {"cuda.step", {"auto", "persistent", "per_step", "persistent_refused"}},
  }};
  return infos;
}

std::array<std::atomic<int64_t>, static_cast<size_t>(Switch::kCount)> values{};

size_t index_of(std::string_view name) {
  const auto& infos = switch_infos();
  std::string known;
  for (size_t i = 0; i < infos.size(); ++i) {
    if (name == infos[i].name) return i;
    known += (i ? ", " : "") + std::string(infos[i].name);
  }
  TORCH_CHECK_VALUE(false, "fusedlstm: no switch named '", name, "'; the switches are ", known);
}

std::string format(size_t index, int64_t value) {
  const auto& choices = switch_infos()[index].choices;
  return choices.empty() ? std::to_string(value) : std::string(choices[value]);
}

int64_t parse(size_t index, std::string_view text) {
  const SwitchInfo& info = switch_infos()[index];
  if (info.choices.empty()) {
    int64_t count = -1;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), count);
    TORCH_CHECK_VALUE(error == std::errc() && end == text.data() + text.size() && count >= 0,
                      "fusedlstm: switch ", info.name, " takes a count >= 0 (0: automatic), got '",
                      text, "'");
    return count;
  }
  std::string allowed;
  for (size_t c = 0; c < info.choices.size(); ++c) {
    if (text == info.choices[c]) return static_cast<int64_t>(c);
    allowed += (c ? ", " : "") + std::string(info.choices[c]);
  }
  TORCH_CHECK_VALUE(false, "fusedlstm: switch ", info.name, " takes one of ", allowed, "; got '",
                    text, "'");
}

}  // namespace

int64_t switch_value(Switch which) {
  return values[static_cast<size_t>(which)].load(std::memory_order_relaxed);
}

std::string get_switch(const std::string& name) {
  const size_t index = index_of(name);
  return format(index, values[index].load());
}

std::string set_switch(const std::string& name, const std::string& value) {
  const size_t index = index_of(name);
  const int64_t parsed = parse(index, value);
  return format(index, values[index].exchange(parsed));
}

int64_t switch_code(int64_t which) {
  TORCH_CHECK(which >= 0 && which < static_cast<int64_t>(Switch::kCount),
              "fusedlstm::_switch_code: no switch ", which);
  return values[static_cast<size_t>(which)].load(std::memory_order_relaxed);
}

}  // namespace fusedlstm
