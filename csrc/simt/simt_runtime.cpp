// The SIMT emulation's runtime (fusedlstm/simt/simt.h): a pool of OS threads that run the
// emulated CUDA threads of a launch, and the barriers of blocks, warps and cooperative grids.
//
// Every synchronisation goes through std::mutex / std::condition_variable or std::atomic, which
// ThreadSanitizer understands: two emulated threads that touch the same memory without a
// barrier, shuffle or atomic between them are a race it reports.
#include <fusedlstm/simt/simt.h>

#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <semaphore>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace fusedlstm::simt {
namespace {

// Threads of a non-cooperative launch that run at once (a few blocks), and the cooperative limit:
// far below ThreadSanitizer's thread limit (8128) on purpose.
constexpr int64_t kResidentThreads = 1024;
constexpr int64_t kCooperativeThreads = 4096;

// A barrier over the participants still running: one that returns drops out, as an exited CUDA
// thread no longer counts for __syncthreads().
class Barrier {
 public:
  explicit Barrier(int64_t participants) : expected_(participants) {}

  void arrive_and_wait() {
    std::unique_lock lock(mutex_);
    const uint64_t generation = generation_;
    if (++arrived_ == expected_) return release(lock);
    changed_.wait(lock, [&] { return generation_ != generation; });
  }

  void drop() {
    std::unique_lock lock(mutex_);
    --expected_;
    if (arrived_ > 0 && arrived_ == expected_) release(lock);
  }

 private:
  void release(std::unique_lock<std::mutex>& /*held*/) {
    arrived_ = 0;
    ++generation_;
    changed_.notify_all();
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  int64_t expected_;
  int64_t arrived_ = 0;
  uint64_t generation_ = 0;
};

// A warp's rounds (shuffles, votes, __syncwarp). Values are double-buffered by round parity: a
// lane can only write round r + 2's buffer after every lane has read round r.
struct Warp {
  std::mutex mutex;
  std::condition_variable changed;
  unsigned live = 0;
  int arrived = 0;
  uint64_t round = 0;
  unsigned masks[warpSize] = {};
  std::array<uint64_t, warpSize> values[2] = {};
  bool consistent[2] = {true, true};

  void complete_round() {
    bool same = true;
    for (int lane = 0; lane < warpSize; ++lane) {
      if ((live >> lane) & 1u) same = same && masks[lane] == live;
    }
    consistent[round & 1] = same;
    arrived = 0;
    ++round;
    changed.notify_all();
  }
};

struct Launch {
  bool cooperative = false;
  std::unique_ptr<Barrier> grid_barrier;
  std::mutex error_mutex;
  std::string error;
};

struct alignas(16) SharedChunk {
  unsigned char bytes[16];
};

struct Block {
  Block(int64_t threads, size_t shared_bytes)
      : barrier(threads), shared((shared_bytes + 15) / 16), warps((threads + warpSize - 1) / warpSize) {
    if (!shared.empty()) std::memset(shared.data(), 0xFF, shared.size() * sizeof(SharedChunk));
    for (int64_t w = 0; w < static_cast<int64_t>(warps.size()); ++w) {
      const int64_t lanes = std::min<int64_t>(warpSize, threads - w * warpSize);
      warps[w].live = lanes == warpSize ? 0xffffffffu : (1u << lanes) - 1;
    }
  }
  Barrier barrier;
  std::vector<SharedChunk> shared;
  std::vector<Warp> warps;
};

struct ThreadState {
  Launch* launch = nullptr;
  Block* block = nullptr;
  Warp* warp = nullptr;
  int lane = 0;
};
thread_local ThreadState current;

// What kernel_error() throws to unwind one emulated thread.
struct KernelExit {};

Launch& current_launch() {
  if (current.launch == nullptr) {
    throw std::logic_error("fusedlstm simt: a device function was called outside a launch");
  }
  return *current.launch;
}

// Persistent OS threads; run(n, body) runs body(0..n-1) on n of them at once and waits.
class Workers {
 public:
  static Workers& instance() {
    static Workers workers;
    return workers;
  }

  void run(int64_t count, const std::function<void(int64_t)>& body) {
    if (owner_ != getpid()) abandon_inherited();  // a forked child has none of the threads
    while (static_cast<int64_t>(workers_.size()) < count) spawn();
    body_ = &body;
    remaining_.store(count, std::memory_order_relaxed);
    for (int64_t i = 0; i < count; ++i) workers_[i]->start.release();
    done_.acquire();
  }

  ~Workers() {
    if (owner_ != getpid()) return;
    stopping_ = true;
    for (auto& worker : workers_) worker->start.release();
    for (auto& worker : workers_) worker->thread.join();
  }

 private:
  struct Worker {
    std::binary_semaphore start{0};
    std::thread thread;
  };

  void spawn() {
    const int64_t index = static_cast<int64_t>(workers_.size());
    auto worker = std::make_unique<Worker>();
    Worker* self = worker.get();
    worker->thread = std::thread([this, self, index] {
      for (;;) {
        self->start.acquire();
        if (stopping_) return;
        (*body_)(index);
        if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) done_.release();
      }
    });
    workers_.push_back(std::move(worker));
  }

  void abandon_inherited() {
    for (auto& worker : workers_) worker.release();  // their threads exist only in the parent
    workers_.clear();
    owner_ = getpid();
  }

  pid_t owner_ = getpid();
  std::vector<std::unique_ptr<Worker>> workers_;
  const std::function<void(int64_t)>* body_ = nullptr;
  std::atomic<int64_t> remaining_{0};
  std::binary_semaphore done_{0};
  bool stopping_ = false;
};

std::mutex& launch_mutex() {
  static std::mutex mutex;
  return mutex;
}
std::atomic<int64_t> launches{0};

int64_t volume(dim3 d) { return int64_t{d.x} * d.y * d.z; }

void check_config(dim3 grid, dim3 block, size_t shared_bytes) {
  if (volume(grid) <= 0 || volume(block) <= 0) {
    throw std::invalid_argument("fusedlstm simt: invalid configuration (an empty grid or block)");
  }
  if (volume(block) > kMaxThreadsPerBlock || block.z > 64) {
    throw std::invalid_argument("fusedlstm simt: invalid configuration: " +
                                std::to_string(volume(block)) + " threads per block, at most " +
                                std::to_string(kMaxThreadsPerBlock));
  }
  if (grid.y > 65535 || grid.z > 65535) {
    throw std::invalid_argument("fusedlstm simt: invalid configuration: gridDim.y/z above 65535");
  }
  if (shared_bytes > kMaxDynamicSharedBytes) {
    throw std::invalid_argument("fusedlstm simt: " + std::to_string(shared_bytes) +
                                " bytes of dynamic shared memory, at most " +
                                std::to_string(kMaxDynamicSharedBytes));
  }
}

uint3 unflatten(int64_t index, dim3 extent) {
  return uint3(static_cast<unsigned>(index % extent.x),
               static_cast<unsigned>(index / extent.x % extent.y),
               static_cast<unsigned>(index / (int64_t{extent.x} * extent.y)));
}

void leave(Warp& warp, int lane) {
  std::unique_lock lock(warp.mutex);
  warp.live &= ~(1u << lane);
  if (warp.arrived > 0 && warp.arrived == __builtin_popcount(warp.live)) warp.complete_round();
}

// One emulated thread: thread `thread` of block `block_index`, its block state `block`.
void run_thread(Launch& launch, Block& block, int64_t block_index, int64_t thread, dim3 grid,
                dim3 block_dim, const std::function<void()>& body) {
  threadIdx = unflatten(thread, block_dim);
  blockIdx = unflatten(block_index, grid);
  blockDim = block_dim;
  gridDim = grid;
  current = {&launch, &block, &block.warps[thread / warpSize], static_cast<int>(thread % warpSize)};
  try {
    body();
  } catch (const KernelExit&) {
  } catch (const std::exception& error) {
    std::lock_guard lock(launch.error_mutex);
    if (launch.error.empty()) launch.error = error.what();
  }
  block.barrier.drop();
  leave(*current.warp, current.lane);
  if (launch.grid_barrier) launch.grid_barrier->drop();
  current = {};
}

}  // namespace

void kernel_error(const char* message) {
  Launch& launch = current_launch();
  {
    std::lock_guard lock(launch.error_mutex);
    if (launch.error.empty()) {
      launch.error = std::string("fusedlstm simt: block (") + std::to_string(blockIdx.x) + "," +
                     std::to_string(blockIdx.y) + "," + std::to_string(blockIdx.z) +
                     ") thread (" + std::to_string(threadIdx.x) + "," +
                     std::to_string(threadIdx.y) + "," + std::to_string(threadIdx.z) + "): " +
                     message;
    }
  }
  throw KernelExit{};
}

void sync_block() {
  current_launch();
  current.block->barrier.arrive_and_wait();
}

void sync_grid() {
  Launch& launch = current_launch();
  if (!launch.cooperative) kernel_error("grid.sync() in a launch that is not cooperative");
  launch.grid_barrier->arrive_and_wait();
}

unsigned char* dynamic_shared_memory() {
  current_launch();
  return current.block->shared.empty() ? nullptr : current.block->shared.data()->bytes;
}

std::array<uint64_t, warpSize> warp_round(unsigned mask, uint64_t value, const char* what) {
  current_launch();
  Warp& warp = *current.warp;
  const int lane = current.lane;
  std::unique_lock lock(warp.mutex);
  if (mask != warp.live) {
    char message[160];
    std::snprintf(message, sizeof message,
                  "%s with mask 0x%08x, but the warp's live lanes are 0x%08x (the emulation "
                  "needs every live lane of the warp in the mask)",
                  what, mask, warp.live);
    lock.unlock();
    kernel_error(message);
  }
  const uint64_t round = warp.round;
  const int buffer = static_cast<int>(round & 1);
  warp.values[buffer][lane] = value;
  warp.masks[lane] = mask;
  if (++warp.arrived == __builtin_popcount(warp.live)) {
    warp.complete_round();
  } else {
    warp.changed.wait(lock, [&] { return warp.round != round; });
  }
  if (!warp.consistent[buffer]) {
    lock.unlock();
    kernel_error("the lanes of a warp reached a shuffle/vote/__syncwarp with different masks, "
                 "or a lane named in the mask exited");
  }
  return warp.values[buffer];
}

bool launch_body(dim3 grid, dim3 block, size_t shared_bytes, bool cooperative,
                 const std::function<void()>& body) {
  check_config(grid, block, shared_bytes);
  const int64_t threads_per_block = volume(block);
  const int64_t blocks = volume(grid);
  if (cooperative && blocks * threads_per_block > kCooperativeThreads) return false;

  std::lock_guard one_launch_at_a_time(launch_mutex());
  launches.fetch_add(1, std::memory_order_relaxed);
  Launch launch;
  launch.cooperative = cooperative;
  const int64_t wave =
      cooperative ? blocks : std::max<int64_t>(1, kResidentThreads / threads_per_block);
  for (int64_t first = 0; first < blocks; first += wave) {
    const int64_t count = std::min(wave, blocks - first);
    std::vector<std::unique_ptr<Block>> states;
    for (int64_t b = 0; b < count; ++b) {
      states.push_back(std::make_unique<Block>(threads_per_block, shared_bytes));
    }
    if (cooperative) launch.grid_barrier = std::make_unique<Barrier>(count * threads_per_block);
    Workers::instance().run(count * threads_per_block, [&](int64_t i) {
      const int64_t b = i / threads_per_block;
      run_thread(launch, *states[b], first + b, i % threads_per_block, grid, block, body);
    });
  }
  if (!launch.error.empty()) throw std::runtime_error(launch.error);
  return true;
}

int64_t max_cooperative_threads() { return kCooperativeThreads; }

int64_t launch_count() { return launches.load(std::memory_order_relaxed); }

}  // namespace fusedlstm::simt
