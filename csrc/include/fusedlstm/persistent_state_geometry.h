// What the host needs of the GRU's and Elman RNN's persistent kernels
// (cuda/persistent_state_kernels.cuh): their parameters and their shared memory. Plain C++, no
// device code; the units are dealt to blocks as the LSTM's (persistent_geometry.h).
#pragma once

#include <fusedlstm/persistent_geometry.h>
#include <fusedlstm/state_cell_math.h>
#include <fusedlstm/state_cell_units.h>

#include <algorithm>
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

// Shared memory. FMA kernels, forward and backward alike: kGates U H elements, the forward's
// slice of W_hh ([k][gate][u]) or the backward's columns ([gate row][u]). Tensor cores, as the
// LSTM's (persistent_geometry.h) with kGates gates: forward N = kGates U gate rows of K = H
// columns and the step's h_{t-1} rows; backward N = U columns of K = kGates H and a chunk of the
// later step's recurrent-side gradients.
inline PersistentGeometry persistent_state_geometry(int64_t gates, int64_t hidden,
                                                    int64_t max_rows, int64_t resident_blocks,
                                                    size_t element_size, bool backward,
                                                    bool tensor_cores) {
  PersistentGeometry g = deal_units(hidden, max_rows, resident_blocks);
  g.tensor_cores = tensor_cores;
  const int64_t U = g.units_per_block;
  if (!tensor_cores) {
    g.shared_bytes = static_cast<size_t>(gates * U * hidden) * element_size;
    return g;
  }
  const int64_t M = round_up(max_rows, kTile);
  if (!backward) {
    const int64_t K = round_up(hidden, kTile);
    g.shared_bytes = tile_shared_bytes(M, round_up(gates * U, kTile), K, K, element_size);
  } else {
    const int64_t K = round_up(gates * hidden, kTile);
    g.shared_bytes = tile_shared_bytes(M, round_up(U, kTile), K, std::min(K, kBackwardChunk),
                                       element_size);
  }
  return g;
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
