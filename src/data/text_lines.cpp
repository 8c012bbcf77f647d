// The one reader of the text a user gives Attend (TSV files, translate's
// standard input and arguments): line by line, a leading byte order mark
// dropped, "\r\n" accepted, NUL bytes and invalid UTF-8 named with the line.
// Chapter 8 (docs/08-translation.md, Appendix C, "Your own sentence pairs").
#include <filesystem>
#include <fstream>
#include <istream>

#include "attend/data.hpp"

namespace attend::data {

std::string text_line_problem(std::string_view s) {
  size_t i = 0;
  auto at = [&i] { return " at byte " + std::to_string(i + 1); };
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == 0) return "a NUL byte" + at();
    size_t length;
    uint32_t code;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {  // 110xxxxx 10xxxxxx
      length = 2;
      code = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {  // 1110xxxx 10xxxxxx 10xxxxxx
      length = 3;
      code = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {  // 11110xxx and three continuation bytes
      length = 4;
      code = c & 0x07;
    } else {
      return "invalid UTF-8" + at();  // a continuation byte with no lead, or 0xF8..0xFF
    }
    if (i + length > s.size()) return "invalid UTF-8" + at();
    for (size_t k = 1; k < length; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return "invalid UTF-8" + at();
      code = (code << 6) | (cc & 0x3F);
    }
    // The shortest form only; no surrogates; nothing past U+10FFFF.
    const uint32_t smallest[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code < smallest[length] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return "invalid UTF-8" + at();
    i += length;
  }
  return "";
}

TextLineReader::TextLineReader(const std::string& path) : name_(path) {
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored)) throw Error(path + ": is a directory, not a text file");
  file_ = std::make_unique<std::ifstream>(path, std::ios::binary);
  if (!*file_) throw Error(path + ": cannot open the file");
  in_ = file_.get();
}

TextLineReader::TextLineReader(std::istream& in, std::string name) : in_(&in), name_(std::move(name)) {}

TextLineReader::~TextLineReader() = default;

std::string TextLineReader::where() const { return name_ + ":" + std::to_string(line_number_); }

bool TextLineReader::next(std::string& line, std::string* problem) {
  if (!std::getline(*in_, line)) {
    if (in_->bad()) throw Error(name_ + ": read error after line " + std::to_string(line_number_));
    return false;
  }
  ++line_number_;
  static const std::string kByteOrderMark = "\xEF\xBB\xBF";  // U+FEFF, which some editors write first
  if (line_number_ == 1 && line.compare(0, kByteOrderMark.size(), kByteOrderMark) == 0) {
    line.erase(0, kByteOrderMark.size());
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();  // Windows line ends
  const std::string found = text_line_problem(line);
  if (problem) {
    *problem = found;
  } else if (!found.empty()) {
    throw Error(where() + ": " + found);
  }
  return true;
}

}  // namespace attend::data
