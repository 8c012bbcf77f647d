// A std::vector<float> that can grow without writing zeros: the storage of
// every float tensor. Chapter 10 (docs/10-speed.md, "Memory: storage that is not filled twice"):
// a tensor that an op is about to overwrite completely is then never filled
// twice (the zero fill was 10% of a training step in a profile).
#pragma once

#include <memory>
#include <utility>
#include <vector>

namespace attend {

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
