// Checkpoints as safetensors files: an 8-byte little-endian header length, a
// JSON header (name -> dtype, shape, data_offsets; "__metadata__" -> strings),
// then the raw little-endian tensor data. Chapter 4 (docs/04-modules-and-optimizers.md).
// Attend adds an "attend.checksum" metadata entry (CRC-32) and writes atomically.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "attend/tensor.hpp"

namespace attend::io {

using Metadata = std::map<std::string, std::string>;

struct SafetensorsContents {
  NamedTensors tensors;  // in the order the header lists them
  Metadata metadata;     // without "attend.checksum", which the reader checks and removes
};

// The metadata key under which Attend stores its checksum (8 lowercase hex digits).
inline constexpr std::string_view kChecksumKey = "attend.checksum";

// The largest header decode_safetensors accepts, in bytes (the limit the
// reference implementation uses too): a forged length cannot make it read more.
inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// The bytes of a safetensors file holding `tensors` (Float32 -> "F32",
// Int64 -> "I64"; any layout, written row-major) and `metadata`, plus the
// "attend.checksum" entry. Deterministic: tensors and their data in the given
// order, no gaps, the header padded with spaces so the data starts at a
// multiple of 8. Throws attend::Error for an undefined tensor, an empty,
// repeated or reserved ("__metadata__") name, the reserved metadata key
// "attend.checksum", or a name, key or value that is not valid UTF-8.
std::string encode_safetensors(const NamedTensors& tensors, const Metadata& metadata);

// Parses and validates the bytes of a safetensors file and returns contiguous
// tensors of its dtypes (F32 or I64) and shapes, and its metadata. Every
// check is made before anything is trusted; a problem throws attend::Error
// with the message "<source>: <problem>" (`source` is normally a file name).
SafetensorsContents decode_safetensors(const std::string& bytes, const std::string& source);

// Writes encode_safetensors(tensors, metadata) to `path` atomically: into a
// temporary file in the same directory, flushed and fsync'ed, then renamed
// over `path`. On any error `path` is left as it was, the temporary file is
// removed, and attend::Error says "<path>: <problem>".
void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata);

// Reads the file at `path` and decodes it (errors start with "<path>: ").
SafetensorsContents load_safetensors(const std::string& path);

// The CRC-32 of `bytes` (the checksum of zip, gzip and PNG: polynomial
// 0xEDB88320, reflected). Pass the CRC of earlier bytes as `previous` to
// continue it: crc32(b, crc32(a)) == crc32(a + b). crc32("123456789") == 0xCBF43926.
uint32_t crc32(std::string_view bytes, uint32_t previous = 0);

}  // namespace attend::io
