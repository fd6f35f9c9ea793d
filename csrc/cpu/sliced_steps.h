// How the CPU's fused steps share a sequence's steps among threads: each thread owns a fixed
// share of a step's blocks of units (and rows) for all steps, and a step starts once every share
// has finished the one before it (one shared counter, no fork/join per step). Used by the LSTM's
// (fused_step.cpp) and the GRU's and RNN's (fused_state_step.cpp) fused steps.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <thread>

#include "pointwise_cpu.h"

namespace fusedlstm::cpu {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins while other slices finish their step (a few microseconds at most), then yields, so an
// oversubscribed machine still makes progress.
inline void wait_until(const std::atomic<int64_t>& counter, int64_t target) {
  constexpr int kSpinsBeforeYield = 4096;
  for (int spins = 0; counter.load(std::memory_order_acquire) < target; ++spins) {
    if (spins < kSpinsBeforeYield) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

// Part of a step: blocks [block_begin, block_end) of rows [row_begin, row_end) (row_end may pass
// the step's rows: the caller intersects).
struct SliceWork {
  int64_t block_begin;
  int64_t block_end;
  int64_t row_begin;
  int64_t row_end;
};

// Rows per share of a slice's work: the fused tiles' row packs (kLockstep rows, in the
// capability headers).
constexpr int64_t kRowGroup = 4;

// Calls fn(SliceWork) for the work of slices [begin, end) of `slices`, equal shares of blocks x
// row_groups (block-major): whole blocks where a share covers them, else part of a block's rows.
// Splitting inside a block keeps odd block counts balanced (13 blocks on 2 threads: 32 and 33
// block-row groups instead of 7 and 6 blocks).
template <class Fn>
inline void for_each_piece(int64_t blocks, int64_t row_groups, int64_t slices, int64_t begin,
                    int64_t end, const Fn& fn) {
  const int64_t total = blocks * row_groups;
  const int64_t hi = total * end / slices;
  for (int64_t w = total * begin / slices; w < hi;) {
    const int64_t block = w / row_groups;
    const int64_t group = w % row_groups;
    if (group == 0 && hi - w >= row_groups) {
      const int64_t whole = (hi - w) / row_groups;
      fn(SliceWork{block, block + whole, 0, std::numeric_limits<int64_t>::max()});
      w += whole * row_groups;
    } else {
      const int64_t last = std::min(hi, (block + 1) * row_groups);
      const int64_t row_end = last == (block + 1) * row_groups
                                  ? std::numeric_limits<int64_t>::max()
                                  : (last - block * row_groups) * kRowGroup;
      fn(SliceWork{block, block + 1, group * kRowGroup, row_end});
      w = last;
    }
  }
}

// Runs run_step(i, work) for steps i = 0..count-1 over `blocks` blocks x `row_groups` groups of
// rows split into `slices`, each slice on its own thread for all steps (the same share every
// step). `done` counts finished (step, slice) pairs: step i may start once done >= i * slices.
// Each parallel_for call owns the slices [begin, end) for every step, however OpenMP sized the
// team. ahead(i, work) is the part of step i that does not depend on step i - 1 (the input
// projection): a slice runs it right after finishing step i - 1 and before waiting for the
// other slices, so it hides that wait.
template <class RunStep, class Ahead>
inline void run_sliced(int64_t count, int64_t blocks, int64_t row_groups, int64_t slices,
                const RunStep& run_step, const Ahead& ahead) {
  const SliceWork all{0, blocks, 0, std::numeric_limits<int64_t>::max()};
  if (slices <= 1) {
    for (int64_t i = 0; i < count; ++i) {
      ahead(i, all);
      run_step(i, all);
    }
    return;
  }
  std::atomic<int64_t> done{0};
  at::parallel_for(0, slices, 1, [&](int64_t begin, int64_t end) {
    const auto each_piece = [&](const auto& fn) {
      for_each_piece(blocks, row_groups, slices, begin, end, fn);
    };
    if (count > 0) each_piece([&](const SliceWork& work) { ahead(0, work); });
    for (int64_t i = 0; i < count; ++i) {
      if (i > 0) wait_until(done, i * slices);
      each_piece([&](const SliceWork& work) { run_step(i, work); });
      done.fetch_add(end - begin, std::memory_order_acq_rel);
      if (i + 1 < count) each_piece([&](const SliceWork& work) { ahead(i + 1, work); });
    }
  });
}

template <class RunStep>
inline void run_sliced(int64_t count, int64_t blocks, int64_t slices, const RunStep& run_step) {
  run_sliced(count, blocks, /*row_groups=*/1, slices, run_step,
             [](int64_t, const SliceWork&) {});
}

// A fused forward step's schedule over `slices` threads (the LSTM's and the GRU's / RNN's):
// run_parts(i, work, parts) runs step i's kFusedRecurrentPart, and with input fusion its
// kFusedInputPart ahead of the wait for the other slices. A slice's input part of step i + 1
// writes only its own share's columns, which its own step i has finished reading (the shares
// are the same every step). Rows are shared in groups of kRowGroup.
template <class RunParts>
void run_fused_forward(int64_t count, int64_t blocks, int64_t max_rows, int64_t slices,
                       bool fuses_input, const RunParts& run_parts) {
  const int64_t row_groups = (max_rows + kRowGroup - 1) / kRowGroup;
  run_sliced(
      count, blocks, std::max<int64_t>(1, row_groups), slices,
      [&](int64_t i, const SliceWork& work) { run_parts(i, work, kFusedRecurrentPart); },
      [&](int64_t i, const SliceWork& work) {
        if (fuses_input) run_parts(i, work, kFusedInputPart);
      });
}

}  // namespace fusedlstm::cpu
