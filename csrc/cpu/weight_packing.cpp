#include "weight_packing.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "buffer_pool.h"

namespace fusedlstm::cpu {

namespace {

// Packs `blocks` blocks of a bfloat16 weight whose elements are src(vector, unit, k) as
// [block][k / 2][vector][lane][k % 2] (each lane's pair of k one 32-bit element of the dot
// product), zero past the units that exist and past `inner`. float32 weights take
// pack_float_blocks below.
template <class Source>
at::Tensor pack_bf16_blocks(int64_t blocks, int64_t inner, int64_t width, int vectors,
                            const TileColumns& columns, const at::TensorOptions& options,
                            const Source& src) {
  constexpr int64_t kPair = 2;
  const int64_t groups = (inner + kPair - 1) / kPair;
  at::Tensor packed =
      pooled_empty({blocks * groups * kPair * vectors * width}, options).zero_();
  uint16_t* dst = static_cast<uint16_t*>(packed.data_ptr());
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      for (int64_t k = 0; k < inner; ++k) {
        for (int c = 0; c < vectors; ++c) {
          const int64_t unit0 = columns.unit(block, c);
          const int64_t lanes = columns.lanes(block, c, width);
          uint16_t* out =
              dst + ((block * groups + k / kPair) * vectors + c) * width * kPair + k % kPair;
          for (int64_t lane = 0; lane < lanes; ++lane) out[lane * kPair] = src(c, unit0 + lane, k);
        }
      }
    }
  });
  return packed;
}

// A bfloat16 weight (contiguous) packed by pack_bf16_blocks, its element (vector, unit, k) at
// index(vector, unit, k).
template <class Index>
at::Tensor pack_bf16_elements(const at::Tensor& w, int64_t blocks, int64_t width, int64_t inner,
                              int vectors, const TileColumns& columns, const Index& index) {
  const uint16_t* src = static_cast<const uint16_t*>(w.const_data_ptr());
  return pack_bf16_blocks(blocks, inner, width, vectors, columns, w.options(),
                          [&](int c, int64_t unit, int64_t k) { return src[index(c, unit, k)]; });
}

// The float32 layout ([block][k][vector][lane]) with every element written once, no zero fill
// first: write_lanes(block, c, out, k_stride) stores the lanes of vector c that exist at `out`,
// k by k `k_stride` apart, and returns how many there are; the rest (the last block's padding)
// are zeroed here.
template <class WriteLanes>
at::Tensor pack_float_blocks(int64_t blocks, int64_t inner, int64_t width, int vectors,
                             const at::TensorOptions& options, const WriteLanes& write_lanes) {
  const int64_t k_stride = vectors * width;
  at::Tensor packed = pooled_empty({blocks * inner * k_stride}, options);
  float* dst = packed.data_ptr<float>();
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      for (int c = 0; c < vectors; ++c) {
        float* out = dst + block * inner * k_stride + c * width;
        const int64_t lanes = write_lanes(block, c, out, k_stride);
        for (int64_t k = 0; lanes < width && k < inner; ++k) {
          std::fill_n(out + k * k_stride + lanes, width - lanes, 0.0f);
        }
      }
    }
  });
  return packed;
}

// The forward's weight by transposes, its rows as `inner` 32-bit words each: vector c of a block
// is `lanes` rows (lane = row) whose words run along the row. Words are float32 elements, or
// bfloat16 k pairs: the bfloat16 layout [block][k / 2][vector][lane][k % 2] is the float32 one
// over pairs (element by element, packing took 6% of a bfloat16 layer's inference with
// I = H = 200). The transposes only move bits.
at::Tensor pack_forward_words(const float* words, int64_t inner, const at::TensorOptions& options,
                              int64_t blocks, int64_t width, int vectors,
                              const TileColumns& columns) {
  const TransposeFn transpose = selected_row_kernels().transpose;
  return pack_float_blocks(
      blocks, inner, width, vectors, options.dtype(at::kFloat),
      [&](int64_t block, int c, float* out, int64_t k_stride) {
        const int64_t lanes = columns.lanes(block, c, width);
        if (lanes > 0) {
          transpose(words + columns.column(block, c) * inner, inner, out, k_stride, lanes, inner);
        }
        return lanes;
      });
}

// The backward's float32 W_hh: lane j of row (gate, u) is already consecutive, so each (u, gate)
// is one copy of the block's lanes.
at::Tensor pack_backward_float(const at::Tensor& w, int64_t blocks, int64_t width, int gates) {
  const int64_t hidden = w.size(1);
  const TileColumns columns = gate_columns(hidden, width);
  const float* src = w.const_data_ptr<float>();
  return pack_float_blocks(
      blocks, hidden, width, gates, w.options(),
      [&](int64_t block, int gate, float* out, int64_t k_stride) {
        const int64_t lanes = columns.lanes(block, gate, width);
        const float* rows = src + gate * hidden * hidden + columns.unit(block, gate);
        for (int64_t u = 0; u < hidden; ++u) {
          std::memcpy(out + u * k_stride, rows + u * hidden,
                      static_cast<size_t>(lanes) * sizeof(float));
        }
        return lanes;
      });
}

}  // namespace

at::Tensor pack_forward_weight(const at::Tensor& weight, int64_t blocks, int64_t width,
                               int vectors, const TileColumns& columns) {
  const at::Tensor w = weight.contiguous();
  const int64_t inner = w.size(1);
  if (w.scalar_type() == at::kFloat) {
    return pack_forward_words(w.const_data_ptr<float>(), inner, w.options(), blocks, width,
                              vectors, columns);
  }
  const bool word_aligned = reinterpret_cast<uintptr_t>(w.const_data_ptr()) % 4 == 0;
  if (inner % 2 == 0 && word_aligned) {
    return pack_forward_words(static_cast<const float*>(w.const_data_ptr()), inner / 2,
                              w.options(), blocks, width, vectors, columns)
        .view(at::kBFloat16);
  }
  return pack_bf16_elements(w, blocks, width, inner, vectors, columns,
                            [&](int c, int64_t unit, int64_t k) {
                              return (c * columns.gate_stride + unit) * inner + k;
                            });
}

at::Tensor pack_backward_weight(const at::Tensor& w_hh, int64_t blocks, int64_t width,
                                int gates) {
  const at::Tensor w = w_hh.contiguous();
  const int64_t hidden = w.size(1);
  if (w.scalar_type() == at::kFloat) return pack_backward_float(w, blocks, width, gates);
  return pack_bf16_elements(w, blocks, width, hidden, gates, gate_columns(hidden, width),
                            [&](int gate, int64_t j, int64_t u) {
                              return (gate * hidden + u) * hidden + j;
                            });
}

}  // namespace fusedlstm::cpu
