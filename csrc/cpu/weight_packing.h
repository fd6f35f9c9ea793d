// The fused steps' packed weights: per block of units, for every k, the tile's vectors of lanes
// one after the other ([block][k][vector][lane]; bfloat16 in pairs of k), units that do not
// exist zero, so a tile loads one unaligned vector per vector and k (fused_step_kernel.h).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "pointwise_cpu.h"

namespace fusedlstm::cpu {

// W (rows, inner) for a forward tile of `vectors` vectors laid out as `columns` (float32 or
// bfloat16): lane l of vector c of a block is W's row c * gate_stride + unit(block, c) + l (the
// output column it produces), k its column.
at::Tensor pack_forward_weight(const at::Tensor& weight, int64_t blocks, int64_t width,
                               int vectors, const TileColumns& columns);

// W_hh (gates * H, H) for the backward's tiles: lane = output unit j (a column of W_hh), k = unit
// u of the gate rows, the vectors its gates: W_hh[gate * H + u][block * width + lane].
at::Tensor pack_backward_weight(const at::Tensor& w_hh, int64_t blocks, int64_t width,
                                int gates);

}  // namespace fusedlstm::cpu
