// The CPU back-end's run-time switches (FUSEDLSTM_CPU_*): environment variables, each read once
// per process by its own accessor (tests run a suite in a fresh process per setting).
#pragma once

#include <cstdlib>
#include <string>

namespace fusedlstm::cpu {

// The value of environment variable `name`, or "" when unset.
inline std::string env_value(const char* name) {
  const char* env = std::getenv(name);
  return env == nullptr ? std::string() : std::string(env);
}

}  // namespace fusedlstm::cpu
