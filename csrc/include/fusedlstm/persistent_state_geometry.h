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
  int64_t max_rows;  // the most rows of any step (the tensor-core tiles' M)
};

// The LSTM's geometry (persistent_geometry.h) with the cell's gates and K = H (no projection):
// the FMA kernels' kGates U H elements either way, the tile kernels' as the LSTM's.
inline PersistentGeometry persistent_state_geometry(int64_t gates, int64_t hidden,
                                                    int64_t max_rows, int64_t resident_blocks,
                                                    size_t element_size, bool backward,
                                                    bool tensor_cores) {
  return backward ? persistent_backward_geometry(gates, hidden, max_rows, resident_blocks,
                                                 element_size, tensor_cores)
                  : persistent_forward_geometry(gates, hidden, hidden, max_rows, resident_blocks,
                                                element_size, tensor_cores);
}

struct PersistentStateBackwardParams {
  const StateRecurrentBackwardStep* steps;  // `count` steps, latest first
  int64_t count;
  StateCell cell;
  const void* w_hh;  // (kGates H, H) row-major
  int64_t hidden;
  int64_t units_per_block;
  int64_t max_rows;
};

}  // namespace fusedlstm::kernels
