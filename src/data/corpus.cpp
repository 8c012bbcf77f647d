// User data and the pipeline from text to batches: tokenizing, reading TSV
// files with clear errors, vocabularies, padded length-bucketed batches.
// Chapter 8 (docs/08-translation.md).
#include <algorithm>
#include <limits>
#include <map>
#include <sstream>

#include "attend/data.hpp"

namespace attend::data {

// --- tokenizing ---

std::vector<std::string> tokenize(const std::string& text, bool lowercase) {
  static const std::string kPunctuation = ".,!?;:";
  std::vector<std::string> tokens;
  std::string word;
  auto flush = [&] {
    if (!word.empty()) tokens.push_back(word);
    word.clear();
  };
  // French text puts a no-break space (U+00A0) or a narrow one (U+202F)
  // before ! ? : ; and the Tatoeba pairs have both: they separate words too.
  static const std::string kNoBreakSpaces[] = {"\xC2\xA0", "\xE2\x80\xAF"};
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const std::string* wide = nullptr;
    for (const std::string& s : kNoBreakSpaces) {
      if (text.compare(i, s.size(), s) == 0) wide = &s;
    }
    if (wide) {
      flush();
      i += wide->size() - 1;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      flush();
    } else if (kPunctuation.find(c) != std::string::npos) {
      flush();
      tokens.emplace_back(1, c);
    } else {
      word += lowercase && c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    }
  }
  flush();
  return tokens;
}

namespace {

std::string join(const std::vector<std::string>& tokens) {
  std::string out;
  for (const std::string& t : tokens) {
    if (!out.empty()) out += ' ';
    out += t;
  }
  return out;
}

}  // namespace

// --- TSV files ---

std::vector<SentencePair> read_tsv(const std::string& path, const TsvOptions& options, TsvSummary* summary) {
  TextLineReader reader(path);  // BOM, CRLF, NUL and UTF-8 handled there
  TsvSummary local;
  TsvSummary& s = summary ? *summary : local;
  s = TsvSummary{};
  std::vector<SentencePair> pairs;
  std::string line, problem;
  while (reader.next(line, &problem)) {
    ++s.lines;
    if (problem.empty() && line.find_first_not_of(" \t") == std::string::npos) continue;  // blank line
    const size_t tabs = static_cast<size_t>(std::count(line.begin(), line.end(), '\t'));
    std::vector<std::string> source, target;
    if (!problem.empty()) {
      // NUL or invalid UTF-8, from the reader
    } else if (tabs != 1) {
      problem = "expected source<TAB>target with exactly one tab, found " + std::to_string(tabs);
    } else {
      const size_t tab = line.find('\t');
      source = tokenize(line.substr(0, tab), options.lowercase);
      target = tokenize(line.substr(tab + 1), options.lowercase);
      if (source.empty() || target.empty()) {
        problem = std::string("the ") + (source.empty() ? "source" : "target") + " is empty";
      } else if (static_cast<int64_t>(std::max(source.size(), target.size())) > options.max_tokens) {
        problem = std::string("the ") + (source.size() >= target.size() ? "source" : "target") + " has " +
                  std::to_string(std::max(source.size(), target.size())) + " tokens, more than the limit of " +
                  std::to_string(options.max_tokens);
      }
    }
    if (!problem.empty()) {
      const std::string where = reader.where() + ": " + problem;
      if (!options.skip_bad_lines) throw Error(where);
      if (s.skipped++ == 0) s.first_problem = where;
      continue;
    }
    pairs.push_back({join(source), join(target)});
  }
  s.pairs = static_cast<int64_t>(pairs.size());
  // A file without a single pair trains or scores nothing: say so rather than report zeros.
  if (pairs.empty()) {
    throw Error(path + ": no source<TAB>target pairs (" +
                (s.skipped > 0 ? "all " + std::to_string(s.skipped) + " non-blank lines are bad and were skipped; the first: " +
                                     s.first_problem
                               : s.lines == 0 ? std::string("the file is empty") : "all " + std::to_string(s.lines) + " lines are blank") +
                ")");
  }
  return pairs;
}

// --- vocabulary ---

Vocabulary::Vocabulary() {
  for (const char* special : {"<pad>", "<bos>", "<eos>", "<unk>"}) {
    ids_[special] = static_cast<int64_t>(tokens_.size());
    tokens_.push_back(special);
  }
}

Vocabulary Vocabulary::build(const std::vector<std::string_view>& sentences, int64_t min_count) {
  // exercise 8.1 begin: count the words; most frequent first (ties alphabetical), min_count or more
  std::map<std::string, int64_t> counts;
  for (const std::string_view sentence : sentences) {
    std::istringstream words{std::string(sentence)};
    for (std::string w; words >> w;) ++counts[w];
  }
  std::vector<std::pair<std::string, int64_t>> ranked(counts.begin(), counts.end());
  // Most frequent first; std::map gave alphabetical order, stable_sort keeps it for ties.
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  Vocabulary v;
  for (const auto& [word, count] : ranked) {
    if (count < min_count || v.ids_.count(word)) continue;
    v.ids_[word] = static_cast<int64_t>(v.tokens_.size());
    v.tokens_.push_back(word);
  }
  return v;
  // exercise 8.1 end
}

int64_t Vocabulary::size() const { return static_cast<int64_t>(tokens_.size()); }

int64_t Vocabulary::id(const std::string& token) const {
  auto it = ids_.find(token);
  return it == ids_.end() ? kUnk : it->second;
}

const std::string& Vocabulary::token(int64_t id) const {
  if (id < 0 || id >= size()) {
    throw Error("Vocabulary: id " + std::to_string(id) + " is out of range [0, " + std::to_string(size()) + ")");
  }
  return tokens_[static_cast<size_t>(id)];
}

std::vector<int64_t> Vocabulary::encode(const std::string& sentence) const {
  std::vector<int64_t> ids;
  std::istringstream words(sentence);
  for (std::string w; words >> w;) ids.push_back(id(w));
  return ids;
}

std::string Vocabulary::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (int64_t i : ids) {
    if (i == kEos) break;
    if (i == kPad || i == kBos) continue;
    if (!out.empty()) out += ' ';
    out += token(i);
  }
  return out;
}

std::string Vocabulary::serialize() const {
  std::string out;
  for (const std::string& t : tokens_) out += t + "\n";
  return out;
}

Vocabulary Vocabulary::deserialize(const std::string& text) {
  Vocabulary v;
  std::istringstream lines(text);
  std::string line;
  size_t index = 0;
  while (std::getline(lines, line)) {
    if (index < 4) {
      if (line != v.tokens_[index]) {
        throw Error("Vocabulary: malformed: entry " + std::to_string(index) + " should be " + v.tokens_[index] +
                    ", found '" + line + "'");
      }
    } else {
      if (line.empty() || line.find_first_of(" \t\r") != std::string::npos) {
        throw Error("Vocabulary: malformed: entry " + std::to_string(index) + " is empty or holds white space");
      }
      if (!v.ids_.emplace(line, static_cast<int64_t>(v.tokens_.size())).second) {
        throw Error("Vocabulary: malformed: '" + line + "' appears twice");
      }
      v.tokens_.push_back(line);
    }
    ++index;
  }
  if (index < 4) throw Error("Vocabulary: malformed: the special tokens are missing");
  return v;
}

// --- batches ---

TokenSequences::TokenSequences(const std::vector<std::vector<int64_t>>& sequences) {
  for (const auto& ids : sequences) push_back(ids);
}

void TokenSequences::push_back(const std::vector<int64_t>& ids) {
  for (int64_t id : ids) {  // all checked first: a refused sequence leaves nothing behind
    if (id < 0 || id > std::numeric_limits<int32_t>::max()) {
      throw Error("TokenSequences: token id " + std::to_string(id) + " is outside [0, 2^31)");
    }
  }
  for (int64_t id : ids) ids_.push_back(static_cast<int32_t>(id));
  starts_.push_back(static_cast<int64_t>(ids_.size()));
}

TokenSequences::TokenSequences(std::initializer_list<std::vector<int64_t>> sequences) {
  for (const auto& ids : sequences) push_back(ids);
}

void TokenSequences::reserve(int64_t sequences, int64_t ids) {
  starts_.reserve(static_cast<size_t>(sequences) + 1);
  ids_.reserve(static_cast<size_t>(ids));
}

std::vector<int64_t> TokenSequences::at(int64_t i) const {
  if (i < 0 || i >= size()) {
    throw Error("TokenSequences: sequence " + std::to_string(i) + " of " + std::to_string(size()) + " does not exist");
  }
  return std::vector<int64_t>(begin(i), begin(i) + length(i));
}

Batch make_batch(const TokenSequences& sources, const TokenSequences& targets, const std::vector<int64_t>& indices) {
  if (indices.empty()) throw Error("make_batch: no examples");
  int64_t S = 0, T = 0;
  for (int64_t i : indices) {
    if (i < 0 || i >= sources.size() || i >= targets.size()) {
      throw Error("make_batch: example " + std::to_string(i) + " does not exist");
    }
    S = std::max(S, sources.length(i) + 1);  // + <eos>
    T = std::max(T, targets.length(i) + 1);  // + <bos> in, + <eos> out
  }
  const int64_t B = static_cast<int64_t>(indices.size());
  std::vector<int64_t> src(static_cast<size_t>(B * S), Vocabulary::kPad);
  std::vector<int64_t> tgt_in(static_cast<size_t>(B * T), Vocabulary::kPad), tgt_out = tgt_in;
  Batch batch;
  // exercise 8.2 begin: fill row b: src + <eos>, tgt_in = <bos> + tgt, tgt_out = tgt + <eos>, padding after
  for (int64_t b = 0; b < B; ++b) {
    const int64_t i = indices[static_cast<size_t>(b)];
    const int64_t s_len = sources.length(i), t_len = targets.length(i);
    const int32_t* s = sources.begin(i);
    const int32_t* t = targets.begin(i);
    std::copy(s, s + s_len, src.begin() + b * S);
    src[static_cast<size_t>(b * S + s_len)] = Vocabulary::kEos;
    tgt_in[static_cast<size_t>(b * T)] = Vocabulary::kBos;
    std::copy(t, t + t_len, tgt_in.begin() + b * T + 1);
    std::copy(t, t + t_len, tgt_out.begin() + b * T);
    tgt_out[static_cast<size_t>(b * T + t_len)] = Vocabulary::kEos;
    batch.source_tokens += s_len + 1;
    batch.target_tokens += t_len + 1;
  }
  // exercise 8.2 end
  batch.src = from_indices(src, {B, S});
  batch.tgt_in = from_indices(tgt_in, {B, T});
  batch.tgt_out = from_indices(tgt_out, {B, T});
  batch.indices = indices;
  return batch;
}

Batch batch_on_device(const Batch& batch, Device device) {
  Batch out = batch;
  out.src = to_device(batch.src, device);
  out.tgt_in = to_device(batch.tgt_in, device);
  out.tgt_out = to_device(batch.tgt_out, device);
  return out;
}

std::vector<std::vector<int64_t>> bucketed_batches(const TokenSequences& sources, const TokenSequences& targets,
                                                   int64_t batch_size, Generator& gen) {
  if (batch_size <= 0) throw Error("bucketed_batches: batch_size must be positive");
  const int64_t n = sources.size();
  auto shuffle = [&gen](auto& items) {  // Fisher-Yates, driven by the seeded generator
    for (int64_t i = static_cast<int64_t>(items.size()) - 1; i > 0; --i) {
      std::swap(items[static_cast<size_t>(i)], items[static_cast<size_t>(gen.randint(i + 1))]);
    }
  };
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  shuffle(order);
  // Sort pools of 50 batches by length: neighbours in a pool have similar
  // lengths, so a batch cut from it needs little padding, while the pools
  // themselves stay random.
  const int64_t pool = batch_size * 50;
  std::vector<std::vector<int64_t>> batches;
  for (int64_t start = 0; start < n; start += pool) {
    auto first = order.begin() + start, last = order.begin() + std::min(n, start + pool);
    std::stable_sort(first, last, [&](int64_t a, int64_t b) {
      return std::make_pair(sources.length(a), targets.length(a)) < std::make_pair(sources.length(b), targets.length(b));
    });
    for (auto it = first; it < last; it += std::min<std::ptrdiff_t>(batch_size, last - it)) {
      batches.emplace_back(it, it + std::min<std::ptrdiff_t>(batch_size, last - it));
    }
  }
  shuffle(batches);
  return batches;
}

}  // namespace attend::data
