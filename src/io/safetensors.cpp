// Reading and writing safetensors checkpoints. Chapter 4
// (docs/04-modules-and-optimizers.md). encode/decode turn tensors into bytes and
// back; save/load add the file system: an atomic write (temporary file,
// fsync, rename) and a plain read. The decoder checks every number it reads
// from the file before it uses it, so a damaged file gives an error, not a crash.
#include "attend/safetensors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <filesystem>
#include <set>
#include <system_error>

#include "attend/json.hpp"

namespace attend::io {

// ---------------------------------------------------------------------------
// CRC-32

namespace {

// Entry b of the table is the CRC register after pushing byte b through the
// (reflected) polynomial 0xEDB88320 one bit at a time. Built at compile time.
constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t crc = b;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
    table[b] = crc;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kCrcTable = make_crc_table();

}  // namespace

uint32_t crc32(std::string_view bytes, uint32_t previous) {
  // The register starts as all ones and is inverted at the end; undoing the
  // final inversion of `previous` first lets a CRC continue where it stopped.
  uint32_t crc = ~previous;
  for (const char c : bytes) {
    crc = kCrcTable[(crc ^ static_cast<unsigned char>(c)) & 0xFF] ^ (crc >> 8);
  }
  return ~crc;
}

namespace {

// ---------------------------------------------------------------------------
// The header, shared by the writer and the reader

constexpr std::string_view kMetadataKey = "__metadata__";

// No real tensor has 2^60 elements. Capping the product of the sizes (zeros
// counted as ones) there means no element count, stride or byte count computed
// from a shape can overflow 64 bits, whatever numbers a damaged file holds.
constexpr uint64_t kMaxElements = uint64_t{1} << 60;

// What the header says about one tensor.
struct Entry {
  std::string name;
  DType dtype = DType::Float32;
  Shape shape;
  uint64_t begin = 0;  // data_offsets: relative to the start of the data section,
  uint64_t end = 0;    // end exclusive
};

const char* dtype_code(DType dtype) { return dtype == DType::Float32 ? "F32" : "I64"; }
uint64_t dtype_bytes(DType dtype) { return dtype == DType::Float32 ? 4 : 8; }

// The JSON header for `entries` and `metadata`: compact and deterministic,
// "__metadata__" first (left out when empty, keys sorted), then the tensors
// in order. {"__metadata__":{"k":"v"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}
std::string header_json(const std::vector<Entry>& entries, const Metadata& metadata) {
  std::string json = "{";
  if (!metadata.empty()) {
    json += io::json::quote(kMetadataKey) + ":{";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      if (!first) json += ",";
      first = false;
      json += io::json::quote(key) + ":" + io::json::quote(value);
    }
    json += "}";
  }
  for (const Entry& e : entries) {
    if (json.size() > 1) json += ",";
    json += io::json::quote(e.name) + ":{\"dtype\":\"" + dtype_code(e.dtype) + "\",\"shape\":[";
    for (size_t i = 0; i < e.shape.size(); ++i) {
      if (i > 0) json += ",";
      json += std::to_string(e.shape[i]);
    }
    json += "],\"data_offsets\":[" + std::to_string(e.begin) + "," + std::to_string(e.end) + "]}";
  }
  return json + "}";
}

// Attend's checksum: the CRC-32 of the canonical header (header_json of the
// entries and of the metadata without the checksum entry, no padding)
// followed by the data section. `metadata` must not hold the checksum.
uint32_t contents_checksum(const std::vector<Entry>& entries, const Metadata& metadata,
                           std::string_view data) {
  return crc32(data, crc32(header_json(entries, metadata)));
}

// `v` as 8 lowercase hex digits: 0x1a2b -> "00001a2b".
std::string hex8(uint32_t v) {
  static const char* const digits = "0123456789abcdef";
  std::string s(8, '0');
  for (int i = 7; i >= 0; --i, v >>= 4) s[static_cast<size_t>(i)] = digits[v & 0xF];
  return s;
}

bool is_hex8(const std::string& s) {
  return s.size() == 8 &&
         std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// The Levenshtein distance between `a` and `b`: the fewest single-character
// insertions, deletions and substitutions that turn one into the other.
size_t edit_distance(std::string_view a, std::string_view b) {
  // row[j] is the distance between the first i characters of a and the first j of b.
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];  // the distance for (i - 1, j - 1)
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];  // (i - 1, j)
      row[j] = std::min({above + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// A checksum can vouch for everything except its own presence: if damage
// changed the key "attend.checksum" into, say, "attend.chEcksum", a reader
// looking only for the exact key would take the file for one without a
// checksum and check nothing. So a key within a few edits of it (but not
// equal) counts as a damaged checksum key, and the writer refuses such keys.
constexpr size_t kChecksumKeyTolerance = 4;
bool looks_like_checksum_key(std::string_view key) {
  if (key == kChecksumKey) return false;
  const size_t a = key.size(), b = kChecksumKey.size();
  if ((a > b ? a - b : b - a) > kChecksumKeyTolerance) return false;  // too far apart to be close
  return edit_distance(key, kChecksumKey) <= kChecksumKeyTolerance;
}

// Little-endian: the least significant byte first, whatever the machine's own order.
void append_le(std::string& out, uint64_t value, int nbytes) {
  for (int i = 0; i < nbytes; ++i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
}

// The `nbytes`-byte little-endian number at bytes[pos] (the caller checked the range).
uint64_t read_le(std::string_view bytes, size_t pos, int nbytes) {
  uint64_t value = 0;
  for (int i = nbytes - 1; i >= 0; --i) {
    value = (value << 8) | static_cast<unsigned char>(bytes[pos + static_cast<size_t>(i)]);
  }
  return value;
}

// ---------------------------------------------------------------------------
// Writing

// encode_safetensors, with errors starting with "<context>: ".
std::string encode(const NamedTensors& tensors, const Metadata& metadata, const std::string& context) {
  auto fail = [&](const std::string& problem) { throw Error(context + ": " + problem); };

  // 1. Check every name, key and tensor before producing a byte.
  for (const auto& [key, value] : metadata) {
    if (key == kChecksumKey) {
      fail("metadata key " + io::json::quote(key) + " is reserved for the checksum Attend adds itself");
    }
    if (looks_like_checksum_key(key)) {
      fail("metadata key " + io::json::quote(key) +
           " is too close to \"attend.checksum\": a reader would take it for a damaged checksum key");
    }
    if (!io::json::is_valid_utf8(key)) fail("metadata key " + io::json::quote(key) + " is not valid UTF-8");
    if (!io::json::is_valid_utf8(value)) fail("metadata value for " + io::json::quote(key) + " is not valid UTF-8");
  }
  std::set<std::string_view> names;
  for (const auto& [name, tensor] : tensors) {
    if (name.empty()) fail("a tensor has an empty name");
    if (name == kMetadataKey) fail("\"__metadata__\" is reserved and cannot name a tensor");
    if (!io::json::is_valid_utf8(name)) fail("tensor name " + io::json::quote(name) + " is not valid UTF-8");
    if (!names.insert(name).second) fail("tensor name " + io::json::quote(name) + " is used twice");
    if (!tensor.defined()) fail("tensor " + io::json::quote(name) + " is undefined");
  }

  // 2. The data section: each tensor's elements in row-major order, little-endian, back to back.
  std::vector<Entry> entries;
  std::string data;
  for (const auto& [name, tensor] : tensors) {
    Entry e{name, tensor.dtype(), tensor.shape(), data.size(), 0};
    if (tensor.dtype() == DType::Float32) {
      for (const float v : tensor.to_vector()) append_le(data, std::bit_cast<uint32_t>(v), 4);
    } else {
      for (const int64_t v : tensor.to_index_vector()) append_le(data, static_cast<uint64_t>(v), 8);
    }
    e.end = data.size();
    entries.push_back(std::move(e));
  }

  // 3. The header, with the checksum of everything else in its metadata,
  // padded with spaces so that the data section starts at a multiple of 8.
  Metadata with_checksum = metadata;
  with_checksum[std::string(kChecksumKey)] = hex8(contents_checksum(entries, metadata, data));
  std::string header = header_json(entries, with_checksum);
  while ((8 + header.size()) % 8 != 0) header += ' ';

  std::string bytes;
  bytes.reserve(8 + header.size() + data.size());
  append_le(bytes, header.size(), 8);
  bytes += header;
  bytes += data;
  return bytes;
}

// ---------------------------------------------------------------------------
// Reading: every step checks what it reads and throws "<source>: <problem>".

[[noreturn]] void fail(const std::string& source, const std::string& problem) {
  throw Error(source + ": " + problem);
}

// A JSON value for a message: a number as written, a string quoted (cut to 40 bytes).
std::string describe(const io::json::Value& v) {
  if (v.kind == io::json::Kind::Number) return v.text;
  if (v.kind == io::json::Kind::String) {
    return v.text.size() <= 40 ? io::json::quote(v.text) : io::json::quote(v.text.substr(0, 40)) + "...";
  }
  return std::string("a JSON ") + io::json::kind_name(v.kind);
}

// The dtypes of the safetensors standard that Attend does not hold.
bool is_other_safetensors_dtype(const std::string& code) {
  static const std::set<std::string> codes = {"BOOL", "U8",  "I8",  "U16", "I16",    "F16",    "BF16",
                                              "U32",  "I32", "U64", "F64", "F8_E4M3", "F8_E5M2"};
  return codes.count(code) > 0;
}

// The entry for tensor `name`, checked on its own: the right keys and JSON
// types, a known dtype, a sane shape, offsets inside the data section
// (`data_size` bytes) that hold exactly shape * dtype-size bytes.
Entry read_entry(const std::string& name, const io::json::Value& v, uint64_t data_size,
                 const std::string& source) {
  const std::string who = "tensor " + io::json::quote(name) + ": ";
  if (v.kind != io::json::Kind::Object) {
    fail(source,
         who + "its entry is " + describe(v) + ", expected an object with dtype, shape and data_offsets");
  }
  for (const io::json::Member& member : v.members) {
    const std::string& key = member.key;
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      fail(source, who + "unexpected key " + io::json::quote(key) + " (expected dtype, shape and data_offsets)");
    }
  }
  const io::json::Value* dtype = v.find("dtype");
  const io::json::Value* shape = v.find("shape");
  const io::json::Value* offsets = v.find("data_offsets");
  if (dtype == nullptr) fail(source, who + "missing \"dtype\"");
  if (shape == nullptr) fail(source, who + "missing \"shape\"");
  if (offsets == nullptr) fail(source, who + "missing \"data_offsets\"");

  Entry e;
  e.name = name;
  if (dtype->kind != io::json::Kind::String) {
    fail(source, who + "\"dtype\" is " + describe(*dtype) + ", expected a string such as \"F32\"");
  }
  if (dtype->text == "F32") {
    e.dtype = DType::Float32;
  } else if (dtype->text == "I64") {
    e.dtype = DType::Int64;
  } else if (is_other_safetensors_dtype(dtype->text)) {
    fail(source, who + "dtype " + io::json::quote(dtype->text) + " is not supported (Attend reads F32 and I64)");
  } else {
    fail(source, who + "unknown dtype " + describe(*dtype));
  }

  if (shape->kind != io::json::Kind::Array) {
    fail(source, who + "\"shape\" is " + describe(*shape) + ", expected an array of sizes");
  }
  uint64_t elements = 1;  // the element count
  uint64_t capped = 1;    // the same with zeros counted as ones: kept <= kMaxElements
  for (const io::json::Value& item : shape->items) {
    const std::optional<uint64_t> size = io::json::to_uint64(item);
    if (!size) fail(source, who + "shape size " + describe(item) + " is not a non-negative 64-bit integer");
    const uint64_t factor = std::max<uint64_t>(*size, 1);
    if (factor > kMaxElements || capped > kMaxElements / factor) {
      fail(source, who + "shape is too large: its sizes multiply to more than 2^60 elements");
    }
    capped *= factor;
    elements *= *size;
    e.shape.push_back(static_cast<int64_t>(*size));
  }

  if (offsets->kind != io::json::Kind::Array || offsets->items.size() != 2) {
    fail(source, who + "\"data_offsets\" must be an array [begin, end] of two integers");
  }
  for (const io::json::Value& item : offsets->items) {
    if (!io::json::to_uint64(item)) {
      fail(source, who + "data_offsets entry " + describe(item) + " is not a non-negative 64-bit integer");
    }
  }
  e.begin = *io::json::to_uint64(offsets->items[0]);
  e.end = *io::json::to_uint64(offsets->items[1]);
  const std::string range = "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
  if (e.begin > e.end) fail(source, who + range + " begin after they end");
  if (e.end > data_size) {
    fail(source,
         who + range + " run past the end of the data section (" + std::to_string(data_size) + " bytes)");
  }
  const uint64_t needed = elements * dtype_bytes(e.dtype);  // <= 2^60 * 8: no overflow
  if (e.end - e.begin != needed) {
    fail(source, who + range + " hold " + std::to_string(e.end - e.begin) + " bytes, but shape " +
                     to_string(e.shape) + " of " + dtype_code(e.dtype) + " needs " + std::to_string(needed));
  }
  return e;
}

// The "__metadata__" object: string keys to string values.
Metadata read_metadata(const io::json::Value& v, const std::string& source) {
  if (v.kind != io::json::Kind::Object) {
    fail(source, "\"__metadata__\" is " + describe(v) + ", expected an object of strings");
  }
  Metadata metadata;
  for (const auto& [key, value] : v.members) {
    if (value.kind != io::json::Kind::String) {
      fail(source,
           "metadata value for " + io::json::quote(key) + " is " + describe(value) + ", expected a string");
    }
    metadata.emplace(key, value.text);  // keys are unique: the JSON parser rejects repeats
  }
  return metadata;
}

// The tensors' byte ranges, sorted, must tile the data section exactly: each
// begins where the previous one ended, with no overlap, no gap, nothing after.
void check_coverage(const std::vector<Entry>& entries, uint64_t data_size, const std::string& source) {
  std::vector<const Entry*> order;
  for (const Entry& e : entries) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  auto bytes = [](uint64_t begin, uint64_t end) {
    return "bytes [" + std::to_string(begin) + ", " + std::to_string(end) + ")";
  };
  uint64_t covered = 0;  // bytes [0, covered) belong to the tensors seen so far
  const Entry* previous = nullptr;
  for (const Entry* e : order) {
    if (e->begin < covered) {
      fail(source, "tensors " + io::json::quote(previous->name) + " (" + bytes(previous->begin, previous->end) +
                       ") and " + io::json::quote(e->name) + " (" + bytes(e->begin, e->end) + ") overlap");
    }
    if (e->begin > covered) {
      fail(source, bytes(covered, e->begin) + " of the data section belong to no tensor (a gap before " +
                       io::json::quote(e->name) + ")");
    }
    covered = e->end;
    previous = e;
  }
  if (covered != data_size) {
    fail(source, bytes(covered, data_size) + " at the end of the data section belong to no tensor");
  }
}

// The tensor that entry `e` describes, read from the data section (little-endian).
Tensor read_tensor(const Entry& e, std::string_view data) {
  const size_t count = static_cast<size_t>((e.end - e.begin) / dtype_bytes(e.dtype));
  const size_t begin = static_cast<size_t>(e.begin);
  if (e.dtype == DType::Float32) {
    std::vector<float> values(count);
    for (size_t i = 0; i < count; ++i) {
      values[i] = std::bit_cast<float>(static_cast<uint32_t>(read_le(data, begin + 4 * i, 4)));
    }
    return from_vector(values, e.shape);
  }
  std::vector<int64_t> values(count);
  for (size_t i = 0; i < count; ++i) values[i] = static_cast<int64_t>(read_le(data, begin + 8 * i, 8));
  return from_indices(values, e.shape);
}

// ---------------------------------------------------------------------------
// Files

// errno in words: "No such file or directory".
std::string errno_text(int err) { return std::generic_category().message(err); }

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

}  // namespace

// ---------------------------------------------------------------------------
// The public functions

std::string encode_safetensors(const NamedTensors& tensors, const Metadata& metadata) {
  return encode(tensors, metadata, "encode_safetensors");
}

SafetensorsContents decode_safetensors(const std::string& bytes, const std::string& source) {
  // 1. The 8-byte header length, then the header and the data section.
  if (bytes.size() < 8) {
    fail(source, "the file is " + std::to_string(bytes.size()) +
                     " bytes long, too short to hold the 8-byte header length");
  }
  const uint64_t header_length = read_le(bytes, 0, 8);
  if (header_length > kMaxHeaderBytes) {
    fail(source, "header length " + std::to_string(header_length) + " is over the limit of " +
                     std::to_string(kMaxHeaderBytes) + " bytes");
  }
  if (header_length > bytes.size() - 8) {
    fail(source, "header length " + std::to_string(header_length) + " runs past the end of the file (only " +
                     std::to_string(bytes.size() - 8) + " bytes follow the length field)");
  }
  const std::string_view header = std::string_view(bytes).substr(8, header_length);
  const std::string_view data = std::string_view(bytes).substr(8 + header_length);

  // 2. The header must be a JSON object.
  io::json::Value root;
  try {
    root = io::json::parse(header);
  } catch (const io::json::ParseError& e) {
    fail(source, "malformed JSON header at byte " + std::to_string(e.offset()) + " of the header (byte " +
                     std::to_string(e.offset() + 8) + " of the file): " + e.problem());
  }
  if (root.kind != io::json::Kind::Object) {
    fail(source, "the header is " + describe(root) + ", expected a JSON object");
  }

  // 3. Each entry on its own, then the entries together.
  std::vector<Entry> entries;
  Metadata metadata;
  for (const auto& [key, value] : root.members) {
    if (key == kMetadataKey) {
      metadata = read_metadata(value, source);
    } else {
      entries.push_back(read_entry(key, value, data.size(), source));
    }
  }
  check_coverage(entries, data.size(), source);

  // 4. Attend's checksum, when the file has one (files from other tools do not).
  for (const auto& entry : metadata) {
    if (looks_like_checksum_key(entry.first)) {
      fail(source, "metadata key " + io::json::quote(entry.first) +
                       " looks like a damaged \"attend.checksum\" key (the file is damaged)");
    }
  }
  const auto checksum = metadata.find(std::string(kChecksumKey));
  if (checksum != metadata.end()) {
    const std::string recorded = checksum->second;
    if (!is_hex8(recorded)) {
      fail(source, "\"attend.checksum\" is " + io::json::quote(recorded.substr(0, 40)) +
                       ", expected 8 lowercase hex digits");
    }
    metadata.erase(checksum);
    const std::string actual = hex8(contents_checksum(entries, metadata, data));
    if (actual != recorded) {
      fail(source, "checksum mismatch: the header records " + recorded + " but the contents give " + actual +
                       " (the file is damaged)");
    }
  }

  // 5. Only now, with every size known to be right, copy the data into tensors.
  SafetensorsContents contents;
  for (const Entry& e : entries) contents.tensors.emplace_back(e.name, read_tensor(e, data));
  contents.metadata = std::move(metadata);
  return contents;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata) {
  const std::string bytes = encode(tensors, metadata, path);  // every check happens here, before any file
  write_file_atomically(path, bytes);
}

SafetensorsContents load_safetensors(const std::string& path) {
  return decode_safetensors(read_file(path), path);
}

}  // namespace attend::io
