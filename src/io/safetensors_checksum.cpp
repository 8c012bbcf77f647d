// Attend's checksum inside a safetensors file (see safetensors_checksum.hpp):
// CRC-32, its text form, and the damaged-key guard. Chapter 4, appendix
// (docs/04-modules-and-optimizers.md).
#include "safetensors_checksum.hpp"

#include <algorithm>
#include <array>
#include <vector>

#include "attend/json.hpp"

namespace attend::io {

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

}  // namespace

void refuse_checksum_keys(const Metadata& metadata, const std::string& context) {
  for (const auto& entry : metadata) {
    const std::string& key = entry.first;
    if (key == kChecksumKey) {
      throw Error(context + ": metadata key " + json::quote(key) + " is reserved for the checksum Attend adds itself");
    }
    if (looks_like_checksum_key(key)) {
      throw Error(context + ": metadata key " + json::quote(key) +
                  " is too close to \"attend.checksum\": a reader would take it for a damaged checksum key");
    }
  }
}

std::string checksum_text(std::string_view canonical_header, std::string_view data) {
  return checksum_text(crc32(data, crc32(canonical_header)));
}

std::string checksum_text(uint32_t crc_of_header_then_data) { return hex8(crc_of_header_then_data); }

void verify_and_remove_checksum(Metadata& metadata,
                                const std::function<std::string(const Metadata&)>& canonical_header,
                                std::string_view data, const std::string& source) {
  auto fail = [&](const std::string& problem) { throw Error(source + ": " + problem); };
  for (const auto& entry : metadata) {
    if (looks_like_checksum_key(entry.first)) {
      fail("metadata key " + json::quote(entry.first) +
           " looks like a damaged \"attend.checksum\" key (the file is damaged)");
    }
  }
  const auto checksum = metadata.find(std::string(kChecksumKey));
  if (checksum == metadata.end()) return;
  const std::string recorded = checksum->second;
  if (!is_hex8(recorded)) {
    fail("\"attend.checksum\" is " + json::quote(recorded.substr(0, 40)) + ", expected 8 lowercase hex digits");
  }
  metadata.erase(checksum);
  const std::string actual = checksum_text(canonical_header(metadata), data);
  if (actual != recorded) {
    fail("checksum mismatch: the header records " + recorded + " but the contents give " + actual +
         " (the file is damaged)");
  }
}

}  // namespace attend::io
