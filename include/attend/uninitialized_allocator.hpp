// A std::vector<float> that can grow without writing zeros: the storage of
// every float tensor. Chapter 10 (docs/10-speed.md, "Memory: storage that is not filled twice"):
// a tensor that an op is about to overwrite completely is then never filled
// twice (the zero fill was 10% of a training step in a profile).
// Chapter 12 (docs/12-scaling-attention.md) counts the bytes it hands out, to
// measure how much memory attention needs.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace attend {

// Bytes of float tensor storage alive now, and the most alive at once since
// the last reset_storage_peak(). Every float tensor's storage is allocated by
// UninitializedAllocator, so this is the memory tensors use (not the small
// scratch buffers kernels keep on the stack of each thread).
struct StorageBytes {
  static inline std::atomic<int64_t> in_use{0};
  static inline std::atomic<int64_t> peak{0};
  static void add(int64_t bytes) {
    const int64_t now = in_use.fetch_add(bytes) + bytes;
    int64_t seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
  }
};
inline int64_t storage_bytes_in_use() { return StorageBytes::in_use.load(); }
inline int64_t storage_peak_bytes() { return StorageBytes::peak.load(); }
// Starts a new measurement: the peak becomes what is alive now.
inline void reset_storage_peak() { StorageBytes::peak.store(StorageBytes::in_use.load()); }

// std::allocator, except that growing a vector without a value (resize(n))
// leaves the new elements unset. Everything else (assign(n, 0), push_back)
// is unchanged.
template <typename T>
struct UninitializedAllocator : std::allocator<T> {
  using value_type = T;
  UninitializedAllocator() = default;
  template <typename U>
  UninitializedAllocator(const UninitializedAllocator<U>&) noexcept {}
  template <typename U>
  struct rebind {
    using other = UninitializedAllocator<U>;
  };
  T* allocate(size_t n) {
    T* p = std::allocator<T>::allocate(n);
    StorageBytes::add(static_cast<int64_t>(n * sizeof(T)));
    return p;
  }
  void deallocate(T* p, size_t n) {
    StorageBytes::add(-static_cast<int64_t>(n * sizeof(T)));
    std::allocator<T>::deallocate(p, n);
  }
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;  // default-initialised: no value written
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

using FloatBuffer = std::vector<float, UninitializedAllocator<float>>;

}  // namespace attend
