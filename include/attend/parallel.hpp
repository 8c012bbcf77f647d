// Sharing a loop among threads, and one thread team for a whole training step.
// Chapter 10 (docs/10-speed.md, "One team of threads per step"). Every
// parallel loop of the library (but chapter 3's blocked matmul, never part
// of a training step) goes through parallel_for / parallel_for_ranges,
// so that inside run_as_thread_team the loops become tasks for threads that
// are already awake instead of parallel regions that wake them each time.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "attend/error.hpp"

namespace attend {

// The threads a loop started here may use: the team's size inside a thread
// team, else the number OpenMP would start (OMP_NUM_THREADS, --threads).
inline int64_t thread_count() {
  return omp_in_parallel() ? omp_get_num_threads() : omp_get_max_threads();
}

// Calls piece(begin, end) for `pieces` contiguous pieces that cover [0, n),
// each on whichever thread is free. pieces <= 1 runs piece(0, n) here.
//
// Outside a thread team this is an OpenMP parallel loop: the threads are
// woken for it and joined after it. A training step runs several hundred
// such loops, and with passive waiting (the default: threads sleep instead of
// spinning, so a busy machine is not slowed down) each wake-up and join
// costs ~25 us on this machine (an empty loop of 4096 floats, 2 threads:
// 27 us against 2.5 us on one thread). Inside run_as_thread_team the pieces
// are handed out as OpenMP tasks to the team, whose threads are already up:
// ~5 us. The calling thread also runs pieces while it waits for them, so a
// thread the OS has not scheduled (a busy machine) delays nothing it has not
// started.
//
// Which thread runs a piece never changes a result: each piece writes its
// own outputs, and the pieces depend on `pieces`, not on the thread count.
template <class Piece>
void parallel_for_ranges(int64_t n, int64_t pieces, Piece&& piece) {
  if (n <= 0) return;
  pieces = std::min(pieces, n);
  if (pieces <= 1) {
    piece(int64_t{0}, n);
    return;
  }
  TaskFailure failure;  // an exception must not leave a task or a region
  const auto run_piece = [&](int64_t p) {
    failure.run([&] { piece(p * n / pieces, (p + 1) * n / pieces); });
  };
  if (omp_in_parallel()) {
#pragma omp taskloop num_tasks(pieces) default(shared)
    for (int64_t p = 0; p < pieces; ++p) run_piece(p);
  } else {
#pragma omp parallel for schedule(dynamic) num_threads(static_cast<int>(std::min(pieces, thread_count())))
    for (int64_t p = 0; p < pieces; ++p) run_piece(p);
  }
  failure.rethrow();
}

// body(i) for every i in [0, n), one piece per thread when worth_it (enough
// work to pay for sharing it), else all on this thread. Like
// `#pragma omp parallel for if (worth_it)`, but it works inside a team too.
template <class Body>
void parallel_for(int64_t n, bool worth_it, Body&& body) {
  parallel_for_ranges(n, worth_it ? thread_count() : 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) body(i);
  });
}

// parallel_for whose pieces are vector loops: `simd` promises the compiler
// that the iterations are independent, so it vectorizes even a select such
// as relu's `v < 0 ? 0 : v`, which it would otherwise compile to a jump per
// element (docs/10-speed.md). body must only write element i.
template <class Body>
void parallel_for_simd(int64_t n, bool worth_it, Body&& body) {
  parallel_for_ranges(n, worth_it ? thread_count() : 1, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) body(i);
  });
}

// Runs task() on this thread while the other threads wait, awake for its
// loops: every parallel_for inside it hands its pieces to them as tasks
// (above). train_step runs inside one, so a step wakes the threads once, not
// once per loop. Exceptions thrown by task() come out of here.
//
// `master`, not `single`: the task must run on the calling thread. With
// `single` whichever thread arrived first ran it, so some steps allocated
// their tensors from another thread's malloc arena, and each arena kept a
// step's worth of freed memory: a peak of 287,620 KB instead of 216,984 KB
// for the d_model 256 model on 2 threads. (Thread-local state, such as a
// no-gradient guard, must also stay with the caller.)
template <class Task>
void run_as_thread_team(Task&& task) {
  if (omp_in_parallel() || omp_get_max_threads() == 1) {
    task();
    return;
  }
  TaskFailure failure;
#pragma omp parallel
#pragma omp master
  failure.run(task);  // the other threads wait at the region's end, running tasks
  failure.rethrow();
}

}  // namespace attend
