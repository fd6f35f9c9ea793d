#include "buffer_pool.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <c10/util/accumulate.h>

#include <pthread.h>

#include <map>
#include <mutex>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUSEDLSTM_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define FUSEDLSTM_ASAN 1
#endif

namespace fusedlstm::cpu {

namespace {

struct Block {
  void* data;
  int64_t bytes;
};

// Free blocks by size; a request takes the smallest one that fits and wastes at most a quarter.
class BufferPool final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    const int64_t want = std::max<int64_t>(
        kPooledGranule,
        (static_cast<int64_t>(n) + kPooledGranule - 1) / kPooledGranule * kPooledGranule);
    Block* block = take(want);
    if (block == nullptr) block = new Block{c10::alloc_cpu(static_cast<size_t>(want)), want};
    return {block->data, block, &BufferPool::give_back, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  void lock() { mutex_.lock(); }
  void unlock() { mutex_.unlock(); }

  int64_t cached_bytes() {
    const std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

  int64_t release_all() {
    const std::lock_guard<std::mutex> lock(mutex_);
    const int64_t released = cached_;
    for (auto& entry : free_) destroy(entry.second);
    free_.clear();
    cached_ = 0;
    return released;
  }

 private:
  Block* take(int64_t want) {
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto found = free_.lower_bound(want);
    if (found == free_.end() || found->first > want + want / 4) return nullptr;
    Block* block = found->second;
    free_.erase(found);
    cached_ -= block->bytes;
    return block;
  }

  // A tensor's storage died: keep its block, making room by freeing the largest cached ones.
  void put(Block* block) {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (block->bytes > kPooledCacheBytes) {
      destroy(block);
      return;
    }
    while (cached_ + block->bytes > kPooledCacheBytes) {
      const auto largest = std::prev(free_.end());
      cached_ -= largest->first;
      destroy(largest->second);
      free_.erase(largest);
    }
    free_.emplace(block->bytes, block);
    cached_ += block->bytes;
  }

  static void destroy(Block* block) {
    c10::free_cpu(block->data);
    delete block;
  }

  static void give_back(void* context);

  std::mutex mutex_;
  std::multimap<int64_t, Block*> free_;
  int64_t cached_ = 0;
};

// Never destroyed: tensors from it may be freed during interpreter shutdown.
BufferPool& pool() {
  static BufferPool* const instance = [] {
    auto* created = new BufferPool();
    // A fork while another thread holds the lock would leave it held forever in the child (a
    // DataLoader worker, say): hold it across fork, release it on both sides.
    pthread_atfork([] { pool().lock(); }, [] { pool().unlock(); }, [] { pool().unlock(); });
    return created;
  }();
  return *instance;
}

void BufferPool::give_back(void* context) { pool().put(static_cast<Block*>(context)); }

}  // namespace

bool pool_enabled() {
#if defined(FUSEDLSTM_ASAN)
  return false;
#else
  return true;
#endif
}

at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  const at::ScalarType dtype = c10::typeMetaToScalarType(options.dtype());
  const int64_t bytes =
      c10::multiply_integers(sizes) * static_cast<int64_t>(c10::elementSize(dtype));
  if (!pool_enabled() || bytes < kPooledMinBytes || !options.device().is_cpu()) {
    return at::empty(sizes, options);
  }
  return at::detail::empty_generic(sizes, &pool(), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   dtype, std::nullopt);
}

int64_t pooled_cached_bytes() { return pool().cached_bytes(); }

int64_t release_pooled_buffers() { return pool().release_all(); }

}  // namespace fusedlstm::cpu

