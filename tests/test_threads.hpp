// OpenMP's thread count for tests: set it, read it, and put it back when a
// test ends, however it ends (train() and the thread tests change it for the
// whole process). Without OpenMP there is one thread and setting does nothing.
#pragma once

#ifdef _OPENMP
#include <omp.h>
#endif

namespace attend_test {

inline void set_threads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n);
#else
  (void)n;
#endif
}

inline int get_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Restores the thread count it found when it goes out of scope.
class KeepThreads {
 public:
  KeepThreads() : previous_(get_threads()) {}
  ~KeepThreads() { set_threads(previous_); }
  KeepThreads(const KeepThreads&) = delete;
  KeepThreads& operator=(const KeepThreads&) = delete;

 private:
  int previous_;
};

}  // namespace attend_test
