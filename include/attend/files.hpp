// Files, read and written safely: the one place every output of Attend goes
// through. Outputs are checked before any work starts (not the same file as
// an input, a regular file or nothing, creatable, room on the disk), locked
// while a run writes them, and written atomically. Chapter 4
// (docs/04-modules-and-optimizers.md, appendix); chapter 8 for the checks.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "attend/error.hpp"

namespace attend::io {

// Writes `bytes` to `path` through a temporary file in the same directory,
// flushed and fsync'ed, then renamed over `path`: `path` always holds either
// the old file or the whole new one. On any error `path` is unchanged, the
// temporary file is removed, and Error says "<path>: <problem>".
void write_file_atomically(const std::string& path, std::string_view bytes);

// The same for a file written in pieces: `produce` calls `write` with each
// piece in order, so a large file never has to be in memory at once (a
// checkpoint is as large as the model and its optimizer state). If `produce`
// throws, `path` is unchanged and the temporary file removed as well.
using WritePiece = std::function<void(std::string_view piece)>;
void write_file_atomically(const std::string& path, const std::function<void(const WritePiece& write)>& produce);

// All the bytes of the regular file at `path` (Error "<path>: ..." otherwise).
std::string read_file(const std::string& path);

// A file a command names, and the flag that named it (for messages).
struct NamedPath {
  std::string flag;  // "--out", "--data"
  std::string path;
};

// Checks, before any work, that every output can be written without harm:
// - it is not the same file as an input or another output (compared by file
//   identity, so "./a" and "dir/../a" and hard links are caught);
// - if it exists, it is a regular file (a device, a directory, a FIFO is
//   named and refused: the atomic rename would replace it);
// - its directory exists and a file can be created and written there;
// - the disk has room for `expected_bytes` more (per output).
// Throws Error naming the flag, the path and the problem.
void check_output_files(const std::vector<NamedPath>& inputs, const std::vector<NamedPath>& outputs,
                        uint64_t expected_bytes = 0);

// While alive, holds "<path>.lock" (holding this process's id), so that a
// second run writing the same file is refused with a message naming the
// first. A lock left by a process that no longer exists (kill -9) is taken over.
class OutputLock {
 public:
  explicit OutputLock(const std::string& path);
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

 private:
  std::string lock_path_;
};

}  // namespace attend::io
