// What the host needs of the GRU's and Elman RNN's persistent kernels
// (cuda/persistent_state_kernels.cuh): their parameters and their shared memory. Plain C++, no
// device code; the units are dealt to blocks as the LSTM's (persistent_geometry.h).
#pragma once

#include <fusedlstm/persistent_geometry.h>
#include <fusedlstm/state_cell_math.h>
#include <fusedlstm/state_cell_units.h>

#include <cstddef>
#include <cstdint>

namespace fusedlstm::kernels {

struct PersistentStateForwardParams {
  const StateRecurrentStep* steps;  // `count` steps, in the order they run
  int64_t count;
  StateCell cell;
  const void* w_hh;     // (kGates H, H) row-major
  const void* bias_hh;  // (kGates H) or nullptr: added to the recurrent sums
  int64_t hidden;
  int64_t units_per_block;
};

// Shared memory, forward and backward alike: kGates U H elements, the forward's slice of W_hh
// ([k][gate][u]) or the backward's columns ([gate row][u]).
inline PersistentGeometry persistent_state_geometry(int64_t gates, int64_t hidden,
                                                    int64_t max_rows, int64_t resident_blocks,
                                                    size_t element_size) {
  PersistentGeometry g = deal_units(hidden, max_rows, resident_blocks);
  g.shared_bytes = static_cast<size_t>(gates * g.units_per_block * hidden) * element_size;
  return g;
}

struct PersistentStateBackwardParams {
  const StateRecurrentBackwardStep* steps;  // `count` steps, latest first
  int64_t count;
  StateCell cell;
  const void* w_hh;  // (kGates H, H) row-major
  int64_t hidden;
  int64_t units_per_block;
};

}  // namespace fusedlstm::kernels
