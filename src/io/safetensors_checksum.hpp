// Attend's checksum inside a safetensors file: the CRC-32 of the canonical
// header and the data, stored as metadata "attend.checksum", and a guard
// against a damaged checksum key. Hardening around chapter 4's format
// (docs/04-modules-and-optimizers.md, appendix); not needed to read the format.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "attend/safetensors.hpp"

namespace attend::io {

// "<context>: ..." Error for a metadata key the writer must not accept: the
// checksum key itself, or one so close to it that a reader would take it for
// a damaged checksum key.
void refuse_checksum_keys(const Metadata& metadata, const std::string& context);

// The checksum of a file whose canonical header (without the checksum entry)
// is `canonical_header` and whose data section is `data`: 8 lowercase hex digits.
std::string checksum_text(std::string_view canonical_header, std::string_view data);
// The same from the CRC-32 computed piece by piece: crc32(data, crc32(canonical_header)).
std::string checksum_text(uint32_t crc_of_header_then_data);

// On reading: refuses a damaged checksum key; if the metadata holds
// "attend.checksum", checks it against `canonical_header(metadata without it)`
// and `data` and removes it. Errors are "<source>: <problem>".
void verify_and_remove_checksum(Metadata& metadata,
                                const std::function<std::string(const Metadata&)>& canonical_header,
                                std::string_view data, const std::string& source);

}  // namespace attend::io
