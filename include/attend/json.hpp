// A tiny, strict JSON reader and a string quoter: just enough JSON for the
// header of a safetensors checkpoint, written by hand so it can be read.
// Chapter 4 (docs/04-modules-and-optimizers.md). The reader follows RFC 8259 and
// also rejects duplicate keys, invalid UTF-8 and nesting deeper than 64 levels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "attend/error.hpp"

namespace attend::io::json {

enum class Kind { Null, Bool, Number, String, Array, Object };

// "null", "boolean", "number", "string", "array" or "object", for messages.
const char* kind_name(Kind kind);

struct Member;  // one "key": value of an object, defined below

// One parsed JSON value: a tree. Only the fields of its kind are used.
struct Value {
  Kind kind = Kind::Null;
  size_t offset = 0;         // where the value starts in the text (for messages)
  bool boolean = false;      // Bool
  std::string text;          // String: the decoded UTF-8; Number: as written ("24", "-1.5e3")
  std::vector<Value> items;  // Array
  std::vector<Member> members;  // Object, in the order written

  // The member called `key` of an object, or nullptr when there is none.
  const Value* find(std::string_view key) const;
};

struct Member {
  std::string key;
  Value value;
};

// What parse() throws: the byte offset in the text where it gave up and why.
class ParseError : public Error {
 public:
  ParseError(size_t offset, const std::string& problem)
      : Error("JSON: at byte " + std::to_string(offset) + ": " + problem),
        offset_(offset),
        problem_(problem) {}
  size_t offset() const { return offset_; }
  const std::string& problem() const { return problem_; }

 private:
  size_t offset_;
  std::string problem_;
};

// Parses `text`, which must hold exactly one JSON value with optional
// whitespace around it, into a tree. Throws ParseError.
Value parse(std::string_view text);

// The value of a Number written as a plain non-negative integer ("0", "24"),
// or nothing when it is not one (negative, has a fraction or an exponent,
// not a number at all) or does not fit in 64 bits.
std::optional<uint64_t> to_uint64(const Value& value);

// `s` as a JSON string literal with its quotes: " and \ are escaped with a
// backslash, control characters (below 0x20) as \u00XX; every other byte,
// UTF-8 included, is copied as it is. "a\"b" -> "\"a\\\"b\"".
std::string quote(std::string_view s);

// The length (1 to 4) of the well-formed UTF-8 sequence that starts at
// s[pos], or 0 when there is none there (a stray continuation byte, a cut-off
// sequence, an overlong form, a UTF-16 surrogate, or a value above U+10FFFF).
size_t utf8_sequence_length(std::string_view s, size_t pos);

// True when all of `s` is well-formed UTF-8.
bool is_valid_utf8(std::string_view s);

}  // namespace attend::io::json
