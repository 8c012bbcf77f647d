// Whole files, read and written safely: an atomic write (temporary file in
// the same directory, fsync, rename) so that a crash never leaves half a file,
// and a read that refuses what is not a regular file. Used by checkpoints
// (chapter 4, docs/04-modules-and-optimizers.md, appendix).
#include "attend/files.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
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

// Whether process `pid` exists (it may belong to another user: EPERM).
bool process_alive(long pid) { return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM); }

// The directory a path's file lives in ("." for a bare name).
std::string directory_of(const std::string& path) {
  const std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

// What a non-regular file is, in words.
std::string file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// Temporary files of write_file_atomically ("<name>.tmp.<pid>.<n>") left
// beside `path` by a process that no longer runs (killed with -9): removed.
void remove_stale_temporaries(const std::string& path) {
  const std::string prefix = std::filesystem::path(path).filename().string() + ".tmp.";
  const std::string dir = directory_of(path);
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (const dirent* entry = ::readdir(d)) {
    const std::string name = entry->d_name;
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string rest = name.substr(prefix.size());  // "<pid>.<n>"
    const size_t dot = rest.find('.');
    if (dot == std::string::npos || dot == 0) continue;
    long pid = 0;
    try {
      pid = std::stol(rest.substr(0, dot));
    } catch (const std::logic_error&) {
      continue;
    }
    if (!process_alive(pid)) ::unlink((dir + "/" + name).c_str());
  }
  ::closedir(d);
}

}  // namespace

// Writes `bytes` to `path` through a temporary file in the same directory,
// so that `path` always holds either the old file or the whole new one.
void write_file_atomically(const std::string& path, std::string_view bytes) {
  write_file_atomically(path, [bytes](const WritePiece& write) { write(bytes); });
}

void write_file_atomically(const std::string& path, const std::function<void(const WritePiece& write)>& produce) {
  // A fresh name next to `path` (the same directory, so the same file system,
  // which rename needs). O_EXCL refuses an existing file; try another name then.
  remove_stale_temporaries(path);
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
    fd = -1;
    ::unlink(tmp.c_str());
    throw Error(path + ": " + step + ": " + errno_text(err) + " (the previous file, if any, is unchanged)");
  };
  const WritePiece write = [&](std::string_view piece) {
    size_t written = 0;
    while (written < piece.size()) {
      const ssize_t n = ::write(fd, piece.data() + written, piece.size() - written);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) abandon("cannot write " + tmp, errno);
      written += static_cast<size_t>(n);
    }
  };
  try {
    produce(write);
  } catch (...) {  // the producer failed (or abandon did, which has cleaned up already)
    if (fd >= 0) {
      ::close(fd);
      ::unlink(tmp.c_str());
    }
    throw;
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

void check_output_files(const std::vector<NamedPath>& inputs, const std::vector<NamedPath>& outputs,
                        uint64_t expected_bytes) {
  namespace fs = std::filesystem;
  auto fail = [](const NamedPath& p, const std::string& problem) {
    throw Error(p.flag + " " + p.path + ": " + problem + " (nothing was done)");
  };
  for (size_t i = 0; i < outputs.size(); ++i) {
    const NamedPath& out = outputs[i];
    if (out.path.empty()) continue;
    struct stat info {};
    const bool exists = ::stat(out.path.c_str(), &info) == 0;
    if (exists && !S_ISREG(info.st_mode)) fail(out, "is " + file_kind(info.st_mode) + ", not a file Attend may replace");
    // The same file as an input, or as another output? Existing files by
    // identity (device and inode); a new file by its resolved path.
    auto same = [&](const std::string& other) {
      std::error_code e1, e2;
      if (exists && fs::exists(other, e1)) return fs::equivalent(out.path, other, e2) && !e2;
      return fs::weakly_canonical(fs::absolute(out.path), e1) == fs::weakly_canonical(fs::absolute(other), e2);
    };
    for (const NamedPath& in : inputs) {
      if (!in.path.empty() && same(in.path)) fail(out, "is the same file as " + in.flag + " " + in.path + ", which it would overwrite");
    }
    for (size_t j = 0; j < i; ++j) {
      if (!outputs[j].path.empty() && same(outputs[j].path)) fail(out, "is the same file as " + outputs[j].flag + " " + outputs[j].path);
    }
    // Can a file be created and written in its directory, with room to spare?
    const std::string dir = directory_of(out.path);
    struct stat dir_info {};
    if (::stat(dir.c_str(), &dir_info) != 0) fail(out, "its directory " + dir + " cannot be used: " + errno_text(errno));
    if (!S_ISDIR(dir_info.st_mode)) fail(out, dir + " is not a directory");
    const std::string probe = out.path + ".probe." + std::to_string(::getpid());
    const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) fail(out, "cannot create a file in " + dir + ": " + errno_text(errno));
    const std::string block(4096, '\0');
    const bool wrote = ::write(fd, block.data(), block.size()) == static_cast<ssize_t>(block.size()) && ::fsync(fd) == 0;
    const int err = errno;
    ::close(fd);
    ::unlink(probe.c_str());
    if (!wrote) fail(out, "cannot write in " + dir + ": " + errno_text(err));
    struct statvfs disk {};
    if (expected_bytes > 0 && ::statvfs(dir.c_str(), &disk) == 0) {
      const uint64_t free_bytes = static_cast<uint64_t>(disk.f_bavail) * disk.f_frsize;
      if (free_bytes < expected_bytes) {
        fail(out, "the disk of " + dir + " has " + std::to_string(free_bytes / 1024) + " KiB free, but writing it needs about " +
                      std::to_string(expected_bytes / 1024) + " KiB");
      }
    }
  }
}

OutputLock::OutputLock(const std::string& path) : lock_path_(path + ".lock") {
  for (int attempt = 0; attempt < 2; ++attempt) {
    const int fd = ::open(lock_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
      const std::string pid = std::to_string(::getpid()) + "\n";
      [[maybe_unused]] const ssize_t n = ::write(fd, pid.data(), pid.size());
      ::close(fd);
      return;
    }
    if (errno != EEXIST) throw Error(path + ": cannot create the lock file " + lock_path_ + ": " + errno_text(errno));
    long owner = 0;
    try {
      owner = std::stol(read_file(lock_path_));
    } catch (const std::exception&) {
      owner = 0;  // empty or unreadable: being written this instant, or left half-written
    }
    if (owner == ::getpid() || process_alive(owner)) {
      lock_path_.clear();
      throw Error(path + " is being written by another run (process " + std::to_string(owner) + ", lock file " +
                  path + ".lock); wait for it to finish, or choose another --out");
    }
    ::unlink(lock_path_.c_str());  // left by a process that is gone: take it over
  }
  throw Error(path + ": cannot take the lock file " + lock_path_);
}

OutputLock::~OutputLock() {
  if (!lock_path_.empty()) ::unlink(lock_path_.c_str());
}

}  // namespace attend::io
