// Sharing a loop among threads, and one thread team for a whole training step.
// Chapter 10 (docs/10-speed.md, "One team of threads per step"). Every
// parallel loop of the library (but chapter 3's blocked matmul, never part
// of a training step) goes through parallel_for / parallel_for_ranges,
// so that inside run_as_thread_team the loops go to threads that are already
// awake (and spinning) instead of parallel regions that wake them each time.
#pragma once

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <type_traits>

#include "attend/error.hpp"

namespace attend {

namespace detail {

// One loop handed to a step's team: pieces 0 .. pieces-1 of [0, n), each
// claimed by whichever thread asks first (next_piece), so a thread that is
// late, or not running at all, holds up nothing it has not started.
struct SharedLoop {
  int64_t n = 0;
  int64_t pieces = 0;
  void (*run_piece)(const void* piece, int64_t begin, int64_t end) = nullptr;  // calls *piece(begin, end)
  const void* piece = nullptr;
  std::atomic<int64_t> next_piece{0};
  std::atomic<int64_t> pieces_done{0};
  TaskFailure failure;  // an exception must not leave a thread of the team

  void run_pieces();  // claims and runs pieces until none is left (parallel.cpp)
};

// The threads of one OpenMP region, fed loops by the thread that runs the
// step (thread 0). The others wait for a loop by spinning for a short while,
// then sleep until woken; the region ends with the step, so between steps
// they sleep in OpenMP's passive wait. Defined in src/kernels/parallel.cpp.
class StepTeam {
 public:
  // Thread 0: runs `loop` with the team, returns when all its pieces are done.
  void share(SharedLoop& loop);
  // Thread 0, once the step is over: the other threads leave serve().
  void end_step();
  // Every other thread: runs the pieces of the loops shared, until end_step().
  void serve();
  // How often, during the step, the OS took the CPU from a serving thread
  // to run something else. Read after the region.
  int64_t preemptions() const { return preemptions_.load(); }

 private:
  void wait_for_news(uint32_t seen);

  std::atomic<uint32_t> news_{0};                  // +1 for each loop shared, and at the end
  std::atomic<SharedLoop*> current_loop_{nullptr};  // the loop being shared, or none
  std::atomic<int> threads_in_loop_{0};             // serving threads that may still read current_loop_
  std::atomic<int> threads_asleep_{0};              // serving threads that need a wake-up call
  std::atomic<bool> step_over_{false};
  std::atomic<int64_t> preemptions_{0};
};

// What every CPU of the machine did since it started, from the first line
// of /proc/stat (Linux): clock ticks (1/100 s) spent idle, and in all,
// summed over the CPUs. `known` is false where the file cannot be read.
// Beside them, the ticks this process's other threads ran: while steps run
// alone those threads only wait for the next team, and with
// OMP_WAIT_POLICY=active they spin, which makes their core look busy
// though it is ours to use.
struct MachineTimes {
  bool known = false;
  int64_t idle = 0;     // idle + waiting for I/O
  int64_t total = 0;    // user, nice, system, idle, iowait, irq, softirq, steal
  int64_t cpus = 0;     // the cpuN lines
  int64_t waiting = 0;  // this process's threads but the calling one (getrusage)
};
MachineTimes parse_proc_stat(const std::string& text);  // the file's text (waiting: 0)
MachineTimes read_machine_times();                      // /proc/stat and getrusage now
// How many cores stood idle, or ran only this process's waiting threads, on
// average between two readings (0 .. cpus).
double idle_cores(const MachineTimes& before, const MachineTimes& after);

// Whether the next step gets a team. A team pays when its threads run: on
// a machine where another program wants the cores, the OS keeps taking them
// away, the step waits for pieces a preempted thread has started, and the
// spinning threads take time from the one running the step. So after a step
// whose other threads were preempted more than kBusyPreemptionsPerSecond,
// steps run on the calling thread alone until the machine shows a free
// core again: at most every kTicksPerLook ticks of each CPU (0.05 s) the
// schedule reads the machine's idle time (/proc/stat), and when at least
// kIdleShare of a core per other thread of the team stood idle (or ran
// only this process's waiting threads), the next step has a team. If that
// team is preempted again, the next look waits twice as long (up to 64
// times); a quiet team step starts over. Where
// the idle time cannot be read, the schedule runs 1 step alone, then 2, 4,
// ... up to kLongestRunAlone, and tries a team after each run. (The same
// bits either way: the pieces do not depend on the threads.)
class TeamSchedule {
 public:
  static constexpr double kBusyPreemptionsPerSecond = 100;  // idle here: ~30, beside `yes`: ~240
  static constexpr int64_t kLongestRunAlone = 64;
  static constexpr int64_t kTicksPerLook = 5;
  static constexpr double kIdleShare = 0.75;
  using Look = MachineTimes (*)();

  explicit TeamSchedule(Look look = read_machine_times) : look_(look) {}

  // (Each takes a lock: two threads may train at once, each with its team.)
  bool use_team(int64_t threads);  // for the next step, of `threads` threads
  void after_team_step(int64_t preemptions, double seconds);
  bool runs_alone() const;
  void start_over();  // as at program start: the next step has a team

 private:
  const Look look_;
  mutable std::mutex mutex_;
  bool alone_ = false;
  int64_t backoff_ = 1;  // 1, 2, 4 ... kLongestRunAlone: how long the next run alone lasts
  // While alone, where the idle time is known: the last reading, and the
  // ticks of each CPU from one look to the next. Where it is not known: the
  // steps left.
  MachineTimes last_look_;
  int64_t ticks_between_looks_ = 0;
  int64_t steps_alone_left_ = 0;
};
TeamSchedule& team_schedule();  // the one run_as_thread_team follows

// The team this thread feeds (set on thread 0 while its step runs), and
// whether this thread runs its loops alone: inside a loop's piece, or in a
// step the schedule gave no team.
inline thread_local StepTeam* team_of_this_thread = nullptr;
inline thread_local bool inside_a_piece = false;
inline thread_local bool step_runs_alone = false;

}  // namespace detail

// The threads a loop started here may use: 1 inside a loop's piece or in a
// step run alone (its loops run on this thread: a matmul then cuts no
// slices, which would each pack their own copy of an operand), the team's
// size inside a thread team, else the number OpenMP would start
// (OMP_NUM_THREADS, --threads).
inline int64_t thread_count() {
  if (detail::inside_a_piece || detail::step_runs_alone) return 1;
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
// 27 us against 2.5 us on one thread). Inside run_as_thread_team the loop is
// handed to the team, whose threads are awake: ~1 us. The calling thread
// runs pieces too, so a thread the OS has not scheduled (a busy machine)
// delays nothing it has not started.
//
// Which thread runs a piece never changes a result: each piece writes its
// own outputs, and the pieces depend on `pieces`, not on the thread count.
template <class Piece>
void parallel_for_ranges(int64_t n, int64_t pieces, Piece&& piece) {
  if (n <= 0) return;
  pieces = std::min(pieces, n);
  if (pieces <= 1 || detail::inside_a_piece || detail::step_runs_alone) {
    piece(int64_t{0}, n);
    return;
  }
  if (detail::StepTeam* team = detail::team_of_this_thread) {
    detail::SharedLoop loop;
    loop.n = n;
    loop.pieces = pieces;
    loop.piece = &piece;
    loop.run_piece = [](const void* p, int64_t begin, int64_t end) {
      (*static_cast<const std::remove_reference_t<Piece>*>(p))(begin, end);
    };
    team->share(loop);
    loop.failure.rethrow();
    return;
  }
  if (omp_in_parallel()) {  // some other region's thread: no team to share with
    piece(int64_t{0}, n);
    return;
  }
  TaskFailure failure;  // an exception must not leave a region
#pragma omp parallel for schedule(dynamic) num_threads(static_cast<int>(std::min(pieces, thread_count())))
  for (int64_t p = 0; p < pieces; ++p) {
    failure.run([&] { piece(p * n / pieces, (p + 1) * n / pieces); });
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

// Runs task() on this thread while the other threads serve its loops: every
// parallel_for inside it goes to them (above). train_step runs inside one,
// so a step wakes the threads once, not once per loop. When the machine is
// busy (TeamSchedule) task() runs here alone, its loops too. Exceptions
// thrown by task() come out of here.
//
// The task runs on the calling thread (thread 0 of the region). When another
// thread ran it (`#pragma omp single`, an earlier version), some steps
// allocated their tensors from that thread's malloc arena, and each arena
// kept a step's worth of freed memory: a peak of 287,620 KB instead of
// 216,984 KB for the d_model 256 model on 2 threads. (Thread-local state,
// such as a no-gradient guard, must also stay with the caller.)
template <class Task>
void run_as_thread_team(Task&& task) {
  if (omp_in_parallel() || omp_get_max_threads() == 1) {
    task();
    return;
  }
  if (!detail::team_schedule().use_team(omp_get_max_threads())) {
    detail::step_runs_alone = true;
    TaskFailure failure;
    failure.run(task);
    detail::step_runs_alone = false;
    failure.rethrow();
    return;
  }
  TaskFailure failure;
  detail::StepTeam team;
  const double started = omp_get_wtime();
#pragma omp parallel
  {
    if (omp_get_thread_num() == 0) {
      detail::team_of_this_thread = &team;
      failure.run(task);
      detail::team_of_this_thread = nullptr;
      team.end_step();  // also after an exception: the others must leave serve()
    } else {
      team.serve();
    }
  }
  detail::team_schedule().after_team_step(team.preemptions(), omp_get_wtime() - started);
  failure.rethrow();
}

}  // namespace attend
