// Tests for chapter 4's checkpoint format (docs/04-modules-and-optimizers.md):
// the hand-written JSON reader, CRC-32, safetensors round trips and exact
// bytes, one test per kind of damage, a seeded fuzz test of damaged files,
// and atomic saves. Uses tensor.hpp, json.hpp and safetensors.hpp only.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "attend/files.hpp"
#include "attend/json.hpp"
#include "attend/random.hpp"
#include "attend/safetensors.hpp"
#include "attend/tensor.hpp"
#include "catch_compat.hpp"
#include "test_files.hpp"

using namespace attend;
namespace fs = std::filesystem;
using attend_test::read_file;
using attend_test::TempDir;
using attend_test::write_file;

namespace {

// `n` as 8 little-endian bytes: the safetensors header length field.
std::string le64(uint64_t n) {
  std::string s;
  for (int i = 0; i < 8; ++i) s += static_cast<char>((n >> (8 * i)) & 0xFF);
  return s;
}

// A safetensors file made by hand: length field, `header` as given, `data`.
std::string file_with(const std::string& header, const std::string& data = "") {
  return le64(header.size()) + header + data;
}

// `n` zero bytes of data.
std::string zeros_bytes(size_t n) { return std::string(n, '\0'); }

// The bit pattern of every element (so NaN, -0 and denormals compare exactly).
std::vector<uint64_t> bits_of(const Tensor& t) {
  std::vector<uint64_t> bits;
  if (t.dtype() == DType::Float32) {
    for (float v : t.to_vector()) {
      uint32_t b = 0;
      std::memcpy(&b, &v, 4);
      bits.push_back(b);
    }
  } else {
    for (int64_t v : t.to_index_vector()) bits.push_back(static_cast<uint64_t>(v));
  }
  return bits;
}

// True when `got` holds exactly `want`'s names (in order), dtypes, shapes and
// bit-identical values, and the same metadata.
bool same_contents(const io::SafetensorsContents& got, const NamedTensors& want, const io::Metadata& metadata) {
  if (got.metadata != metadata || got.tensors.size() != want.size()) return false;
  for (size_t i = 0; i < want.size(); ++i) {
    const auto& [name, t] = got.tensors[i];
    if (name != want[i].first || t.dtype() != want[i].second.dtype() || t.shape() != want[i].second.shape() ||
        bits_of(t) != bits_of(want[i].second)) {
      return false;
    }
  }
  return true;
}

// The names in `dir`, sorted.
std::vector<std::string> names_in(const TempDir& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir.path())) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Replaces the first `from` in `s` by `to` (which the test expects to be there).
std::string replaced(std::string s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  REQUIRE(at != std::string::npos);
  return s.replace(at, from.size(), to);
}

// The header length a file's first 8 bytes give (little-endian).
size_t header_length_of(const std::string& file) {
  size_t length = 0;
  for (int i = 7; i >= 0; --i) length = (length << 8) | static_cast<unsigned char>(file[static_cast<size_t>(i)]);
  return length;
}

// `file` with its header edited: the first `from` replaced by `to`, and the
// length field updated to match.
std::string edit_header(const std::string& file, const std::string& from, const std::string& to) {
  const size_t length = header_length_of(file);
  return file_with(replaced(file.substr(8, length), from, to), file.substr(8 + length));
}

// A small model-like checkpoint used by several tests.
NamedTensors sample_tensors() {
  Generator gen(7);
  return {{"emb.weight", randn({3, 4}, gen)},
          {"scale", scalar_tensor(0.5f)},
          {"empty", zeros({0, 5})},
          {"ids", from_indices({-3, 0, 1, 1000000000000, std::numeric_limits<int64_t>::min()}, {5})}};
}

io::Metadata sample_metadata() { return {{"config", "{\"d_model\": 4}"}, {"note", "h\xC3\xA9llo\n"}}; }

}  // namespace

// --- the building blocks: CRC-32 and JSON ---

TEST_CASE("crc32 gives the standard check values and can be continued", "[ch04]") {
  REQUIRE(io::crc32("") == 0u);
  REQUIRE(io::crc32("123456789") == 0xCBF43926u);  // the published check value of CRC-32
  REQUIRE(io::crc32("The quick brown fox jumps over the lazy dog") == 0x414FA339u);
  REQUIRE(io::crc32("6789", io::crc32("12345")) == io::crc32("123456789"));
}

TEST_CASE("json::parse reads values, escapes and surrogate pairs", "[ch04]") {
  const io::json::Value v = io::json::parse(
      " {\"a\": [1, -2.5e3, 0], \"s\": \"q\\\"b\\\\s\\/\\n\\t\\u00e9\\ud83d\\ude42\", \"t\": true, \"n\": null} ");
  REQUIRE(v.kind == io::json::Kind::Object);
  REQUIRE(v.members.size() == 4);
  REQUIRE(v.members[0].key == "a");  // the order written is kept
  const io::json::Value* a = v.find("a");
  REQUIRE(a != nullptr);
  REQUIRE(a->items.size() == 3);
  REQUIRE(a->items[1].text == "-2.5e3");
  REQUIRE(io::json::to_uint64(a->items[0]) == 1u);
  REQUIRE_FALSE(io::json::to_uint64(a->items[1]).has_value());
  REQUIRE(v.find("s")->text == "q\"b\\s/\n\t\xC3\xA9\xF0\x9F\x99\x82");  // é and U+1F642 as UTF-8
  REQUIRE(v.find("t")->boolean);
  REQUIRE(v.find("n")->kind == io::json::Kind::Null);
  REQUIRE(v.find("missing") == nullptr);

  REQUIRE(io::json::to_uint64(io::json::parse("18446744073709551615")) == UINT64_MAX);
  REQUIRE_FALSE(io::json::to_uint64(io::json::parse("18446744073709551616")).has_value());  // overflows
}

TEST_CASE("json::quote escapes what JSON requires and parse undoes it", "[ch04]") {
  REQUIRE(io::json::quote("a\"b\\c") == "\"a\\\"b\\\\c\"");
  REQUIRE(io::json::quote(std::string("\n\x01\x1f", 3)) == "\"\\u000a\\u0001\\u001f\"");
  REQUIRE(io::json::quote("\xC3\xA9") == "\"\xC3\xA9\"");  // UTF-8 is copied as it is
  static const char raw[] = "nul\0 \"q\" \\ \r\n\t \x7f \xE4\xB8\x96 \xF0\x9F\x99\x82";
  const std::string tricky(raw, sizeof raw - 1);  // with the NUL inside
  REQUIRE(io::json::parse(io::json::quote(tricky)).text == tricky);
}

TEST_CASE("json::parse rejects malformed text and says at which byte", "[ch04]") {
  auto offset_of = [](const std::string& text) -> size_t {
    try {
      io::json::parse(text);
    } catch (const io::json::ParseError& e) {
      return e.offset();
    }
    return std::string::npos;
  };
  REQUIRE(offset_of("{\"a\" 1}") == 5);
  REQUIRE(offset_of("[1, 2,]") == 6);
  REQUIRE(offset_of("{\"a\": 1} x") == 9);
  REQUIRE(offset_of("") == 0);
  REQUIRE_THROWS_MENTIONING(io::json::parse("{\"a\":1,\"a\":2}"), "at byte 7", "duplicate key \"a\"");
  REQUIRE_THROWS_MENTIONING(io::json::parse("[01]"), "leading zero");
  REQUIRE_THROWS_MENTIONING(io::json::parse("[1.]"), "invalid number");
  REQUIRE_THROWS_MENTIONING(io::json::parse("[-]"), "invalid number");
  REQUIRE_THROWS_MENTIONING(io::json::parse("tru"), "invalid literal");
  REQUIRE_THROWS_MENTIONING(io::json::parse("\"abc"), "unterminated string");
  REQUIRE_THROWS_MENTIONING(io::json::parse("\"a\nb\""), "control character");
  REQUIRE_THROWS_MENTIONING(io::json::parse("\"\\x\""), "invalid escape");
  REQUIRE_THROWS_MENTIONING(io::json::parse("\"\\u12G4\""), "hex digit");
  REQUIRE_THROWS_MENTIONING(io::json::parse("\"\\ud800\""), "high surrogate");
  REQUIRE_THROWS_MENTIONING(io::json::parse("\"\\ud800\\u0041\""), "high surrogate");
  REQUIRE_THROWS_MENTIONING(io::json::parse("\"\\udc00\""), "low surrogate");
  REQUIRE_THROWS_MENTIONING(io::json::parse(std::string(100, '[') + std::string(100, ']')), "nested more than 64");
  // Invalid UTF-8: a stray continuation byte, a cut-off sequence, an overlong
  // '/', an encoded surrogate, a code point above U+10FFFF.
  for (const char* bad : {"\"\x80\"", "\"\xC3\"", "\"\xC0\xAF\"", "\"\xED\xA0\x80\"", "\"\xF4\x90\x80\x80\""}) {
    REQUIRE_THROWS_MENTIONING(io::json::parse(bad), "invalid UTF-8");
  }
  REQUIRE(io::json::is_valid_utf8("h\xC3\xA9 \xE4\xB8\x96 \xF0\x9F\x99\x82"));
  REQUIRE_FALSE(io::json::is_valid_utf8("\xFF"));
}

// --- round trips ---

TEST_CASE("safetensors round trip: float and int64, 0-d, empty and non-contiguous tensors", "[ch04]") {
  const Tensor base = from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor transposed = base.t();  // (3, 2), not contiguous
  const Tensor strided = arange(10).slice(0, 1, 9, 3);  // [1, 4, 7]: stride 3
  const Tensor expanded = from_vector({1, 2}, {2, 1}).expand({2, 3});  // stride 0
  const float inf = std::numeric_limits<float>::infinity();
  const Tensor special = from_vector({inf, -inf, std::nanf(""), -0.0f, 1e-45f, 3.4e38f}, {6});
  const Tensor ids = from_indices({std::numeric_limits<int64_t>::min(), -1, 0, 1, 42,
                                   std::numeric_limits<int64_t>::max()},
                                  {2, 3});
  REQUIRE_FALSE(transposed.is_contiguous());
  REQUIRE_FALSE(strided.is_contiguous());
  REQUIRE_FALSE(expanded.is_contiguous());

  // Names in an order that is not sorted: the order must be kept.
  const NamedTensors tensors = {{"z.last_name_first", base},
                                {"transposed", transposed},
                                {"strided", strided},
                                {"expanded", expanded},
                                {"scalar", scalar_tensor(-2.5f)},
                                {"empty", zeros({0, 4})},
                                {"empty_ids", from_indices({}, {3, 0})},
                                {"special", special},
                                {"ids", ids},
                                {"ids_t", ids.t()},
                                {"encoder.layers.0.self_attn.q_proj.weight", ones({2, 2})},
                                {"\xE5\x90\x8D\xE5\x89\x8D", scalar_tensor(1.0f)}};  // a Japanese name
  const io::Metadata metadata = {{"quotes", "say \"hi\""},
                             {"backslash", "C:\\path\\"},
                             {"newlines", "line 1\nline 2\r\n\ttabbed"},
                             {"control", std::string("nul\0bell\x07", 9)},
                             {"unicode", "h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x99\x82"},
                             {"", "an empty key"},
                             {"config", "{\"d_model\": 512, \"heads\": [8]}"}};

  const std::string bytes = io::encode_safetensors(tensors, metadata);
  REQUIRE(io::encode_safetensors(tensors, metadata) == bytes);  // deterministic
  const io::SafetensorsContents back = io::decode_safetensors(bytes, "memory");
  REQUIRE(same_contents(back, tensors, metadata));
  for (const auto& [name, t] : back.tensors) {
    INFO(name);
    REQUIRE(t.is_contiguous());
  }
  // Spot checks in plain numbers, not only bit patterns.
  REQUIRE(back.tensors[1].second.to_vector() == std::vector<float>{1, 4, 2, 5, 3, 6});
  REQUIRE(back.tensors[2].second.to_vector() == std::vector<float>{1, 4, 7});
  REQUIRE(back.tensors[3].second.to_vector() == std::vector<float>{1, 1, 1, 2, 2, 2});
  REQUIRE(back.tensors[4].second.dim() == 0);
  REQUIRE(back.tensors[4].second.item() == -2.5f);
  REQUIRE(back.tensors[6].second.dtype() == DType::Int64);
  REQUIRE(back.tensors[6].second.shape() == Shape{3, 0});
  REQUIRE(std::isnan(back.tensors[7].second.to_vector()[2]));

  // Nothing at all is a valid file too.
  REQUIRE(same_contents(io::decode_safetensors(io::encode_safetensors({}, {}), "memory"), {}, {}));

  // The same through files.
  TempDir dir("ch04_safetensors");
  const std::string path = dir.file("model.safetensors");
  io::save_safetensors(path, tensors, metadata);
  REQUIRE(read_file(path) == bytes);
  REQUIRE(same_contents(io::load_safetensors(path), tensors, metadata));
}

TEST_CASE("safetensors: the exact bytes of a tiny file", "[ch04]") {
  const NamedTensors tensors = {{"a", from_vector({1.0f, -2.0f}, {2})}, {"b", from_indices({7}, {})}};
  const std::string bytes = io::encode_safetensors(tensors, {{"k", "v"}});

  // The checksum: CRC-32 of the canonical header (no checksum entry, no
  // padding) followed by the data. 3ef4b351 was computed independently with
  // Python's zlib.crc32 over the same 145 + 16 bytes.
  const std::string canonical =
      R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"I64","shape":[],"data_offsets":[8,16]}})";
  const std::string data =
      std::string("\x00\x00\x80\x3f", 4) +              // 1.0f  = 0x3f800000, little-endian
      std::string("\x00\x00\x00\xc0", 4) +              // -2.0f = 0xc0000000
      std::string("\x07\x00\x00\x00\x00\x00\x00\x00", 8);  // 7 as int64
  REQUIRE(io::crc32(data, io::crc32(canonical)) == 0x3ef4b351u);

  const std::string header =
      R"({"__metadata__":{"attend.checksum":"3ef4b351","k":"v"},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"I64","shape":[],"data_offsets":[8,16]}})";
  REQUIRE(header.size() == 161);
  const std::string padding(7, ' ');                      // 8 + 161 + 7 = 176, a multiple of 8
  const std::string length("\xa8\0\0\0\0\0\0\0", 8);       // 168 = 0xa8
  REQUIRE(bytes == length + header + padding + data);
  REQUIRE(bytes.size() == 192);
}

TEST_CASE("safetensors: files from other tools (no checksum, other layout) load", "[ch04]") {
  // Whitespace, keys in another order, tensors listed out of data order,
  // __metadata__ last with \u escapes, a header length that is not a multiple of 8.
  const std::string header =
      "{ \"b\" : {\"data_offsets\": [8, 16], \"shape\": [], \"dtype\": \"I64\"},\n"
      "  \"a\": {\"shape\":[2],\"dtype\":\"F32\",\"data_offsets\":[0,8]},\n"
      "  \"__metadata__\": {\"format\": \"pt\", \"x\": \"\\u00e9\\ud83d\\ude42\"} }";
  const std::string data = std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8) +
                           std::string("\x07\x00\x00\x00\x00\x00\x00\x00", 8);
  const io::SafetensorsContents got = io::decode_safetensors(file_with(header, data), "other.safetensors");
  const NamedTensors want = {{"b", from_indices({7}, {})}, {"a", from_vector({1.0f, -2.0f}, {2})}};
  REQUIRE(same_contents(got, want, {{"format", "pt"}, {"x", "\xC3\xA9\xF0\x9F\x99\x82"}}));

  REQUIRE(io::decode_safetensors(file_with("{}"), "empty.safetensors").tensors.empty());
  REQUIRE(io::decode_safetensors(file_with("{\"__metadata__\":{}}      "), "m.safetensors").metadata.empty());
}

// --- damage: each problem gives "<file>: <problem>" ---

TEST_CASE("safetensors: damaged framing (too short, bad header length, bad JSON)", "[ch04]") {
  const std::string src = "bad.safetensors";
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors("", src), "bad.safetensors: ", "0 bytes long", "too short");
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(std::string("\x02\x00\x00", 3), src), "bad.safetensors: ",
                            "too short");
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(le64(100) + "{}", src), "bad.safetensors: ",
                            "header length 100 runs past the end of the file", "only 2 bytes");
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(le64(uint64_t{1} << 40) + "{}", src), "bad.safetensors: ",
                            "over the limit of 100000000 bytes");
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(le64(UINT64_MAX) + "{}", src), "bad.safetensors: ", "over the limit");
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(file_with(""), src), "bad.safetensors: ", "malformed JSON header",
                            "expected a value");
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(file_with("{\"a\" 1}"), src), "bad.safetensors: ",
                            "malformed JSON header at byte 5 of the header (byte 13 of the file)", "expected ':'");
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(file_with("{\"a\":{}"), src), "bad.safetensors: ",
                            "malformed JSON header at byte 7", "expected ',' or '}'");
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(file_with("{\"\xff\":{}}"), src), "bad.safetensors: ",
                            "invalid UTF-8");
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(file_with(std::string("{} \x00", 4)), src), "bad.safetensors: ",
                            "after the JSON value");
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(file_with(std::string(200, '[')), src), "bad.safetensors: ",
                            "nested more than 64 levels");
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(file_with("[1, 2]"), src), "bad.safetensors: ",
                            "the header is a JSON array, expected a JSON object");
}

TEST_CASE("safetensors: damaged tensor entries (names, keys, types, dtypes, shapes)", "[ch04]") {
  const std::string src = "bad.safetensors";
  const std::string ok = R"("dtype":"F32","shape":[2],"data_offsets":[0,8])";
  auto decode = [&](const std::string& header, size_t data_bytes = 8) {
    return io::decode_safetensors(file_with(header, zeros_bytes(data_bytes)), src);
  };
  REQUIRE_NOTHROW(decode("{\"w\":{" + ok + "}}"));

  REQUIRE_THROWS_MENTIONING(decode("{\"w\":{" + ok + "},\"w\":{" + ok + "}}"), "bad.safetensors: ",
                            "duplicate key \"w\"");
  REQUIRE_THROWS_MENTIONING(decode(R"({"w":5})"), "bad.safetensors: ", "tensor \"w\": its entry is 5",
                            "expected an object");
  REQUIRE_THROWS_MENTIONING(decode(R"({"w":{"shape":[2],"data_offsets":[0,8]}})"), "bad.safetensors: ",
                            "tensor \"w\": missing \"dtype\"");
  REQUIRE_THROWS_MENTIONING(decode(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})"), "bad.safetensors: ",
                            "tensor \"w\": missing \"shape\"");
  REQUIRE_THROWS_MENTIONING(decode(R"({"w":{"dtype":"F32","shape":[2]}})"), "bad.safetensors: ",
                            "tensor \"w\": missing \"data_offsets\"");
  REQUIRE_THROWS_MENTIONING(decode("{\"w\":{" + ok + ",\"extra\":1}}"), "bad.safetensors: ",
                            "tensor \"w\": unexpected key \"extra\"");
  REQUIRE_THROWS_MENTIONING(decode(R"({"w":{"dtype":32,"shape":[2],"data_offsets":[0,8]}})"),
                            "bad.safetensors: ", "\"dtype\" is 32, expected a string");
  REQUIRE_THROWS_MENTIONING(decode(R"({"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})"),
                            "bad.safetensors: ", "\"shape\" is \"2\", expected an array");
  REQUIRE_THROWS_MENTIONING(decode(R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})"),
                            "bad.safetensors: ", "shape size 2.0 is not a non-negative 64-bit integer");
  REQUIRE_THROWS_MENTIONING(decode(R"({"w":{"dtype":"F32","shape":[null],"data_offsets":[0,8]}})"),
                            "bad.safetensors: ", "shape size a JSON null");
  REQUIRE_THROWS_MENTIONING(decode(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})"),
                            "bad.safetensors: ", "\"data_offsets\" must be an array [begin, end]");
  REQUIRE_THROWS_MENTIONING(decode(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":{}}})"),
                            "bad.safetensors: ", "\"data_offsets\" must be an array [begin, end]");
  REQUIRE_THROWS_MENTIONING(decode(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,"8"]}})"),
                            "bad.safetensors: ", "data_offsets entry \"8\" is not a non-negative");
  REQUIRE_THROWS_MENTIONING(decode(R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})"),
                            "bad.safetensors: ", "tensor \"w\": unknown dtype \"Q4\"");
  REQUIRE_THROWS_MENTIONING(decode(R"({"w":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}})"),
                            "bad.safetensors: ", "dtype \"F16\" is not supported");
  // Negative and absurd shapes: a forged size must never become an allocation.
  REQUIRE_THROWS_MENTIONING(decode(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}})"),
                            "bad.safetensors: ", "shape size -1 is not a non-negative");
  REQUIRE_THROWS_MENTIONING(
      decode(R"({"w":{"dtype":"F32","shape":[99999999999999999999999],"data_offsets":[0,8]}})"),
      "bad.safetensors: ", "shape size 99999999999999999999999 is not a non-negative 64-bit integer");
  REQUIRE_THROWS_MENTIONING(
      decode(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})"),
      "bad.safetensors: ", "shape is too large");
  // Empty, but the other sizes would overflow a stride: also refused.
  REQUIRE_THROWS_MENTIONING(
      decode(R"({"w":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})", 0),
      "bad.safetensors: ", "shape is too large");
  // Huge but empty within the cap is fine: no memory is needed.
  REQUIRE(decode(R"({"w":{"dtype":"F32","shape":[1073741824,0],"data_offsets":[0,0]}})", 0)
              .tensors[0]
              .second.numel() == 0);
}

TEST_CASE("safetensors: damaged offsets (out of range, reversed, overlapping, gaps, wrong size)", "[ch04]") {
  const std::string src = "bad.safetensors";
  auto entry = [](const std::string& name, const std::string& shape, uint64_t begin, uint64_t end) {
    return "\"" + name + "\":{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":[" +
           std::to_string(begin) + "," + std::to_string(end) + "]}";
  };
  auto decode = [&](const std::string& entries, size_t data_bytes) {
    return io::decode_safetensors(file_with("{" + entries + "}", zeros_bytes(data_bytes)), src);
  };
  REQUIRE_THROWS_MENTIONING(decode(entry("w", "[2]", 0, 100), 8), "bad.safetensors: ",
                            "data_offsets [0, 100] run past the end of the data section (8 bytes)");
  REQUIRE_THROWS_MENTIONING(decode(entry("w", "[2]", UINT64_MAX - 7, UINT64_MAX), 8), "bad.safetensors: ",
                            "run past the end of the data section");
  REQUIRE_THROWS_MENTIONING(decode(entry("w", "[2]", 8, 0), 8), "bad.safetensors: ",
                            "data_offsets [8, 0] begin after they end");
  REQUIRE_THROWS_MENTIONING(decode(entry("w", "[3]", 0, 8), 8), "bad.safetensors: ",
                            "data_offsets [0, 8] hold 8 bytes, but shape (3,) of F32 needs 12");
  REQUIRE_THROWS_MENTIONING(decode(entry("a", "[2]", 0, 8) + "," + entry("b", "[2]", 4, 12), 12),
                            "bad.safetensors: ", "tensors \"a\" (bytes [0, 8)) and \"b\" (bytes [4, 12)) overlap");
  REQUIRE_THROWS_MENTIONING(decode(entry("a", "[2]", 0, 8) + "," + entry("b", "[2]", 0, 8), 8),
                            "bad.safetensors: ", "overlap");
  REQUIRE_THROWS_MENTIONING(decode(entry("a", "[2]", 0, 8) + "," + entry("b", "[2]", 12, 20), 20),
                            "bad.safetensors: ", "bytes [8, 12) of the data section belong to no tensor",
                            "a gap before \"b\"");
  REQUIRE_THROWS_MENTIONING(decode(entry("w", "[2]", 4, 12), 12), "bad.safetensors: ",
                            "bytes [0, 4) of the data section belong to no tensor");
  REQUIRE_THROWS_MENTIONING(decode(entry("w", "[2]", 0, 8), 12), "bad.safetensors: ",
                            "bytes [8, 12) at the end of the data section belong to no tensor");
  REQUIRE_THROWS_MENTIONING(decode("", 3), "bad.safetensors: ", "bytes [0, 3) at the end");
  // Out of data order but tiling the section exactly is fine.
  REQUIRE(decode(entry("b", "[1]", 4, 8) + "," + entry("a", "[1]", 0, 4) + "," + entry("e", "[0]", 8, 8), 8)
              .tensors.size() == 3);
}

TEST_CASE("safetensors: damaged metadata and checksum", "[ch04]") {
  const std::string src = "bad.safetensors";
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(file_with(R"({"__metadata__":[]})"), src), "bad.safetensors: ",
                            "\"__metadata__\" is a JSON array, expected an object of strings");
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(file_with(R"({"__metadata__":{"k":1}})"), src),
                            "bad.safetensors: ", "metadata value for \"k\" is 1, expected a string");
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(file_with(R"({"__metadata__":{"k":{"x":"y"}}})"), src),
                            "bad.safetensors: ", "metadata value for \"k\" is a JSON object");

  // A valid file, then changes that keep it well-formed: only the checksum can tell.
  const NamedTensors tensors = {{"w", from_vector({1, 2, 3, 4, 5, 6}, {2, 3})}};
  const std::string good = io::encode_safetensors(tensors, {{"k", "v"}});
  REQUIRE(same_contents(io::decode_safetensors(good, src), tensors, {{"k", "v"}}));
  const std::string flipped_data = good.substr(0, good.size() - 1) + '\x01';
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(flipped_data, src), "bad.safetensors: ", "checksum mismatch",
                            "the file is damaged");
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(replaced(good, "[2,3]", "[3,2]"), src), "bad.safetensors: ",
                            "checksum mismatch");
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(replaced(good, "\"w\"", "\"x\""), src), "bad.safetensors: ",
                            "checksum mismatch");
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(replaced(good, "\"k\":\"v\"", "\"k\":\"u\""), src),
                            "bad.safetensors: ", "checksum mismatch");
  // Same meaning, other spelling ("\u0076" is "v"): the checksum covers meaning, so this loads.
  REQUIRE(same_contents(io::decode_safetensors(edit_header(good, "\"k\":\"v\"}", "\"k\":\"\\u0076\"}"), src), tensors,
                        {{"k", "v"}}));

  // The checksum cannot vouch for its own key: a key a few edits away from
  // "attend.checksum" is taken for a damaged one, not for a foreign file's.
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(replaced(good, "attend.checksum", "attend.chEcksum"), src),
                            "bad.safetensors: ", "metadata key \"attend.chEcksum\" looks like a damaged");
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(edit_header(good, "attend.checksum", "att\\nd.checksum"), src),
                            "bad.safetensors: ", "looks like a damaged \"attend.checksum\" key");

  const size_t at = good.find("attend.checksum\":\"") + 18;
  std::string not_hex = good;
  not_hex[at] = 'G';
  REQUIRE_THROWS_MENTIONING(io::decode_safetensors(not_hex, src), "bad.safetensors: ", "\"attend.checksum\" is",
                            "expected 8 lowercase hex digits");
}

TEST_CASE("safetensors: file problems (missing, a directory, too short) name the file", "[ch04]") {
  TempDir dir("ch04_safetensors");
  const std::string missing = dir.file("missing.safetensors");
  const std::string missing_message = missing + ": cannot open";
  REQUIRE_THROWS_MENTIONING(io::load_safetensors(missing), missing_message.c_str(), "No such file");
  const std::string dir_message = dir.path().string() + ": cannot read: it is a directory";
  REQUIRE_THROWS_MENTIONING(io::load_safetensors(dir.path().string()), dir_message.c_str());
  const std::string short_file = dir.file("short.safetensors");
  write_file(short_file, "abc");
  const std::string short_message = short_file + ": the file is 3 bytes long";
  REQUIRE_THROWS_MENTIONING(io::load_safetensors(short_file), short_message.c_str());
}

// --- fuzzing: damage at random, from a fixed seed ---

TEST_CASE("safetensors fuzz: thousands of damaged files are rejected or read back exactly", "[ch04]") {
  const NamedTensors tensors = sample_tensors();
  const io::Metadata metadata = sample_metadata();
  const std::string good = io::encode_safetensors(tensors, metadata);
  const size_t header_end = 8 + header_length_of(good);
  REQUIRE(header_end < good.size());

  Generator gen(2024);
  auto below = [&](size_t n) { return static_cast<size_t>(gen.randint(static_cast<int64_t>(n))); };
  enum { kTruncate, kOneFlip, kManyFlips, kHeaderBytes, kAnyBytes, kKinds };
  const int per_kind = 800;  // 4000 damaged files in all
  int rejected[kKinds] = {}, identical[kKinds] = {};
  for (int kind = 0; kind < kKinds; ++kind) {
    for (int i = 0; i < per_kind; ++i) {
      std::string bad = good;
      switch (kind) {
        case kTruncate: bad.resize(below(good.size())); break;
        case kOneFlip: bad[below(bad.size())] ^= static_cast<char>(1 << below(8)); break;
        case kManyFlips:
          for (size_t f = 2 + below(7); f > 0; --f) bad[below(bad.size())] ^= static_cast<char>(1 << below(8));
          break;
        case kHeaderBytes:
          for (size_t f = 1 + below(4); f > 0; --f) bad[8 + below(header_end - 8)] = static_cast<char>(below(256));
          break;
        case kAnyBytes: bad[below(bad.size())] = static_cast<char>(below(256)); break;
      }
      try {
        const io::SafetensorsContents got = io::decode_safetensors(bad, "fuzz.safetensors");
        INFO("damage kind " << kind << ", case " << i << ": decoded to something");
        REQUIRE(same_contents(got, tensors, metadata));  // never different values
        ++identical[kind];
      } catch (const Error& e) {
        INFO(e.what());
        REQUIRE(std::string(e.what()).rfind("fuzz.safetensors: ", 0) == 0);
        ++rejected[kind];
      }
    }
  }
  // Every truncation and every single bit flip changes something the reader
  // checks (CRC-32 catches every single-bit error), so all must be rejected.
  REQUIRE(rejected[kTruncate] == per_kind);
  REQUIRE(rejected[kOneFlip] == per_kind);
  for (int kind = 0; kind < kKinds; ++kind) REQUIRE(rejected[kind] + identical[kind] == per_kind);
}

// --- encoding rejects what it cannot write ---

TEST_CASE("encode_safetensors rejects undefined tensors, bad names and reserved keys", "[ch04]") {
  const Tensor t = ones({2});
  REQUIRE_THROWS_MENTIONING(io::encode_safetensors({{"w", Tensor()}}, {}), "encode_safetensors: ",
                            "tensor \"w\" is undefined");
  REQUIRE_THROWS_MENTIONING(io::encode_safetensors({{"w", t}, {"w", t}}, {}), "tensor name \"w\" is used twice");
  REQUIRE_THROWS_MENTIONING(io::encode_safetensors({{"", t}}, {}), "empty name");
  REQUIRE_THROWS_MENTIONING(io::encode_safetensors({{"__metadata__", t}}, {}), "\"__metadata__\" is reserved");
  REQUIRE_THROWS_MENTIONING(io::encode_safetensors({{"bad\xff", t}}, {}), "is not valid UTF-8");
  REQUIRE_THROWS_MENTIONING(io::encode_safetensors({}, {{"attend.checksum", "00000000"}}),
                            "\"attend.checksum\" is reserved");
  REQUIRE_THROWS_MENTIONING(io::encode_safetensors({}, {{"k", "\xC0\xAF"}}), "metadata value for \"k\"",
                            "not valid UTF-8");
  REQUIRE_THROWS_MENTIONING(io::encode_safetensors({}, {{"attend.checksums", "x"}}),
                            "metadata key \"attend.checksums\" is too close to \"attend.checksum\"");
  REQUIRE_NOTHROW(io::encode_safetensors({}, {{"attend.version", "1"}, {"checksum", "x"}}));
}

// --- atomic saves ---

TEST_CASE("save_safetensors replaces a file atomically and leaves it intact on failure", "[ch04]") {
  TempDir dir("ch04_safetensors");
  const std::string path = dir.file("model.safetensors");
  const std::string path_prefix = path + ": ";
  const NamedTensors first = {{"w", from_vector({1, 2}, {2})}};
  const NamedTensors second = sample_tensors();

  io::save_safetensors(path, first, {{"step", "1"}});
  io::save_safetensors(path, second, {{"step", "2"}});  // over an existing file
  REQUIRE(same_contents(io::load_safetensors(path), second, {{"step", "2"}}));
  REQUIRE(names_in(dir) == std::vector<std::string>{"model.safetensors"});
  const std::string saved = read_file(path);

  // An invalid tensor is found before anything is written.
  REQUIRE_THROWS_MENTIONING(io::save_safetensors(path, {{"ok", ones({2})}, {"bad", Tensor()}}, {}), path_prefix.c_str(),
                            "tensor \"bad\" is undefined");
  REQUIRE(read_file(path) == saved);
  REQUIRE(names_in(dir) == std::vector<std::string>{"model.safetensors"});

  // A directory that does not exist: the temporary file cannot be created.
  const std::string nowhere = dir.file("no/such/dir/model.safetensors");
  const std::string nowhere_prefix = nowhere + ": ";
  REQUIRE_THROWS_MENTIONING(io::save_safetensors(nowhere, first, {}), nowhere_prefix.c_str(),
                            "cannot create the temporary file", "No such file or directory");
  REQUIRE(names_in(dir) == std::vector<std::string>{"model.safetensors"});

  // The target is a directory: the data is written, the rename fails, and the
  // temporary file must be cleaned up.
  const std::string taken = dir.file("taken");
  fs::create_directory(taken);
  const std::string taken_prefix = taken + ": ";
  REQUIRE_THROWS_MENTIONING(io::save_safetensors(taken, first, {}), taken_prefix.c_str(), "cannot rename");
  REQUIRE(fs::is_directory(taken));
  REQUIRE(names_in(dir) == std::vector<std::string>{"model.safetensors", "taken"});
  REQUIRE(read_file(path) == saved);
  REQUIRE(same_contents(io::load_safetensors(path), second, {{"step", "2"}}));

  // Written in pieces (as save_safetensors writes): a producer that fails
  // half-way leaves the old file and no temporary file behind.
  REQUIRE_THROWS_MENTIONING(io::write_file_atomically(path,
                                                      [](const io::WritePiece& write) {
                                                        write("half of a file");
                                                        throw Error("the producer failed");
                                                      }),
                            "the producer failed");
  REQUIRE(read_file(path) == saved);
  REQUIRE(names_in(dir) == std::vector<std::string>{"model.safetensors", "taken"});
  io::write_file_atomically(path, [](const io::WritePiece& write) {
    write("one ");
    write("");
    write("two");
  });
  REQUIRE(read_file(path) == "one two");
}
