// Data for translation: the embedded toy tasks, user TSV files, tokenizing,
// vocabularies and padded, length-bucketed batches.
// Chapter 8 (docs/08-translation.md).
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "attend/random.hpp"
#include "attend/tensor.hpp"

namespace attend::data {

// One training example: whitespace-separated tokens on each side.
struct SentencePair {
  std::string source;
  std::string target;
};

enum class Split { Train, Valid, Test };
Split parse_split(const std::string& name);  // "train" | "valid" | "test", else Error

// --- the embedded tasks ---

// One random English sentence of toy-French and its translation, sampled as
// docs/toy-french-task.md ("Sampling") says. Tokens are separated by
// single spaces and the sentence ends with " .".
SentencePair sample_toy_french(Generator& gen);

// The toy-French translation of an English sentence of the grammar; throws
// Error naming the problem for a sentence outside it.
std::string translate_toy_french(const std::string& english);

// 64-bit FNV-1a (offset basis 14695981039346656037, prime 1099511628211):
// a simple hash, the same on every platform. Pass the previous result as
// `hash` to continue hashing across several pieces of text.
inline constexpr uint64_t kFnv1aOffsetBasis = 14695981039346656037ull;
uint64_t fnv1a(std::string_view bytes, uint64_t hash = kFnv1aOffsetBasis);

// Which split an English sentence belongs to, from fnv1a of its text
// modulo 10 (0-7 train, 8 valid, 9 test): the splits never share a sentence.
Split split_of(const std::string& source);

// The built-in tasks: "toy-french", "copy", "reverse".
const std::vector<std::string>& task_names();
// Throws Error "unknown task 'x' (toy-french, copy or reverse)" for any other name.
void check_task_name(const std::string& task);

// n distinct examples of `task` ("toy-french", "copy" or "reverse") from
// `split`, sampled from `seed`. copy: random digit sequences copied;
// reverse: the digits reversed. Throws Error for an unknown task.
std::vector<SentencePair> generate_task(const std::string& task, Split split, int64_t n, uint64_t seed);
// The same examples, in the same order, handed to `emit` one by one as they
// are drawn, so that a caller can write them out as a stream (`attend data
// --n 10000000 | head` prints at once). An exception from `emit` stops it.
void generate_task(const std::string& task, Split split, int64_t n, uint64_t seed,
                   const std::function<void(const SentencePair&)>& emit);

// --- text input (src/data/text_lines.cpp) ---

// The one reader of every text a user gives Attend: TSV files, the lines of
// `attend translate`'s standard input. A UTF-8 byte order mark at the very
// start is dropped, "\r\n" ends a line as "\n" does, and a line holding a
// NUL byte or invalid UTF-8 is refused with the input's name and the line
// number ("data.tsv:7: invalid UTF-8 at byte 12").
class TextLineReader {
 public:
  explicit TextLineReader(const std::string& path);     // a file: Error naming it if it cannot be read
  TextLineReader(std::istream& in, std::string name);  // a stream, e.g. std::cin as "standard input"
  ~TextLineReader();
  TextLineReader(const TextLineReader&) = delete;
  TextLineReader& operator=(const TextLineReader&) = delete;

  // Reads the next line into `line` (without its line end); false at the end
  // of the input. A bad line throws Error("NAME:LINE: problem"), or, when
  // `problem` is given, is returned with *problem saying what is wrong (and
  // empty for a good line), so that the caller can go on with the next line.
  bool next(std::string& line, std::string* problem = nullptr);
  int64_t line_number() const { return line_number_; }  // of the line last read, from 1
  std::string where() const;  // "NAME:LINE" of the line last read

 private:
  std::unique_ptr<std::ifstream> file_;
  std::istream* in_;
  std::string name_;
  int64_t line_number_ = 0;
};

// What is wrong with one line of text, or "" if nothing: "a NUL byte at byte
// 4", "invalid UTF-8 at byte 9" (overlong forms, surrogates and code points
// above U+10FFFF are invalid). Used for text that comes whole, such as a
// command-line argument, as TextLineReader uses it for each line.
std::string text_line_problem(std::string_view line);

// --- user data ---

struct TsvOptions {
  int64_t max_tokens = 100;     // a side longer than this (in tokens) is a bad line
  bool skip_bad_lines = false;  // skip and count them instead of failing
  bool lowercase = false;
};

struct TsvSummary {
  int64_t lines = 0;      // lines read, blank ones included
  int64_t pairs = 0;      // pairs kept
  int64_t skipped = 0;    // bad lines skipped (with skip_bad_lines)
  std::string first_problem;  // "file:line: what" of the first skipped line
};

// Reads `source<TAB>target` lines (UTF-8). Blank lines are skipped. A line
// without exactly one tab, with invalid UTF-8, or with a side longer than
// max_tokens throws Error("FILE:LINE: problem") unless skip_bad_lines.
// The returned pairs are tokenized and re-joined with single spaces.
std::vector<SentencePair> read_tsv(const std::string& path, const TsvOptions& options,
                                   TsvSummary* summary = nullptr);

// Splits on white space and splits ". , ! ? ; :" off as tokens of their own;
// with lowercase, ASCII letters are folded to lower case.
std::vector<std::string> tokenize(const std::string& text, bool lowercase = false);

// --- vocabulary ---

class Vocabulary {
 public:
  static constexpr int64_t kPad = 0, kBos = 1, kEos = 2, kUnk = 3;

  Vocabulary();  // just the four specials: <pad> <bos> <eos> <unk>
  // Every token seen at least min_count times in `sentences` (space-separated
  // tokens), most frequent first (ties alphabetical), after the specials.
  static Vocabulary build(const std::vector<std::string_view>& sentences, int64_t min_count = 1);

  int64_t size() const;
  int64_t id(const std::string& token) const;  // kUnk for an unknown token
  const std::string& token(int64_t id) const;  // Error when out of range
  // Token ids of a space-separated sentence, without <bos>/<eos>.
  std::vector<int64_t> encode(const std::string& sentence) const;
  // The sentence for ids, stopping at <eos> and skipping <pad> and <bos>.
  std::string decode(const std::vector<int64_t>& ids) const;

  // One token per line, in id order: stored in checkpoint metadata.
  std::string serialize() const;
  static Vocabulary deserialize(const std::string& text);  // Error if malformed

 private:
  std::vector<std::string> tokens_;                 // id -> token
  std::unordered_map<std::string, int64_t> ids_;    // token -> id
};

// --- batches ---

// Many sentences' token ids in one flat array: sequence i is ids
// [starts[i], starts[i + 1]). A std::vector per sentence would cost a
// header and a heap block each, more than its 15 or so ids; 200,000 toy
// pairs take 27 MB here against 61 MB as vectors of int64 (docs/10-speed.md,
// "Memory"). Ids are stored as int32 (a vocabulary has fewer than 2^31 words).
class TokenSequences {
 public:
  TokenSequences() = default;
  // From one vector per sentence (tests and tutorials write them as lists).
  TokenSequences(const std::vector<std::vector<int64_t>>& sequences);  // NOLINT: implicit on purpose
  TokenSequences(std::initializer_list<std::vector<int64_t>> sequences);
  void push_back(const std::vector<int64_t>& ids);  // Error for an id outside [0, 2^31)
  void reserve(int64_t sequences, int64_t ids);     // room for that many without regrowing
  int64_t size() const { return static_cast<int64_t>(starts_.size()) - 1; }
  bool empty() const { return size() == 0; }
  int64_t length(int64_t i) const { return starts_[static_cast<size_t>(i) + 1] - starts_[static_cast<size_t>(i)]; }
  const int32_t* begin(int64_t i) const { return ids_.data() + starts_[static_cast<size_t>(i)]; }
  std::vector<int64_t> at(int64_t i) const;  // sequence i as a vector (Error when out of range)

 private:
  std::vector<int32_t> ids_;
  std::vector<int64_t> starts_{0};
};

// A padded batch. src: (B, S) ids then <eos>; tgt_in: (B, T) <bos> then ids;
// tgt_out: (B, T) ids then <eos>; all Int64 and padded with kPad.
struct Batch {
  Tensor src, tgt_in, tgt_out;
  std::vector<int64_t> indices;  // which examples of the dataset, in order
  int64_t source_tokens = 0;     // real (non-pad) tokens in src
  int64_t target_tokens = 0;     // real tokens in tgt_out
};

// Builds the batch of examples `indices` (each a pair of id sequences).
Batch make_batch(const TokenSequences& sources, const TokenSequences& targets, const std::vector<int64_t>& indices);

// The same batch with its three id tensors on `device` (the batch itself when
// it is there): the one copy to the GPU a training step makes (chapter 11,
// docs/11-cuda.md, "Training on the device").
Batch batch_on_device(const Batch& batch, Device device);

// An epoch's batches: examples are shuffled with `gen`, grouped into buckets
// of similar length (so that little padding is needed), cut into batches of
// `batch_size` sentences, and the batches shuffled again.
std::vector<std::vector<int64_t>> bucketed_batches(const TokenSequences& sources, const TokenSequences& targets,
                                                   int64_t batch_size, Generator& gen);

}  // namespace attend::data
