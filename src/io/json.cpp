// A strict recursive-descent JSON parser and a string quoter, for safetensors
// headers. Chapter 4 (docs/04-modules-and-optimizers.md). The grammar is RFC 8259's;
// each parse_* function reads one kind of value starting at pos_ and leaves
// pos_ just after it, or throws ParseError naming the byte where it stopped.
#include "attend/json.hpp"

#include <set>
#include <utility>

namespace attend::io::json {

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::Null: return "null";
    case Kind::Bool: return "boolean";
    case Kind::Number: return "number";
    case Kind::String: return "string";
    case Kind::Array: return "array";
    case Kind::Object: return "object";
  }
  return "?";
}

const Value* Value::find(std::string_view key) const {
  for (const auto& [name, value] : members) {
    if (name == key) return &value;
  }
  return nullptr;
}

size_t utf8_sequence_length(std::string_view s, size_t pos) {
  // The lead byte says how many bytes follow (110xxxxx: 1, 1110xxxx: 2,
  // 11110xxx: 3), each of the form 10xxxxxx and carrying 6 more bits.
  const auto lead = static_cast<unsigned char>(s[pos]);
  size_t length = 0;
  uint32_t code_point = 0;
  uint32_t smallest = 0;  // anything below this is an overlong (non-shortest) form
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) {
    length = 2;
    code_point = lead & 0x1F;
    smallest = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    code_point = lead & 0x0F;
    smallest = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4;
    code_point = lead & 0x07;
    smallest = 0x10000;
  } else {
    return 0;  // a continuation byte (10xxxxxx) or 0xF8..0xFF cannot start a sequence
  }
  if (length > s.size() - pos) return 0;
  for (size_t i = 1; i < length; ++i) {
    const auto next = static_cast<unsigned char>(s[pos + i]);
    if ((next & 0xC0) != 0x80) return 0;
    code_point = (code_point << 6) | (next & 0x3F);
  }
  if (code_point < smallest || code_point > 0x10FFFF) return 0;
  if (code_point >= 0xD800 && code_point <= 0xDFFF) return 0;  // surrogates are UTF-16 only
  return length;
}

bool is_valid_utf8(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    const size_t length = utf8_sequence_length(s, pos);
    if (length == 0) return false;
    pos += length;
  }
  return true;
}

std::string quote(std::string_view s) {
  static const char* const hex = "0123456789abcdef";
  std::string out = "\"";
  for (const char c : s) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20) {
      out += "\\u00";
      out += hex[byte >> 4];
      out += hex[byte & 0xF];
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::optional<uint64_t> to_uint64(const Value& value) {
  if (value.kind != Kind::Number || value.text.empty()) return std::nullopt;
  uint64_t n = 0;
  for (const char c : value.text) {
    if (c < '0' || c > '9') return std::nullopt;  // '-', '.', 'e': not a plain non-negative integer
    const auto digit = static_cast<uint64_t>(c - '0');
    if (n > (UINT64_MAX - digit) / 10) return std::nullopt;  // n * 10 + digit would overflow
    n = n * 10 + digit;
  }
  return n;
}

namespace {

constexpr int kMaxDepth = 64;  // deeper nesting is refused, so a forged "[[[[..." cannot overflow the stack

// Appends code point `cp` (at most U+10FFFF) to `out` as UTF-8.
void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  // The whole text: one value, with only whitespace around it.
  Value parse_document() {
    skip_whitespace();
    Value value = parse_value(0);
    skip_whitespace();
    if (pos_ != s_.size()) fail("unexpected " + describe_here() + " after the JSON value");
    return value;
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;

  [[noreturn]] void fail(const std::string& problem) const { throw ParseError(pos_, problem); }

  bool at_end() const { return pos_ >= s_.size(); }

  // The byte at pos_ for a message: 'x' when printable ASCII, else 0xNN.
  std::string describe_here() const {
    if (at_end()) return "end of text";
    const auto c = static_cast<unsigned char>(s_[pos_]);
    if (c >= 0x20 && c < 0x7F) return std::string("'") + static_cast<char>(c) + "'";
    static const char* const hex = "0123456789ABCDEF";
    return std::string("byte 0x") + hex[c >> 4] + hex[c & 0xF];
  }

  void skip_whitespace() {
    while (!at_end() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }

  void expect(char c) {
    if (at_end() || s_[pos_] != c) {
      fail(std::string("expected '") + c + "', found " + describe_here());
    }
    ++pos_;
  }

  // Any value; `depth` counts the arrays and objects around it.
  Value parse_value(int depth) {
    if (at_end()) fail("expected a value, found end of text");
    Value value;
    value.offset = pos_;
    switch (s_[pos_]) {
      case '{': parse_object(value, depth + 1); break;
      case '[': parse_array(value, depth + 1); break;
      case '"':
        value.kind = Kind::String;
        value.text = parse_string();
        break;
      case 't': parse_literal("true", value, Kind::Bool, true); break;
      case 'f': parse_literal("false", value, Kind::Bool, false); break;
      case 'n': parse_literal("null", value, Kind::Null, false); break;
      default:
        if (s_[pos_] == '-' || (s_[pos_] >= '0' && s_[pos_] <= '9')) {
          parse_number(value);
        } else {
          fail("expected a value, found " + describe_here());
        }
    }
    return value;
  }

  void parse_literal(std::string_view word, Value& value, Kind kind, bool boolean) {
    if (s_.substr(pos_, word.size()) != word) fail("invalid literal (expected " + std::string(word) + ")");
    pos_ += word.size();
    value.kind = kind;
    value.boolean = boolean;
  }

  // '{' [ string ':' value { ',' string ':' value } ] '}'; a repeated key is an error.
  void parse_object(Value& value, int depth) {
    if (depth > kMaxDepth) fail("nested more than " + std::to_string(kMaxDepth) + " levels deep");
    value.kind = Kind::Object;
    expect('{');
    skip_whitespace();
    if (!at_end() && s_[pos_] == '}') {
      ++pos_;
      return;
    }
    std::set<std::string> seen;
    while (true) {
      skip_whitespace();
      const size_t key_offset = pos_;
      if (at_end() || s_[pos_] != '"') fail("expected a string key, found " + describe_here());
      std::string key = parse_string();
      if (!seen.insert(key).second) {
        pos_ = key_offset;
        fail("duplicate key " + quote(key));
      }
      skip_whitespace();
      expect(':');
      skip_whitespace();
      Value member = parse_value(depth);
      value.members.push_back(Member{std::move(key), std::move(member)});
      skip_whitespace();
      if (!at_end() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (!at_end() && s_[pos_] == '}') {
        ++pos_;
        return;
      }
      fail("expected ',' or '}' in an object, found " + describe_here());
    }
  }

  // '[' [ value { ',' value } ] ']'
  void parse_array(Value& value, int depth) {
    if (depth > kMaxDepth) fail("nested more than " + std::to_string(kMaxDepth) + " levels deep");
    value.kind = Kind::Array;
    expect('[');
    skip_whitespace();
    if (!at_end() && s_[pos_] == ']') {
      ++pos_;
      return;
    }
    while (true) {
      skip_whitespace();
      value.items.push_back(parse_value(depth));
      skip_whitespace();
      if (!at_end() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (!at_end() && s_[pos_] == ']') {
        ++pos_;
        return;
      }
      fail("expected ',' or ']' in an array, found " + describe_here());
    }
  }

  // -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?  -- kept as text, see to_uint64().
  void parse_number(Value& value) {
    const size_t start = pos_;
    auto digit_here = [&] { return !at_end() && s_[pos_] >= '0' && s_[pos_] <= '9'; };
    auto digits = [&](const char* where) {
      if (!digit_here()) fail(std::string("invalid number: expected a digit ") + where);
      while (digit_here()) ++pos_;
    };
    if (s_[pos_] == '-') ++pos_;
    if (!at_end() && s_[pos_] == '0') {
      ++pos_;
      if (digit_here()) fail("invalid number: leading zero");
    } else {
      digits("after '-'");
    }
    if (!at_end() && s_[pos_] == '.') {
      ++pos_;
      digits("after '.'");
    }
    if (!at_end() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (!at_end() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      digits("in the exponent");
    }
    value.kind = Kind::Number;
    value.text = std::string(s_.substr(start, pos_ - start));
  }

  // Four hex digits after "\u", as a number.
  uint32_t parse_hex4() {
    uint32_t n = 0;
    for (int i = 0; i < 4; ++i, ++pos_) {
      if (at_end()) fail("unterminated \\u escape");
      const char c = s_[pos_];
      uint32_t digit = 0;
      if (c >= '0' && c <= '9') {
        digit = static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        digit = static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        digit = static_cast<uint32_t>(c - 'A' + 10);
      } else {
        fail("invalid hex digit " + describe_here() + " in a \\u escape");
      }
      n = n * 16 + digit;
    }
    return n;
  }

  // '"' characters '"', returned decoded as UTF-8. Raw bytes must be valid
  // UTF-8 and not control characters; escapes are \" \\ \/ \b \f \n \r \t and
  // \u plus four hex digits, where a character beyond U+FFFF is a surrogate pair \uD8xx\uDCxx.
  std::string parse_string() {
    expect('"');
    std::string out;
    while (true) {
      if (at_end()) fail("unterminated string");
      const auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) fail("control character " + describe_here() + " must be escaped in a string");
      if (c >= 0x80) {
        const size_t length = utf8_sequence_length(s_, pos_);
        if (length == 0) fail("invalid UTF-8 (" + describe_here() + ") in a string");
        out += s_.substr(pos_, length);
        pos_ += length;
        continue;
      }
      if (c != '\\') {
        out += static_cast<char>(c);
        ++pos_;
        continue;
      }
      ++pos_;  // the backslash
      if (at_end()) fail("unterminated escape");
      const char e = s_[pos_];
      const size_t escape_offset = pos_ - 1;
      ++pos_;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = parse_hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) {
            pos_ = escape_offset;
            fail("a low surrogate \\u escape without a high surrogate before it");
          }
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // high surrogate: a low one must follow
            if (s_.substr(pos_, 2) != "\\u") {
              pos_ = escape_offset;
              fail("a high surrogate \\u escape not followed by a low surrogate");
            }
            pos_ += 2;
            const uint32_t low = parse_hex4();
            if (low < 0xDC00 || low > 0xDFFF) {
              pos_ = escape_offset;
              fail("a high surrogate \\u escape not followed by a low surrogate");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          pos_ = escape_offset;
          fail("invalid escape \\" + (e >= 0x20 && e < 0x7F ? std::string(1, e) : std::string("?")));
      }
    }
  }
};

}  // namespace

Value parse(std::string_view text) { return Parser(text).parse_document(); }

}  // namespace attend::io::json
