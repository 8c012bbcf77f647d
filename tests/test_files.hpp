// Helpers for tests that need files: a temporary directory that is removed
// with everything in it at the end, and whole-file binary read and write.
// A directory or file that cannot be created, opened or written is a Catch2
// failure that names it.
#pragma once

#include <stdlib.h>  // mkdtemp

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>

#include "catch_compat.hpp"

namespace attend_test {

// A fresh directory, <temp>/attend_TAG_XXXXXX, removed with its contents when
// the object goes out of scope.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    std::string pattern = (std::filesystem::temp_directory_path() / ("attend_" + tag + "_XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      const int error = errno;
      FAIL("cannot create " << pattern << ": " << std::strerror(error));
    }
    path_ = pattern;
  }
  ~TempDir() {
    try {
      std::error_code ignored;  // cleaning up is best effort: never throw from here
      std::filesystem::remove_all(path_, ignored);
    } catch (...) {
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // The path of the file `name` inside the directory (which may not exist yet).
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// All the bytes of the file at `path`.
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) FAIL("cannot open " << path << " for reading");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Creates or replaces the file at `path` with exactly `bytes`.
inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  out.close();
  INFO("writing " << path);
  REQUIRE(out.good());
}

}  // namespace attend_test
