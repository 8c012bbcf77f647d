// Whole files, read and written safely: an atomic write (temporary file in
// the same directory, fsync, rename) so that a crash never leaves half a file,
// and a read that refuses what is not a regular file. Used by checkpoints
// (chapter 4, docs/04-modules-and-optimizers.md, appendix).
#include "attend/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <system_error>

namespace attend::io {

namespace {
// errno in words: "No such file or directory".
std::string errno_text(int err) { return std::generic_category().message(err); }

}  // namespace

// Writes `bytes` to `path` through a temporary file in the same directory,
// so that `path` always holds either the old file or the whole new one.
void write_file_atomically(const std::string& path, std::string_view bytes) {
  // A fresh name next to `path` (the same directory, so the same file system,
  // which rename needs). O_EXCL refuses an existing file; try another name then.
  static std::atomic<unsigned> counter{0};
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) throw Error(path + ": cannot create the temporary file " + tmp + ": " + errno_text(errno));

  // From here on a failure removes the temporary file before throwing.
  auto abandon = [&](const std::string& step, int err) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw Error(path + ": " + step + ": " + errno_text(err) + " (the previous file, if any, is unchanged)");
  };
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) abandon("cannot write " + tmp, errno);
    written += static_cast<size_t>(n);
  }
  // fsync: the bytes are on the disk before the rename makes them the file.
  if (::fsync(fd) != 0) abandon("cannot flush " + tmp + " to disk", errno);
  const int closed = ::close(fd);
  fd = -1;
  if (closed != 0) abandon("cannot close " + tmp, errno);
  // rename replaces `path` in one step: readers see the old file or the new one.
  if (::rename(tmp.c_str(), path.c_str()) != 0) abandon("cannot rename " + tmp + " over it", errno);

  // Best effort: fsync the directory so that the rename itself survives a crash.
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    [[maybe_unused]] const int ignored = ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

// All the bytes of the regular file at `path`.
std::string read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + errno_text(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    const bool is_dir = S_ISDIR(info.st_mode);
    ::close(fd);
    throw Error(path + ": cannot read: " + (is_dir ? "it is a directory" : "not a regular file"));
  }
  std::string bytes;
  bytes.reserve(static_cast<size_t>(info.st_size));
  std::array<char, 1 << 16> buffer;
  while (true) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw Error(path + ": cannot read: " + errno_text(err));
    }
    if (n == 0) break;
    bytes.append(buffer.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  return bytes;
}

}  // namespace attend::io
