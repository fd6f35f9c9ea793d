// Which rows each time step of a layer touches. A padded (T, B, I) input is the special case of a
// packed one where every step has B rows; one schedule serves both, so the time loop has one path.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <vector>

namespace fusedlstm {

struct StepSchedule {
  int64_t steps = 0;               // T
  int64_t batch = 0;               // B: rows of the first step, the size of h0/c0
  int64_t total_rows = 0;          // N: rows of the flattened (N, features) input and output
  std::vector<int64_t> rows;       // rows[t]: active batch rows of step t (non-increasing)
  std::vector<int64_t> row_offset; // row_offset[t]: first row of step t in the flat buffers
};

// input is (T, B, I) when batch_sizes is absent, and PackedSequence data (N, I) when present.
inline StepSchedule make_schedule(const at::Tensor& input,
                                  const c10::optional<at::Tensor>& batch_sizes, const char* op) {
  StepSchedule s;
  if (!batch_sizes.has_value()) {
    TORCH_CHECK(input.dim() == 3, op, ": expected input to be 3-D (seq_len, batch, input_size), got ",
                input.dim(), "-D with shape ", input.sizes());
    s.steps = input.size(0);
    s.batch = input.size(1);
    TORCH_CHECK(s.steps > 0, op, ": input has seq_len 0; expected at least one time step");
    s.rows.assign(s.steps, s.batch);
  } else {
    const at::Tensor& sizes = *batch_sizes;
    TORCH_CHECK(input.dim() == 2, op,
                ": expected packed input data to be 2-D (total_rows, input_size), got ",
                input.dim(), "-D with shape ", input.sizes());
    TORCH_CHECK(sizes.dim() == 1 && sizes.device().is_cpu() && sizes.scalar_type() == at::kLong,
                op, ": batch_sizes must be a 1-D int64 CPU tensor, got ", sizes.dim(), "-D ",
                sizes.scalar_type(), " on ", sizes.device());
    s.steps = sizes.size(0);
    TORCH_CHECK(s.steps > 0, op, ": batch_sizes is empty; expected at least one time step");
    const at::Tensor contiguous_sizes = sizes.contiguous();
    const int64_t* data = contiguous_sizes.const_data_ptr<int64_t>();
    s.rows.assign(data, data + s.steps);
    s.batch = s.rows[0];
    for (int64_t t = 0; t < s.steps; ++t) {
      TORCH_CHECK(s.rows[t] > 0, op, ": batch_sizes must be positive, but batch_sizes[", t,
                  "] is ", s.rows[t]);
      TORCH_CHECK(t == 0 || s.rows[t] <= s.rows[t - 1], op,
                  ": batch_sizes must be non-increasing, but batch_sizes[", t, "] is ",
                  s.rows[t], " after ", t == 0 ? 0 : s.rows[t - 1]);
    }
  }
  s.row_offset.resize(s.steps);
  for (int64_t t = 0; t < s.steps; ++t) {
    s.row_offset[t] = s.total_rows;
    s.total_rows += s.rows[t];
  }
  if (batch_sizes.has_value()) {
    TORCH_CHECK(s.total_rows == input.size(0), op, ": batch_sizes sum to ", s.total_rows,
                " but packed input data has ", input.size(0), " rows");
  }
  return s;
}

}  // namespace fusedlstm
