// The switchboard's op implementations (switches.cpp), registered in ops.cpp.
#pragma once

#include <cstdint>
#include <string>

namespace fusedlstm {

std::string get_switch(const std::string& name);
// Returns the previous value.
std::string set_switch(const std::string& name, const std::string& value);
// The raw value of switch number `which` (fusedlstm::Switch), for the CUDA extension.
int64_t switch_code(int64_t which);

}  // namespace fusedlstm
