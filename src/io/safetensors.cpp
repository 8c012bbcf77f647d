// The safetensors format: an 8-byte little-endian header length, a JSON
// header (name -> dtype, shape, data_offsets; "__metadata__" -> strings), the
// raw little-endian data. Chapter 4 (docs/04-modules-and-optimizers.md).
// The decoder checks every number it reads before it uses it, so a damaged file
// gives an error, not a crash. Hardening lives beside it: the checksum in
// safetensors_checksum.cpp, the atomic write in files.cpp.
#include "attend/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <set>

#include "attend/files.hpp"
#include "attend/json.hpp"
#include "safetensors_checksum.hpp"

namespace attend::io {

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

// A tensor's bytes in the file (row-major, little-endian), handed to
// `write` in pieces of at most 1 MiB: a piece buffer, not the whole file.
void write_tensor_bytes(const Tensor& on_any_device, const WritePiece& write) {
  const Tensor tensor = to_device(on_any_device, Device::cpu);  // a tensor on the GPU: through a copy
  constexpr size_t kPiece = size_t{1} << 20;
  std::string piece;
  piece.reserve(kPiece);
  auto flush_if_full = [&] {
    if (piece.size() + 8 > kPiece) {
      write(piece);
      piece.clear();
    }
  };
  if (tensor.dtype() == DType::Float32) {
    for (const float v : tensor.to_vector()) {
      append_le(piece, std::bit_cast<uint32_t>(v), 4);
      flush_if_full();
    }
  } else {
    for (const int64_t v : tensor.to_index_vector()) {
      append_le(piece, static_cast<uint64_t>(v), 8);
      flush_if_full();
    }
  }
  if (!piece.empty()) write(piece);
}

// Checks every name, key and tensor, lays the tensors out, and computes the
// checksum (a first pass over the data): everything but the bytes
// themselves, which emit() then writes. Errors start with "<context>: ".
struct Layout {
  std::vector<Entry> entries;
  std::string prefix;  // the 8-byte header length and the header
  uint64_t data_size = 0;
};

Layout plan(const NamedTensors& tensors, const Metadata& metadata, const std::string& context) {
  auto fail = [&](const std::string& problem) { throw Error(context + ": " + problem); };

  // 1. Check every name, key and tensor before producing a byte.
  refuse_checksum_keys(metadata, context);  // the checksum entry is Attend's own (safetensors_checksum.cpp)
  for (const auto& [key, value] : metadata) {
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

  // 2. Where each tensor's bytes go: back to back in the data section.
  Layout layout;
  for (const auto& [name, tensor] : tensors) {
    const uint64_t bytes = static_cast<uint64_t>(tensor.numel()) * (tensor.dtype() == DType::Float32 ? 4 : 8);
    layout.entries.push_back({name, tensor.dtype(), tensor.shape(), layout.data_size, layout.data_size + bytes});
    layout.data_size += bytes;
  }

  // 3. The header, with the checksum of everything else in its metadata,
  // padded with spaces so that the data section starts at a multiple of 8.
  uint32_t crc = crc32(header_json(layout.entries, metadata));
  for (const auto& named : tensors) {
    write_tensor_bytes(named.second, [&crc](std::string_view piece) { crc = crc32(piece, crc); });
  }
  Metadata with_checksum = metadata;
  with_checksum[std::string(kChecksumKey)] = checksum_text(crc);
  std::string header = header_json(layout.entries, with_checksum);
  while ((8 + header.size()) % 8 != 0) header += ' ';
  append_le(layout.prefix, header.size(), 8);
  layout.prefix += header;
  return layout;
}

// The file's bytes, in order, to `write`: the header, then each tensor's data.
void emit(const Layout& layout, const NamedTensors& tensors, const WritePiece& write) {
  write(layout.prefix);
  for (const auto& named : tensors) write_tensor_bytes(named.second, write);
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

}  // namespace

// ---------------------------------------------------------------------------
// The public functions

std::string encode_safetensors(const NamedTensors& tensors, const Metadata& metadata) {
  const Layout layout = plan(tensors, metadata, "encode_safetensors");
  std::string bytes;
  bytes.reserve(layout.prefix.size() + layout.data_size);
  emit(layout, tensors, [&bytes](std::string_view piece) { bytes += piece; });
  return bytes;
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
  verify_and_remove_checksum(
      metadata, [&](const Metadata& without) { return header_json(entries, without); }, data, source);

  // 5. Only now, with every size known to be right, copy the data into tensors.
  SafetensorsContents contents;
  for (const Entry& e : entries) contents.tensors.emplace_back(e.name, read_tensor(e, data));
  contents.metadata = std::move(metadata);
  return contents;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata) {
  const Layout layout = plan(tensors, metadata, path);  // every check happens here, before any file
  // Written piece by piece: a checkpoint of a 7M-parameter model with Adam's
  // state is 84 MB, and building it in memory first doubled the training's
  // peak memory at every save (docs/10-speed.md, "Memory").
  write_file_atomically(path, [&](const WritePiece& write) { emit(layout, tensors, write); });
}

SafetensorsContents load_safetensors(const std::string& path) {
  return decode_safetensors(read_file(path), path);
}

}  // namespace attend::io
