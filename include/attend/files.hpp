// Whole files, read and written safely. Chapter 4 (docs/04-modules-and-optimizers.md,
// appendix): checkpoints are written through write_file_atomically.
#pragma once

#include <string>
#include <string_view>

#include "attend/error.hpp"

namespace attend::io {

// Writes `bytes` to `path` through a temporary file in the same directory,
// flushed and fsync'ed, then renamed over `path`: `path` always holds either
// the old file or the whole new one. On any error `path` is unchanged, the
// temporary file is removed, and Error says "<path>: <problem>".
void write_file_atomically(const std::string& path, std::string_view bytes);

// All the bytes of the regular file at `path` (Error "<path>: ..." otherwise).
std::string read_file(const std::string& path);

}  // namespace attend::io
