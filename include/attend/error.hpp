// attend::Error, the one exception type every layer throws. Its message names
// the operation and the shapes involved (or the file and line of bad input).
// Chapter 1 (docs/01-tensors.md) meets it first; the CLI prints it as one line.
// TaskFailure carries an exception out of an OpenMP region (chapter 10).
#pragma once

#include <exception>
#include <mutex>
#include <stdexcept>

namespace attend {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An exception must not leave an OpenMP parallel region: the program would
// stop (std::terminate). A task that may throw (an allocation that fails, an
// exercise not yet written) runs as failure.run(task) inside the region; the
// first exception is kept and failure.rethrow() throws it after the region,
// on the calling thread.
class TaskFailure {
 public:
  template <class Task>
  void run(Task&& task) {
    try {
      task();
    } catch (...) {
      const std::lock_guard<std::mutex> lock(mutex_);
      if (!first_) first_ = std::current_exception();
    }
  }
  void rethrow() const {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::mutex mutex_;
  std::exception_ptr first_;
};

}  // namespace attend
