#include "weight_packing.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>

#include "buffer_pool.h"

namespace fusedlstm::cpu {

namespace {

// Packs `blocks` blocks of a weight whose elements are src(vector, unit, k) (type T) as
// [block][k / kPair][vector][lane][k % kPair], zero past the units that exist and past `inner`:
// kPair = 1 is the float32 steps' layout, kPair = 2 the bfloat16 steps' pairs of k (each lane's
// pair one 32-bit element of the dot product).
template <class T, int kPair, class Source>
at::Tensor pack_blocks(int64_t blocks, int64_t inner, int64_t width, int vectors,
                       const TileColumns& columns, const at::TensorOptions& options,
                       const Source& src) {
  static_assert(sizeof(T) * kPair == 4, "float32, or pairs of 16-bit values");
  const int64_t groups = (inner + kPair - 1) / kPair;
  at::Tensor packed =
      pooled_empty({blocks * groups * kPair * vectors * width}, options).zero_();
  T* dst = static_cast<T*>(packed.data_ptr());
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      for (int64_t k = 0; k < inner; ++k) {
        for (int c = 0; c < vectors; ++c) {
          const int64_t unit0 = columns.unit(block, c);
          const int64_t lanes = columns.lanes(block, c, width);
          T* out = dst + ((block * groups + k / kPair) * vectors + c) * width * kPair + k % kPair;
          for (int64_t lane = 0; lane < lanes; ++lane) out[lane * kPair] = src(c, unit0 + lane, k);
        }
      }
    }
  });
  return packed;
}

// A float32 or bfloat16 weight (contiguous) packed by pack_blocks, its element (vector, unit, k)
// at index(vector, unit, k); bfloat16 in pairs of k.
template <class Index>
at::Tensor pack_weight_elements(const at::Tensor& w, int64_t blocks, int64_t width, int64_t inner,
                                int vectors, const TileColumns& columns, const Index& index) {
  const auto pack = [&](auto element, auto pair) {
    using T = decltype(element);
    const T* src = static_cast<const T*>(w.const_data_ptr());
    return pack_blocks<T, decltype(pair)::value>(
        blocks, inner, width, vectors, columns, w.options(),
        [&](int c, int64_t unit, int64_t k) { return src[index(c, unit, k)]; });
  };
  if (w.scalar_type() == at::kBFloat16) return pack(uint16_t{}, std::integral_constant<int, 2>{});
  return pack(float{}, std::integral_constant<int, 1>{});
}

// The float32 layouts below write every element (no zero fill first): the lanes that exist from
// W, the padding lanes of the last block zero.
void zero_lanes(float* out, int64_t k_count, int64_t k_stride, int64_t lanes, int64_t width) {
  if (lanes >= width) return;
  for (int64_t k = 0; k < k_count; ++k) {
    std::fill_n(out + k * k_stride + lanes, width - lanes, 0.0f);
  }
}

// pack_blocks' float32 forward layout by transposes: a block's vector c is `lanes` rows of W
// (lane = row) whose k run along the row, stored k by k a tile's vectors apart.
at::Tensor pack_forward_float(const at::Tensor& w, int64_t blocks, int64_t width, int vectors,
                              const TileColumns& columns) {
  const int64_t inner = w.size(1);
  const int64_t k_stride = vectors * width;
  at::Tensor packed = pooled_empty({blocks * inner * k_stride}, w.options());
  const float* src = w.const_data_ptr<float>();
  float* dst = packed.data_ptr<float>();
  const TransposeFn transpose = selected_row_kernels().transpose;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      for (int c = 0; c < vectors; ++c) {
        float* out = dst + block * inner * k_stride + c * width;
        const int64_t lanes = columns.lanes(block, c, width);
        if (lanes > 0) {
          transpose(src + columns.column(block, c) * inner, inner, out, k_stride, lanes, inner);
        }
        zero_lanes(out, inner, k_stride, lanes, width);
      }
    }
  });
  return packed;
}

// pack_blocks' float32 backward layout: lane j of W_hh's row (gate, u) is already consecutive,
// so each (u, gate) is one copy of the block's lanes.
at::Tensor pack_backward_float(const at::Tensor& w, int64_t blocks, int64_t width, int gates) {
  const int64_t hidden = w.size(1);
  const int64_t k_stride = gates * width;
  const TileColumns columns = gate_columns(hidden, width);
  at::Tensor packed = pooled_empty({blocks * hidden * k_stride}, w.options());
  const float* src = w.const_data_ptr<float>();
  float* dst = packed.data_ptr<float>();
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      const int64_t lanes = columns.lanes(block, 0, width);
      const int64_t j0 = columns.unit(block, 0);
      for (int gate = 0; gate < gates; ++gate) {
        float* out = dst + block * hidden * k_stride + gate * width;
        for (int64_t u = 0; u < hidden; ++u) {
          std::memcpy(out + u * k_stride, src + (gate * hidden + u) * hidden + j0,
                      static_cast<size_t>(lanes) * sizeof(float));
        }
        zero_lanes(out, hidden, k_stride, lanes, width);
      }
    }
  });
  return packed;
}

}  // namespace

at::Tensor pack_forward_weight(const at::Tensor& weight, int64_t blocks, int64_t width,
                               int vectors, const TileColumns& columns) {
  const at::Tensor w = weight.contiguous();
  const int64_t inner = w.size(1);
  if (w.scalar_type() == at::kFloat) return pack_forward_float(w, blocks, width, vectors, columns);
  return pack_weight_elements(w, blocks, width, inner, vectors, columns,
                              [&](int c, int64_t unit, int64_t k) {
                                return (c * columns.gate_stride + unit) * inner + k;
                              });
}

at::Tensor pack_backward_weight(const at::Tensor& w_hh, int64_t blocks, int64_t width,
                                int gates) {
  const at::Tensor w = w_hh.contiguous();
  const int64_t hidden = w.size(1);
  if (w.scalar_type() == at::kFloat) return pack_backward_float(w, blocks, width, gates);
  return pack_weight_elements(w, blocks, width, hidden, gates, gate_columns(hidden, width),
                              [&](int gate, int64_t j, int64_t u) {
                                return (gate * hidden + u) * hidden + j;
                              });
}

}  // namespace fusedlstm::cpu
