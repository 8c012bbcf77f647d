// The caching allocator of device memory: freed blocks kept by (rounded)
// size and handed out again. Chapter 11 (docs/11-cuda.md, "Tensors on the
// device"); declared in attend/device_allocator.hpp. Plain C++ on top of
// device_allocate / device_free, the same in both builds.
#include "attend/device_allocator.hpp"

#include <cstring>
#include <map>
#include <mutex>
#include <utility>

#include "attend/error.hpp"
#include "attend/gpu_kernels.hpp"

namespace attend::kernels {

namespace {

size_t rounded(size_t bytes) {
  return (bytes + kDeviceBlockRounding - 1) / kDeviceBlockRounding * kDeviceBlockRounding;
}

struct CachingAllocator {
  std::mutex mutex;  // tensors may die on any thread
  std::multimap<size_t, void*> cached;  // rounded size -> free block
  DeviceMemoryStats stats;

  void* allocate(size_t bytes) {
    const size_t size = rounded(bytes);
    std::lock_guard<std::mutex> lock(mutex);
    void* pointer = nullptr;
    if (auto it = cached.find(size); it != cached.end()) {  // the common case after a first step
      pointer = it->second;
      cached.erase(it);
      stats.bytes_cached -= size;
      ++stats.reuses;
#ifndef ATTEND_CUDA
      // The emulator's fresh device memory is NaN, so that an element a
      // kernel forgot to write shows; a reused block is made NaN again.
      std::memset(pointer, 0xFF, size);
#endif
    } else {
      try {
        pointer = device_allocate(size);
      } catch (const Error&) {  // out of memory: give the cache back and try once more
        release_cached();
        pointer = device_allocate(size);
      }
      ++stats.device_allocations;
    }
    stats.bytes_in_use += size;
    if (stats.bytes_in_use > stats.peak_bytes_in_use) stats.peak_bytes_in_use = stats.bytes_in_use;
    return pointer;
  }

  void free(void* pointer, size_t bytes) {
    const size_t size = rounded(bytes);
    std::lock_guard<std::mutex> lock(mutex);
    cached.emplace(size, pointer);
    stats.bytes_in_use -= size;
    stats.bytes_cached += size;
  }

  void release_cached() {  // with the mutex held
    for (const auto& [size, pointer] : cached) device_free(pointer);
    cached.clear();
    stats.bytes_cached = 0;
  }
};

// Never destroyed: a tensor that dies during the program's exit (a static)
// may still hand its block back after every destructor of this file has run.
CachingAllocator& allocator() {
  static CachingAllocator* instance = new CachingAllocator;
  return *instance;
}

}  // namespace

DeviceBlock::DeviceBlock(size_t bytes)
    : pointer_(bytes == 0 ? nullptr : allocator().allocate(bytes)), bytes_(bytes) {}

DeviceBlock::~DeviceBlock() {
  if (pointer_ != nullptr) allocator().free(pointer_, bytes_);
}

DeviceBlock::DeviceBlock(DeviceBlock&& other) noexcept
    : pointer_(std::exchange(other.pointer_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBlock& DeviceBlock::operator=(DeviceBlock&& other) noexcept {
  std::swap(pointer_, other.pointer_);
  std::swap(bytes_, other.bytes_);
  return *this;
}

DeviceMemoryStats device_memory_stats() {
  std::lock_guard<std::mutex> lock(allocator().mutex);
  return allocator().stats;
}

void reset_peak_device_memory() {
  std::lock_guard<std::mutex> lock(allocator().mutex);
  allocator().stats.peak_bytes_in_use = allocator().stats.bytes_in_use;
}

void empty_device_cache() {
  std::lock_guard<std::mutex> lock(allocator().mutex);
  allocator().release_cached();
}

}  // namespace attend::kernels
