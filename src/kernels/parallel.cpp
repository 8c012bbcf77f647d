// A training step's thread team: thread 0 runs the step and shares its
// loops; the other threads spin briefly for the next loop, then sleep; and
// on a machine where other programs want the cores, steps run alone.
// Chapter 10 (docs/10-speed.md, "One team of threads per step"); the
// interface and parallel_for_ranges are in include/attend/parallel.hpp.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <mutex>
#include <sstream>

#include "attend/parallel.hpp"

namespace attend::detail {

namespace {

// How long a thread of the team spins for the next loop before it sleeps.
// Inside a step the next loop usually comes within a few microseconds, and
// waking a sleeping thread costs tens of them (this machine, a virtual one:
// most of it in the host's interrupt handling). A few gaps of a step are
// longer: ~0.2 ms before the backward's first loop and before clipping
// (the default model), more when the machine is slow. Spinning 1 ms covers
// them (50 us, an earlier value, woke the thread 12 to 48 times a step);
// 2 threads then gained 0% to 6% more over one (docs/10-speed.md, "One
// team of threads per step"). The region ends with the step, so between
// steps the thread sleeps anyway; on a busy machine steps run alone
// (TeamSchedule), without a team to spin.
constexpr auto kSpin = std::chrono::milliseconds(1);

// Tells the core this thread is waiting (a spin loop then uses less power,
// and leaves the core's resources to a second hardware thread if it has one).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// How many times the operating system has taken the CPU from this thread
// to run another (involuntary context switches), or 0 where it cannot say.
int64_t times_preempted() {
#ifdef RUSAGE_THREAD
  rusage usage{};
  if (getrusage(RUSAGE_THREAD, &usage) == 0) return usage.ru_nivcsw;
#endif
  return 0;
}

#ifdef RUSAGE_THREAD
// CPU time (user + system) of `who` (RUSAGE_SELF, RUSAGE_THREAD) in clock
// ticks, as /proc/stat counts them, or 0 where it cannot say.
int64_t cpu_ticks(int who) {
  rusage usage{};
  if (getrusage(who, &usage) != 0) return 0;
  const int64_t us = (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * int64_t{1000000} + usage.ru_utime.tv_usec +
                     usage.ru_stime.tv_usec;
  return us * sysconf(_SC_CLK_TCK) / 1000000;
}
#endif

}  // namespace

void SharedLoop::run_pieces() {
  for (int64_t p = next_piece.fetch_add(1); p < pieces; p = next_piece.fetch_add(1)) {
    inside_a_piece = true;
    failure.run([&] { run_piece(piece, p * n / pieces, (p + 1) * n / pieces); });
    inside_a_piece = false;
    pieces_done.fetch_add(1, std::memory_order_release);  // its outputs are written
  }
}

void StepTeam::share(SharedLoop& loop) {
  current_loop_.store(&loop);
  news_.fetch_add(1);
  if (threads_asleep_.load() > 0) news_.notify_all();
  loop.run_pieces();  // this thread takes pieces too
  while (loop.pieces_done.load(std::memory_order_acquire) < loop.pieces) cpu_relax();  // others' pieces
  current_loop_.store(nullptr);
  // `loop` lives on the caller's stack: wait until no thread can still read it.
  while (threads_in_loop_.load() > 0) cpu_relax();
}

void StepTeam::end_step() {
  step_over_.store(true);
  news_.fetch_add(1);
  if (threads_asleep_.load() > 0) news_.notify_all();
}

void StepTeam::serve() {
  const int64_t preempted_before = times_preempted();
  uint32_t seen = news_.load();
  while (!step_over_.load()) {
    threads_in_loop_.fetch_add(1);  // before reading current_loop_: share() waits for it
    if (SharedLoop* loop = current_loop_.load()) loop->run_pieces();
    threads_in_loop_.fetch_sub(1);
    wait_for_news(seen);
    seen = news_.load();
  }
  preemptions_.fetch_add(times_preempted() - preempted_before);
}

// Returns once news_ differs from `seen`: spins for kSpin, then sleeps.
void StepTeam::wait_for_news(uint32_t seen) {
  using Clock = std::chrono::steady_clock;
  const auto give_up = Clock::now() + kSpin;
  for (int i = 1; news_.load(std::memory_order_acquire) == seen; ++i) {
    cpu_relax();
    if (i % 64 == 0 && Clock::now() > give_up) {
      // Counted as asleep before wait() looks at news_ one last time, so
      // share() either sees the count and wakes us, or we see its news.
      threads_asleep_.fetch_add(1);
      news_.wait(seen);
      threads_asleep_.fetch_sub(1);
      return;
    }
  }
}

// --- whether the team pays ------------------------------------------------------

MachineTimes parse_proc_stat(const std::string& text) {
  MachineTimes times;
  std::istringstream lines(text);
  std::string line;
  bool summed = false;
  while (std::getline(lines, line)) {
    if (line.rfind("cpu ", 0) == 0) {  // "cpu  user nice system idle iowait irq softirq steal ..."
      std::istringstream fields(line.substr(4));
      int64_t value[8];
      for (int64_t& v : value) {
        if (!(fields >> v) || v < 0) return MachineTimes{};
      }
      times.idle = value[3] + value[4];
      times.total = 0;
      for (int64_t v : value) times.total += v;
      summed = true;
    } else if (line.rfind("cpu", 0) == 0) {
      ++times.cpus;  // cpu0, cpu1, ...
    }
  }
  times.known = summed && times.cpus > 0;
  return times.known ? times : MachineTimes{};
}

MachineTimes read_machine_times() {
  std::ifstream file("/proc/stat");
  if (!file) return MachineTimes{};
  std::ostringstream text;
  text << file.rdbuf();
  MachineTimes times = parse_proc_stat(text.str());
#ifdef RUSAGE_THREAD
  if (times.known) times.waiting = cpu_ticks(RUSAGE_SELF) - cpu_ticks(RUSAGE_THREAD);
#endif
  return times;
}

double idle_cores(const MachineTimes& before, const MachineTimes& after) {
  const int64_t total = after.total - before.total;
  if (!before.known || !after.known || total <= 0) return 0;
  const int64_t free_ticks = after.idle - before.idle + std::max<int64_t>(0, after.waiting - before.waiting);
  return std::min(static_cast<double>(after.cpus),
                  static_cast<double>(after.cpus) * static_cast<double>(free_ticks) / static_cast<double>(total));
}

bool TeamSchedule::use_team(int64_t threads) {
  const std::lock_guard<std::mutex> lock(mutex_);
  if (!alone_) return true;
  if (last_look_.known) {  // alone until a core stands idle
    const MachineTimes now = look_();
    if (now.known && now.total - last_look_.total < ticks_between_looks_ * now.cpus) {
      return false;  // too soon to tell
    }
    const bool core_free =
        !now.known || idle_cores(last_look_, now) >= kIdleShare * static_cast<double>(threads - 1);
    last_look_ = now;
    alone_ = !core_free;
    return core_free;
  }
  if (steps_alone_left_ > 0) {  // the idle time unknown: alone for a number of steps
    --steps_alone_left_;
    return false;
  }
  alone_ = false;
  return true;
}

void TeamSchedule::after_team_step(int64_t preemptions, double seconds) {
  const std::lock_guard<std::mutex> lock(mutex_);
  if (preemptions >= 2 && preemptions > kBusyPreemptionsPerSecond * seconds) {
    alone_ = true;
    last_look_ = look_();
    ticks_between_looks_ = kTicksPerLook * backoff_;
    steps_alone_left_ = backoff_;
    backoff_ = std::min(2 * backoff_, kLongestRunAlone);
  } else {
    backoff_ = 1;
  }
}

bool TeamSchedule::runs_alone() const {
  const std::lock_guard<std::mutex> lock(mutex_);
  return alone_;
}

void TeamSchedule::start_over() {
  const std::lock_guard<std::mutex> lock(mutex_);
  alone_ = false;
  backoff_ = 1;
  last_look_ = MachineTimes{};
  ticks_between_looks_ = 0;
  steps_alone_left_ = 0;
}

TeamSchedule& team_schedule() {
  static TeamSchedule schedule;
  return schedule;
}

}  // namespace attend::detail
