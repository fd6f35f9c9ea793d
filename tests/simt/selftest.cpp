// The SIMT emulation's self-test, a standalone program (no libtorch; c10 headers for the
// pointwise kernels' dtypes): each emulated device feature against a known answer, the limits
// the emulation enforces, and the project's CUDA pointwise kernels (cuda/pointwise_kernels.cuh)
// against the same per-unit code run sequentially. Built plain by tests/test_simt.py and under
// ThreadSanitizer by `make sanitize`, which also builds it with one barrier planted out
// (-DFUSEDLSTM_SIMT_PLANT=1 / 2: the harness's block / grid barrier; 3: the persistent kernels'
// step barrier) and requires ThreadSanitizer to fail that build's run.
#include <fusedlstm/simt/simt.h>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../csrc/cuda/persistent_kernels.cuh"
#include "../../csrc/cuda/persistent_state_kernels.cuh"
#include "../../csrc/cuda/pointwise_kernels.cuh"
#include "harness_kernels.cuh"

namespace {

using fusedlstm::simt::launch;
using fusedlstm::simt::launch_cooperative;

int failures = 0;
int passes = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::printf("FAIL %s\n", what.c_str());
  }
}

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Whether fn throws an exception whose message contains `needle`.
bool throws_with(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
  } catch (const std::exception& error) {
    return std::string(error.what()).find(needle) != std::string::npos;
  }
  return false;
}

std::vector<float> ramp(size_t n, float scale = 1.0f) {
  std::vector<float> values(n);
  for (size_t i = 0; i < n; ++i) values[i] = scale * static_cast<float>((i * 7919) % 23) - 11.0f;
  return values;
}

void test_block_barrier_and_shared_memory() {
  constexpr int blocks = 4, threads = 128;
  const auto in = ramp(blocks * threads);
  std::vector<float> sums(blocks);
  launch(simt_harness::block_sum_kernel, dim3(blocks), dim3(threads), threads * sizeof(float),
         in.data(), sums.data());
  for (int b = 0; b < blocks; ++b) {
    float expected = 0;
    for (int t = 0; t < threads; ++t) expected += in[b * threads + t];
    check(sums[b] == expected, "block_sum block " + std::to_string(b));
  }
}

void test_grid_barrier() {
  constexpr int blocks = 4, threads = 64;
  const auto in = ramp(blocks * threads);
  std::vector<float> block_sums(blocks), out(blocks);
  check(launch_cooperative(simt_harness::grid_exchange_kernel, dim3(blocks), dim3(threads), 0,
                           in.data(), block_sums.data(), out.data()),
        "cooperative launch of 256 threads accepted");
  float expected = 0;
  for (float v : in) expected += v;
  for (int b = 0; b < blocks; ++b) {
    check(std::fabs(out[b] - expected) < 1e-3f, "grid_exchange block " + std::to_string(b));
  }
}

#if FUSEDLSTM_SIMT_PLANT == 0

void test_warp_shuffles_and_votes() {
  constexpr int blocks = 2, threads = 64, warps = blocks * threads / 32;
  const auto in = ramp(blocks * threads, 0.5f);
  std::vector<float> out(4 * warps);
  launch(simt_harness::warp_kernel, dim3(blocks), dim3(threads), 0, in.data(), out.data());
  for (int w = 0; w < warps; ++w) {
    float sum = 0, biggest = -1e30f, positive = 0;
    for (int lane = 0; lane < 32; ++lane) {
      const float v = in[w * 32 + lane];
      sum += v;
      biggest = std::max(biggest, v);
      positive += v > 0 ? 1 : 0;
    }
    check(std::fabs(out[4 * w] - sum) < 1e-4f, "warp sum " + std::to_string(w));
    check(out[4 * w + 1] == biggest, "warp max " + std::to_string(w));
    check(out[4 * w + 2] == positive, "warp ballot " + std::to_string(w));
    check(out[4 * w + 3] == in[w * 32 + 3], "warp broadcast " + std::to_string(w));
  }
}

void test_atomics_with_a_partial_warp() {
  int counter = 0;
  float total = 0;
  launch(simt_harness::atomic_count_kernel, dim3(3), dim3(100), 0, &counter, &total);
  check(counter == 300 && total == 150.0f, "atomics over 3 x 100 threads");
}

void test_refusals() {
  std::vector<float> out(64);
  check(throws_with([&] {
          launch(simt_harness::bad_mask_kernel, dim3(1), dim3(32), 0, out.data());
        }, "mask 0x0000ffff"),
        "a shuffle mask that leaves out live lanes fails the launch");
  check(throws_with([&] {
          launch(simt_harness::bad_mask_kernel, dim3(1), dim3(2048), 0, out.data());
        }, "threads per block"),
        "2048 threads per block refused");
  check(throws_with([&] {
          launch(simt_harness::grid_sync_without_cooperative_launch_kernel, dim3(2), dim3(32), 0);
        }, "not cooperative"),
        "grid.sync() outside a cooperative launch fails");
  check(!launch_cooperative(simt_harness::grid_sync_without_cooperative_launch_kernel, dim3(8),
                            dim3(1024), 0),
        "a cooperative grid of 8192 threads is refused");
  launch(simt_harness::uninitialised_shared_kernel, dim3(1), dim3(64), 64 * sizeof(float),
         out.data());
  check(std::isnan(out[0]) && std::isnan(out[63]), "uninitialised shared memory reads NaN");
}

// Runs the pointwise pass `args` through the CUDA kernel, emulated.
template <typename Args>
void launch_emulated(const Args& args) {
  fusedlstm::kernels::launch_pointwise(args, [](auto kernel, int blocks, int threads,
                                                const auto& a) {
    launch(kernel, dim3(blocks), dim3(threads), 0, a);
  });
}

// The same pass one unit at a time, on this thread.
template <typename T, typename Args>
void run_sequentially(const Args& args) {
  for (int64_t u = 0; u < args.rows * args.hidden; ++u) {
    fusedlstm::kernels::LstmUnits::run<T>(args, u / args.hidden, u % args.hidden);
  }
}

// The CUDA pointwise kernels over rows x hidden units, emulated, against the same per-unit
// functions called one unit at a time: equal bit for bit, so every unit is visited exactly once.
template <typename T>
void test_pointwise_kernels(int64_t rows, int64_t hidden, c10::ScalarType dtype) {
  using fusedlstm::PointwiseBackwardArgs;
  using fusedlstm::PointwiseForwardArgs;
  const int64_t G = 4 * hidden;
  const auto make = [](int64_t n, float scale) {
    std::vector<T> values(n);
    const auto floats = ramp(n, scale);
    for (int64_t i = 0; i < n; ++i) values[i] = static_cast<T>(floats[i] / 11.0f);
    return values;
  };
  const std::string name = std::string(c10::toString(dtype)) + " rows " + std::to_string(rows) +
                           " hidden " + std::to_string(hidden);
  // Forward: the gates overwrite the pre-activations, as in the ops.
  const auto preact = make(rows * G, 1.0f);
  const auto addend = make(rows * G, 0.3f);
  const auto c_prev = make(rows * hidden, 0.7f);
  std::vector<std::vector<T>> gates(2, preact), c(2, std::vector<T>(rows * hidden)),
      h(2, std::vector<T>(rows * hidden));
  for (int run = 0; run < 2; ++run) {
    const PointwiseForwardArgs args{dtype, rows, hidden, gates[run].data(), addend.data(),
                                    gates[run].data(), c_prev.data(), c[run].data(), nullptr,
                                    h[run].data(), hidden, nullptr, 0};
    run == 0 ? launch_emulated(args) : run_sequentially<T>(args);
  }
  check(std::memcmp(gates[0].data(), gates[1].data(), gates[0].size() * sizeof(T)) == 0 &&
            std::memcmp(c[0].data(), c[1].data(), c[0].size() * sizeof(T)) == 0 &&
            std::memcmp(h[0].data(), h[1].data(), h[0].size() * sizeof(T)) == 0,
        "pointwise forward " + name);
  // Backward: dL/dc_{t-1} overwrites dL/dc_t, as in the layer op.
  const auto grad_h = make(rows * hidden, 0.9f);
  const auto grad_h_extra = make(rows * hidden, 0.2f);
  std::vector<std::vector<T>> grad_c(2, make(rows * hidden, 0.4f)),
      grad_gates(2, std::vector<T>(rows * G));
  for (int run = 0; run < 2; ++run) {
    const PointwiseBackwardArgs args{dtype, rows, hidden, grad_h.data(), hidden,
                                     grad_h_extra.data(), hidden, grad_c[run].data(),
                                     grad_c[run].data(), gates[1].data(), c[1].data(),
                                     c_prev.data(), grad_gates[run].data()};
    run == 0 ? launch_emulated(args) : run_sequentially<T>(args);
  }
  check(std::memcmp(grad_c[0].data(), grad_c[1].data(), grad_c[0].size() * sizeof(T)) == 0 &&
            std::memcmp(grad_gates[0].data(), grad_gates[1].data(),
                        grad_gates[0].size() * sizeof(T)) == 0,
        "pointwise backward " + name);
}

// A GRU / RNN pass through its CUDA kernel, emulated; and one unit at a time on this thread.
template <typename Args>
void launch_state_emulated(const Args& args) {
  fusedlstm::kernels::launch_state_pointwise(args, [](auto kernel, int blocks, int threads,
                                                      const auto& a) {
    launch(kernel, dim3(blocks), dim3(threads), 0, a);
  });
}

template <typename T, typename Args>
void run_state_sequentially(const Args& args) {
  fusedlstm::with_state_cell(args.cell, [&](auto math) {
    for (int64_t u = 0; u < args.rows * args.hidden; ++u) {
      fusedlstm::kernels::StateUnits<decltype(math)>::template run<T>(args, u / args.hidden,
                                                                      u % args.hidden);
    }
  });
}

// The GRU / Elman RNN kernels (one instantiation per cell), emulated, against their per-unit
// functions one unit at a time, bit for bit: forward (h_t into the output and the carried state,
// which aliases h_{t-1}, and the saved values) and backward (both sides' gradients and GRU's
// direct dL/dh_{t-1}, which aliases dL/dh_t from later steps).
template <typename T>
void test_state_kernels(fusedlstm::StateCell cell, int64_t rows, int64_t hidden,
                        c10::ScalarType dtype) {
  using fusedlstm::StateBackwardArgs;
  using fusedlstm::StateForwardArgs;
  const int64_t G = fusedlstm::state_cell_gates(cell) * hidden;
  const int64_t saved_per_row = fusedlstm::state_cell_saved(cell) * hidden;
  const auto make = [](int64_t n, float scale) {
    std::vector<T> values(n);
    const auto floats = ramp(n, scale);
    for (int64_t i = 0; i < n; ++i) values[i] = static_cast<T>(floats[i] / 11.0f - 0.2f);
    return values;
  };
  const std::string name = std::string(c10::toString(dtype)) + " cell " +
                           std::to_string(static_cast<int>(cell)) + " rows " +
                           std::to_string(rows) + " hidden " + std::to_string(hidden);
  const auto x_part = make(rows * G, 1.0f), h_part = make(rows * G, 0.3f), bias = make(G, 0.5f);
  const auto runs = [&](auto&& body) {
    for (int run = 0; run < 2; ++run) body(run);
  };
  std::vector<std::vector<T>> state(2, make(rows * hidden, 0.7f)),
      out(2, std::vector<T>(rows * hidden)), saved(2, std::vector<T>(rows * saved_per_row));
  const auto h_prev = state[0];
  runs([&](int run) {
    const StateForwardArgs args{cell, dtype, rows, hidden, x_part.data(), h_part.data(),
                                bias.data(), state[run].data(), out[run].data(),
                                state[run].data(), saved_per_row ? saved[run].data() : nullptr};
    run == 0 ? launch_state_emulated(args) : run_state_sequentially<T>(args);
  });
  check(same_bits(out[0], out[1]) && same_bits(state[0], state[1]) &&
            same_bits(saved[0], saved[1]),
        "state forward " + name);
  const auto grad_h = make(rows * hidden, 0.9f);
  std::vector<std::vector<T>> grad_state(2, make(rows * hidden, 0.2f)),
      input_side(2, std::vector<T>(rows * G)), recurrent_side(2, std::vector<T>(rows * G));
  const bool gru = cell == fusedlstm::StateCell::kGru;
  runs([&](int run) {
    const StateBackwardArgs args{
        cell, dtype, rows, hidden, grad_h.data(), grad_state[run].data(),
        saved_per_row ? saved[1].data() : nullptr, out[1].data(), h_prev.data(),
        input_side[run].data(), gru ? recurrent_side[run].data() : input_side[run].data(),
        gru ? grad_state[run].data() : nullptr};
    run == 0 ? launch_state_emulated(args) : run_state_sequentially<T>(args);
  });
  check(same_bits(input_side[0], input_side[1]) && same_bits(recurrent_side[0],
                                                               recurrent_side[1]) &&
            same_bits(grad_state[0], grad_state[1]),
        "state backward " + name);
}

#endif

#if FUSEDLSTM_SIMT_PLANT == 0 || FUSEDLSTM_SIMT_PLANT == 3

template <typename T>
std::vector<T> scaled_ramp(size_t n, float scale) {
  std::vector<T> values;
  for (float v : ramp(n, scale)) values.push_back(static_cast<T>(v / 11.0f));
  return values;
}

// How a persistent test runs its steps: the same per-unit code on this thread, or a kernel.
enum class Run { kSequential, kFmaKernel, kTensorCoreKernel };

template <typename T, typename Params>
bool launch_persistent_emulated(const Params& params, int64_t hidden, int64_t columns,
                                int64_t rows, int64_t slots, bool tensor_cores) {
  using fusedlstm::kernels::PersistentForwardParams;
  const auto geometry =
      std::is_same_v<Params, PersistentForwardParams>
          ? fusedlstm::kernels::persistent_forward_geometry(4, hidden, columns, rows, slots,
                                                            sizeof(T), tensor_cores)
          : fusedlstm::kernels::persistent_backward_geometry(4, hidden, rows, slots, sizeof(T),
                                                             tensor_cores);
  Params with_units = params;
  with_units.units_per_block = geometry.units_per_block;
  with_units.max_rows = rows;
  return fusedlstm::kernels::launch_persistent(
      with_units, c10::CppTypeToScalarType<T>::value, geometry,
      [](auto kernel, const auto& g, const auto& p) {
        return launch_cooperative(kernel, dim3(g.blocks), dim3(g.threads), g.shared_bytes, p);
      });
}

// The persistent forward over `steps` steps of a (rows, hidden) layer in `slots` blocks; returns
// the gates, c and every step's h.
template <typename T>
std::vector<std::vector<T>> persistent_forward(Run how, int64_t steps, int64_t rows,
                                               int64_t hidden, int64_t slots) {
  using fusedlstm::PointwiseForwardArgs;
  using fusedlstm::RecurrentStep;
  const int64_t G = 4 * hidden;
  const auto w_hh = scaled_ramp<T>(G * hidden, 0.5f);
  const auto h0 = scaled_ramp<T>(rows * hidden, 0.3f);
  auto gates = scaled_ramp<T>(steps * rows * G, 1.0f);
  auto c = scaled_ramp<T>(rows * hidden, 0.7f);
  std::vector<T> out(steps * rows * hidden);
  std::vector<RecurrentStep> list;
  for (int64_t t = 0; t < steps; ++t) {
    T* step_gates = gates.data() + t * rows * G;
    const PointwiseForwardArgs args{c10::CppTypeToScalarType<T>::value, rows, hidden,
                                    step_gates, nullptr, step_gates, c.data(), c.data(), nullptr,
                                    out.data() + t * rows * hidden, hidden, nullptr, 0};
    list.push_back({args, t ? out.data() + (t - 1) * rows * hidden : nullptr, hidden,
                    t ? rows : 0, h0.data(), hidden});
  }
  if (how != Run::kSequential) {
    const fusedlstm::kernels::PersistentForwardParams params{list.data(), steps, w_hh.data(),
                                                             hidden, hidden, 0, rows};
    check(launch_persistent_emulated<T>(params, hidden, hidden, rows, slots,
                                        how == Run::kTensorCoreKernel),
          "persistent forward launched");
    return {gates, c, out};
  }
  for (const RecurrentStep& step : list) {
    for (int64_t row = 0; row < rows; ++row) {
      const T* h_prev = (row < step.continuing ? static_cast<const T*>(step.h_prev) : h0.data()) +
                        row * hidden;
      for (int64_t j = 0; j < hidden; ++j) {
        float recurrent[4] = {0, 0, 0, 0};
        for (int64_t k = 0; k < hidden; ++k) {
          for (int gate = 0; gate < 4; ++gate) {
            recurrent[gate] += static_cast<float>(h_prev[k]) *
                               static_cast<float>(w_hh[(gate * hidden + j) * hidden + k]);
          }
        }
        fusedlstm::forward_units_adding<T, fusedlstm::ScalarLanes<T>>(step.pointwise, row, j,
                                                                      recurrent);
      }
    }
  }
  return {gates, c, out};
}

// The persistent backward the same way: dL/dh_t from the later step's gate gradients, then each
// unit's pointwise backward, and a last step that only carries dL/dh into h0. Returns the gate
// gradients, dL/dh and dL/dc.
template <typename T>
std::vector<std::vector<T>> persistent_backward(Run how, int64_t steps, int64_t rows,
                                                int64_t hidden, int64_t slots) {
  using fusedlstm::PointwiseBackwardArgs;
  using fusedlstm::RecurrentBackwardStep;
  const auto dtype = c10::CppTypeToScalarType<T>::value;
  const int64_t G = 4 * hidden;
  const int64_t units = rows * hidden;
  const auto w_hh = scaled_ramp<T>(G * hidden, 0.5f);
  const auto saved_gates = scaled_ramp<T>(steps * rows * G, 0.9f);
  const auto cells = scaled_ramp<T>(steps * units, 0.6f);
  const auto c0 = scaled_ramp<T>(units, 0.4f);
  const auto grad_out = scaled_ramp<T>(steps * units, 0.8f);
  std::vector<T> grad_gates(steps * rows * G);
  auto grad_h = scaled_ramp<T>(units, 0.2f);
  auto grad_c = scaled_ramp<T>(units, 0.3f);
  const PointwiseBackwardArgs no_rows{dtype, 0, hidden};
  std::vector<RecurrentBackwardStep> list;
  for (int64_t t = steps - 1; t >= 0; --t) {  // latest first
    const PointwiseBackwardArgs args{
        dtype, rows, hidden, grad_out.data() + t * units, hidden, grad_h.data(), hidden,
        grad_c.data(), grad_c.data(), saved_gates.data() + t * rows * G, cells.data() + t * units,
        t ? cells.data() + (t - 1) * units : c0.data(), grad_gates.data() + t * rows * G};
    list.push_back({t + 1 < steps ? grad_gates.data() + (t + 1) * rows * G : nullptr,
                    t + 1 < steps ? rows : 0, grad_h.data(), args, no_rows});
  }
  list.push_back({grad_gates.data(), rows, grad_h.data(), no_rows, no_rows});
  if (how != Run::kSequential) {
    const fusedlstm::kernels::PersistentBackwardParams params{
        list.data(), static_cast<int64_t>(list.size()), w_hh.data(), hidden, 0, rows};
    check(launch_persistent_emulated<T>(params, hidden, hidden, rows, slots,
                                        how == Run::kTensorCoreKernel),
          "persistent backward launched");
    return {grad_gates, grad_h, grad_c};
  }
  for (const RecurrentBackwardStep& step : list) {
    for (int64_t row = 0; row < step.gemm_rows; ++row) {
      for (int64_t j = 0; j < hidden; ++j) {
        float sum = 0;
        for (int64_t r = 0; r < G; ++r) {
          sum += static_cast<float>(static_cast<const T*>(step.grad_gates_next)[row * G + r]) *
                 static_cast<float>(w_hh[r * hidden + j]);
        }
        static_cast<T*>(step.grad_h_state)[row * hidden + j] = static_cast<T>(sum);
      }
    }
    for (int64_t row = 0; row < step.continuing.rows; ++row) {
      for (int64_t j = 0; j < hidden; ++j) {
        fusedlstm::backward_units<T, fusedlstm::ScalarLanes<T>>(step.continuing, row, j);
      }
    }
  }
  return {grad_gates, grad_h, grad_c};
}

// A kernel against the same per-unit code run step after step on this thread, in the kernel's
// summation order: equal bit for bit, so every step saw the whole h_{t-1} (or dgates_{t+1}).
// The tensor-core kernels on the emulated wmma sum in the same order, so they are bit-equal too.
template <typename T>
void test_persistent(Run how, int64_t steps, int64_t rows, int64_t hidden, int64_t slots) {
  const std::string name = std::string(how == Run::kTensorCoreKernel ? "tensor-core " : "") +
                           c10::toString(c10::CppTypeToScalarType<T>::value) + " steps " +
                           std::to_string(steps) + " rows " + std::to_string(rows) +
                           " hidden " + std::to_string(hidden) + " blocks " +
                           std::to_string(slots);
  const auto forward = persistent_forward<T>(how, steps, rows, hidden, slots);
  const auto forward_reference = persistent_forward<T>(Run::kSequential, steps, rows, hidden,
                                                       slots);
  bool equal = true;
  for (size_t i = 0; i < forward.size(); ++i) equal &= same_bits(forward[i], forward_reference[i]);
  check(equal, "persistent forward " + name);
  const auto backward = persistent_backward<T>(how, steps, rows, hidden, slots);
  const auto backward_reference = persistent_backward<T>(Run::kSequential, steps, rows, hidden,
                                                         slots);
  equal = true;
  for (size_t i = 0; i < backward.size(); ++i) {
    equal &= same_bits(backward[i], backward_reference[i]);
  }
  check(equal, "persistent backward " + name);
}

// A GRU / RNN persistent kernel's launch on the emulation, its geometry for `how`.
template <typename T, typename Params>
bool launch_persistent_state_emulated(const Params& params, bool backward, int64_t rows,
                                      int64_t slots, Run how) {
  const int64_t gates = fusedlstm::state_cell_gates(params.cell);
  const auto geometry = fusedlstm::kernels::persistent_state_geometry(
      gates, params.hidden, rows, slots, sizeof(T), backward, how == Run::kTensorCoreKernel);
  Params with_units = params;
  with_units.units_per_block = geometry.units_per_block;
  with_units.max_rows = rows;
  return fusedlstm::kernels::launch_persistent_state(
      with_units, c10::CppTypeToScalarType<T>::value, geometry,
      [](auto k, const auto& g, const auto& p) {
        return launch_cooperative(k, dim3(g.blocks), dim3(g.threads), g.shared_bytes, p);
      });
}

// The GRU's / RNN's persistent forward (persistent_state_kernels.cuh) the same way: the kernel
// against its per-unit code run step after step on this thread, in the kernel's summation order
// (the FMA kernel: b_hh, then k; the tensor-core one: k, then b_hh), so equal bit for bit.
// Returns the saved values and every step's h.
template <typename T>
std::vector<std::vector<T>> persistent_state_forward(fusedlstm::StateCell cell, Run how,
                                                     int64_t steps, int64_t rows,
                                                     int64_t hidden, int64_t slots,
                                                     bool bias_last = false) {
  using fusedlstm::StateRecurrentStep;
  const auto dtype = c10::CppTypeToScalarType<T>::value;
  const int64_t gates = fusedlstm::state_cell_gates(cell);
  const int64_t G = gates * hidden;
  const int64_t saved_per_row = fusedlstm::state_cell_saved(cell) * hidden;
  const auto w_hh = scaled_ramp<T>(G * hidden, 0.5f);
  const auto bias = scaled_ramp<T>(G, 0.4f);
  const auto h0 = scaled_ramp<T>(rows * hidden, 0.3f);
  const auto x_part = scaled_ramp<T>(steps * rows * G, 1.0f);
  std::vector<T> saved(std::max<int64_t>(1, steps * rows * saved_per_row));
  std::vector<T> out(steps * rows * hidden);
  std::vector<StateRecurrentStep> list;
  for (int64_t t = 0; t < steps; ++t) {
    const fusedlstm::StateForwardArgs args{
        cell, dtype, rows, hidden, x_part.data() + t * rows * G, nullptr, nullptr, nullptr,
        out.data() + t * rows * hidden, nullptr,
        saved_per_row ? saved.data() + t * rows * saved_per_row : nullptr};
    list.push_back({args, t ? out.data() + (t - 1) * rows * hidden : nullptr, t ? rows : 0,
                    h0.data()});
  }
  if (how != Run::kSequential) {
    const fusedlstm::kernels::PersistentStateForwardParams params{
        list.data(), steps, cell, w_hh.data(), bias.data(), hidden, 0, rows};
    check(launch_persistent_state_emulated<T>(params, /*backward=*/false, rows, slots, how),
          "persistent GRU / RNN forward launched");
    return {saved, out};
  }
  fusedlstm::with_state_cell(cell, [&](auto math) {
    using Lanes = fusedlstm::ScalarLanes<T>;
    for (const StateRecurrentStep& step : list) {
      for (int64_t row = 0; row < rows; ++row) {
        const T* h_prev =
            (row < step.continuing ? static_cast<const T*>(step.h_prev) : h0.data()) +
            row * hidden;
        for (int64_t j = 0; j < hidden; ++j) {
          typename Lanes::Compute sums[3];
          for (int64_t g = 0; g < gates; ++g) {
            using Compute = typename Lanes::Compute;
            sums[g] = bias_last ? Compute(0) : static_cast<Compute>(bias[g * hidden + j]);
          }
          for (int64_t k = 0; k < hidden; ++k) {
            for (int64_t g = 0; g < gates; ++g) {
              sums[g] += static_cast<typename Lanes::Compute>(h_prev[k]) *
                         static_cast<typename Lanes::Compute>(w_hh[(g * hidden + j) * hidden + k]);
            }
          }
          for (int64_t g = 0; g < gates && bias_last; ++g) sums[g] += bias[g * hidden + j];
          fusedlstm::state_forward_from_sums<decltype(math), T, Lanes>(
              step.state, row, j, sums, static_cast<typename Lanes::Compute>(h_prev[j]));
        }
      }
    }
  });
  return {saved, out};
}

// The GRU's / RNN's persistent backward the same way: per step dL/dh_t from the later step's
// recurrent-side gradients (plus the GRU's direct part), then each unit's pointwise backward, and
// a last step that only carries dL/dh into h0. Returns both sides' gradients and dL/dh.
template <typename T>
std::vector<std::vector<T>> persistent_state_backward(fusedlstm::StateCell cell, Run how,
                                                      int64_t steps, int64_t rows,
                                                      int64_t hidden, int64_t slots) {
  using fusedlstm::StateRecurrentBackwardStep;
  using Compute = typename fusedlstm::ScalarLanes<T>::Compute;
  const auto dtype = c10::CppTypeToScalarType<T>::value;
  const int64_t gates = fusedlstm::state_cell_gates(cell);
  const int64_t G = gates * hidden;
  const int64_t units = rows * hidden;
  const int64_t saved_per_row = fusedlstm::state_cell_saved(cell) * hidden;
  const bool direct = cell == fusedlstm::StateCell::kGru;
  const auto w_hh = scaled_ramp<T>(G * hidden, 0.5f);
  const auto saved = scaled_ramp<T>(std::max<int64_t>(1, steps * rows * saved_per_row), 0.9f);
  const auto h_out = scaled_ramp<T>(steps * units, 0.6f);
  const auto h_prev = scaled_ramp<T>(steps * units, 0.4f);
  const auto grad_out = scaled_ramp<T>(steps * units, 0.8f);
  std::vector<T> input_side(steps * rows * G), recurrent_side(steps * rows * G);
  T* sides = direct ? recurrent_side.data() : input_side.data();  // the RNN's are one
  auto grad_h = scaled_ramp<T>(units, 0.2f);
  std::vector<StateRecurrentBackwardStep> list;
  for (int64_t t = steps - 1; t >= 0; --t) {  // latest first
    const fusedlstm::StateBackwardArgs args{
        cell, dtype, rows, hidden, grad_out.data() + t * units, grad_h.data(),
        saved_per_row ? saved.data() + t * rows * saved_per_row : nullptr,
        h_out.data() + t * units, h_prev.data() + t * units, input_side.data() + t * rows * G,
        sides + t * rows * G, direct ? grad_h.data() : nullptr};
    list.push_back({t + 1 < steps ? sides + (t + 1) * rows * G : nullptr,
                    t + 1 < steps ? rows : 0, grad_h.data(), args});
  }
  fusedlstm::StateBackwardArgs no_rows{};
  no_rows.rows = 0;
  list.push_back({sides, rows, grad_h.data(), no_rows});
  if (how != Run::kSequential) {
    const fusedlstm::kernels::PersistentStateBackwardParams params{
        list.data(), static_cast<int64_t>(list.size()), cell, w_hh.data(), hidden, 0, rows};
    check(launch_persistent_state_emulated<T>(params, /*backward=*/true, rows, slots, how),
          "persistent GRU / RNN backward launched");
    return {input_side, recurrent_side, grad_h};
  }
  fusedlstm::with_state_cell(cell, [&](auto math) {
    for (const StateRecurrentBackwardStep& step : list) {
      for (int64_t row = 0; row < step.gemm_rows; ++row) {
        for (int64_t j = 0; j < hidden; ++j) {
          const T* next = static_cast<const T*>(step.grad_recurrent_next) + row * G;
          Compute sum = 0;
          for (int64_t r = 0; r < G; ++r) {
            sum += static_cast<Compute>(next[r]) * static_cast<Compute>(w_hh[r * hidden + j]);
          }
          if (direct) sum += static_cast<Compute>(grad_h[row * hidden + j]);
          grad_h[row * hidden + j] = static_cast<T>(sum);
        }
      }
      for (int64_t row = 0; row < step.state.rows; ++row) {
        for (int64_t j = 0; j < hidden; ++j) {
          fusedlstm::state_backward_units<decltype(math), T, fusedlstm::ScalarLanes<T>>(
              step.state, row, j);
        }
      }
    }
  });
  return {input_side, recurrent_side, grad_h};
}

template <typename T>
void test_persistent_state(Run how, fusedlstm::StateCell cell, int64_t steps, int64_t rows,
                           int64_t hidden, int64_t slots) {
  const std::string name = std::string(how == Run::kTensorCoreKernel ? "tensor-core " : "") +
                           "of cell " + std::to_string(static_cast<int>(cell)) + " " +
                           c10::toString(c10::CppTypeToScalarType<T>::value) + " rows " +
                           std::to_string(rows) + " hidden " + std::to_string(hidden);
  const bool bias_last = how == Run::kTensorCoreKernel;
  const auto kernel = persistent_state_forward<T>(cell, how, steps, rows, hidden, slots);
  const auto reference =
      persistent_state_forward<T>(cell, Run::kSequential, steps, rows, hidden, slots, bias_last);
  bool equal = true;
  for (size_t i = 0; i < kernel.size(); ++i) equal &= same_bits(kernel[i], reference[i]);
  check(equal, "persistent forward " + name);
  const auto backward = persistent_state_backward<T>(cell, how, steps, rows, hidden, slots);
  const auto backward_reference =
      persistent_state_backward<T>(cell, Run::kSequential, steps, rows, hidden, slots);
  equal = true;
  for (size_t i = 0; i < backward.size(); ++i) {
    equal &= same_bits(backward[i], backward_reference[i]);
  }
  check(equal, "persistent backward " + name);
}

#endif

void run(const char* name, const std::function<void()>& test) {
  const int before = failures;
  try {
    test();
  } catch (const std::exception& error) {
    ++failures;
    std::printf("FAIL %s: %s\n", name, error.what());
  }
  if (failures == before) ++passes;
  std::printf("%s %s\n", failures == before ? "ok  " : "FAIL", name);
}

}  // namespace

int main() {
  run("block barrier and shared memory", test_block_barrier_and_shared_memory);
  run("grid barrier", test_grid_barrier);
#if FUSEDLSTM_SIMT_PLANT == 0
  run("warp shuffles and votes", test_warp_shuffles_and_votes);
  run("atomics with a partial warp", test_atomics_with_a_partial_warp);
  run("refusals", test_refusals);
  run("pointwise kernels float32", [] {
    test_pointwise_kernels<float>(1, 1, c10::kFloat);
    test_pointwise_kernels<float>(3, 37, c10::kFloat);
    test_pointwise_kernels<float>(5, 300, c10::kFloat);  // 6 blocks: two waves of resident blocks
  });
  run("pointwise kernels float64", [] { test_pointwise_kernels<double>(3, 37, c10::kDouble); });
  run("pointwise kernels float16", [] { test_pointwise_kernels<c10::Half>(3, 37, c10::kHalf); });
  run("pointwise kernels bfloat16",
      [] { test_pointwise_kernels<c10::BFloat16>(3, 37, c10::kBFloat16); });
  run("GRU and RNN kernels", [] {
    using fusedlstm::StateCell;
    for (const StateCell cell : {StateCell::kGru, StateCell::kRnnTanh, StateCell::kRnnRelu}) {
      test_state_kernels<float>(cell, 5, 300, c10::kFloat);  // 6 blocks
      test_state_kernels<double>(cell, 3, 37, c10::kDouble);
      test_state_kernels<c10::BFloat16>(cell, 3, 37, c10::kBFloat16);
    }
  });
#endif
#if FUSEDLSTM_SIMT_PLANT == 0 || FUSEDLSTM_SIMT_PLANT == 3
  run("persistent kernels float32", [] {
    test_persistent<float>(Run::kFmaKernel, 4, 3, 13, 4);
    test_persistent<float>(Run::kFmaKernel, 3, 1, 8, 8);  // one unit per block
  });
  run("persistent kernels bfloat16", [] {
    test_persistent<c10::BFloat16>(Run::kFmaKernel, 3, 3, 13, 4);
  });
  run("persistent kernels on tensor cores (emulated wmma)", [] {
    test_persistent<c10::Half>(Run::kTensorCoreKernel, 3, 3, 13, 4);
    test_persistent<c10::BFloat16>(Run::kTensorCoreKernel, 3, 17, 70, 2);  // 2 row tiles, 2 chunks
  });
  run("persistent GRU and RNN forward and backward", [] {
    using fusedlstm::StateCell;
    for (const StateCell cell : {StateCell::kGru, StateCell::kRnnTanh, StateCell::kRnnRelu}) {
      test_persistent_state<float>(Run::kFmaKernel, cell, 4, 3, 13, 4);
      // one or two units per block
      test_persistent_state<c10::BFloat16>(Run::kFmaKernel, cell, 3, 2, 9, 8);
    }
  });
  run("persistent GRU and RNN kernels on tensor cores (emulated wmma)", [] {
    using fusedlstm::StateCell;
    for (const StateCell cell : {StateCell::kGru, StateCell::kRnnTanh, StateCell::kRnnRelu}) {
      test_persistent_state<c10::Half>(Run::kTensorCoreKernel, cell, 3, 3, 13, 4);
      // 2 row tiles; the GRU's 3H = 270 gate rows: 2 backward chunks
      test_persistent_state<c10::BFloat16>(Run::kTensorCoreKernel, cell, 3, 17, 90, 2);
    }
  });
#endif
  std::printf("%d passed, %d failed\n", passes, failures);
  return failures == 0 ? 0 : 1;
}
