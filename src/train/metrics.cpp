// Exact match and corpus BLEU (chapter 8, docs/08-translation.md).
#include "attend/metrics.hpp"

#include <cmath>
#include <cstdlib>
#include <map>
#include <sstream>

#include "attend/shape.hpp"

namespace attend::train {

namespace {

std::vector<std::string> split_tokens(const std::string& sentence) {
  std::istringstream in(sentence);
  std::vector<std::string> tokens;
  for (std::string t; in >> t;) tokens.push_back(t);
  return tokens;
}

// Every n-gram of the tokens (n = 1..4) with how often it occurs.
using NgramCounts = std::map<std::vector<std::string>, int64_t>;
NgramCounts count_ngrams(const std::vector<std::string>& tokens) {
  NgramCounts counts;
  for (size_t n = 1; n <= 4; ++n) {
    for (size_t i = 0; i + n <= tokens.size(); ++i) {
      ++counts[std::vector<std::string>(tokens.begin() + static_cast<std::ptrdiff_t>(i),
                                        tokens.begin() + static_cast<std::ptrdiff_t>(i + n))];
    }
  }
  return counts;
}

}  // namespace

BleuResult corpus_bleu(const std::vector<std::string>& hypotheses,
                       const std::vector<std::vector<std::string>>& references) {
  if (hypotheses.size() != references.size()) {
    throw Error("corpus_bleu: " + std::to_string(hypotheses.size()) + " hypotheses but " +
                std::to_string(references.size()) + " reference lists");
  }
  std::array<int64_t, 4> correct{}, total{};
  BleuResult result;
  for (size_t s = 0; s < hypotheses.size(); ++s) {
    if (references[s].empty()) throw Error("corpus_bleu: sentence " + std::to_string(s) + " has no reference");
    const std::vector<std::string> hyp = split_tokens(hypotheses[s]);
    const int64_t hyp_len = static_cast<int64_t>(hyp.size());
    // Clip each n-gram's count by the largest count in any single reference.
    NgramCounts max_ref_counts;
    int64_t closest = -1;
    for (const std::string& reference : references[s]) {
      const std::vector<std::string> ref = split_tokens(reference);
      const int64_t ref_len = static_cast<int64_t>(ref.size());
      if (closest < 0 || std::llabs(ref_len - hyp_len) < std::llabs(closest - hyp_len) ||
          (std::llabs(ref_len - hyp_len) == std::llabs(closest - hyp_len) && ref_len < closest)) {
        closest = ref_len;
      }
      for (const auto& [gram, count] : count_ngrams(ref)) {
        max_ref_counts[gram] = std::max(max_ref_counts[gram], count);
      }
    }
    for (const auto& [gram, count] : count_ngrams(hyp)) {
      auto it = max_ref_counts.find(gram);
      correct[gram.size() - 1] += std::min(count, it == max_ref_counts.end() ? 0 : it->second);
    }
    for (int64_t n = 1; n <= 4; ++n) total[n - 1] += std::max<int64_t>(0, hyp_len - n + 1);
    result.hypothesis_length += hyp_len;
    result.reference_length += closest;
  }

  // Geometric mean of the four precisions.
  // exercise 8.3 begin: BLEU: the four precisions (exp smoothing), their geometric mean, the brevity penalty
  double smoothing = 1.0, log_sum = 0.0;
  for (int n = 0; n < 4; ++n) {
    if (total[n] == 0) {
      result.precisions[n] = 0.0;
    } else if (correct[n] == 0) {
      smoothing *= 2.0;  // sacrebleu's "exp" smoothing
      result.precisions[n] = 100.0 / (smoothing * static_cast<double>(total[n]));
    } else {
      result.precisions[n] = 100.0 * static_cast<double>(correct[n]) / static_cast<double>(total[n]);
    }
    // A zero precision makes BLEU 0 (sacrebleu uses log(0) = -9999999999).
    log_sum += result.precisions[n] > 0.0 ? std::log(result.precisions[n]) : -9999999999.0;
  }
  const double hyp = static_cast<double>(result.hypothesis_length);
  const double ref = static_cast<double>(result.reference_length);
  result.brevity_penalty = hyp >= ref ? 1.0 : (hyp > 0.0 ? std::exp(1.0 - ref / hyp) : 0.0);
  result.score = result.brevity_penalty * std::exp(log_sum / 4.0);
  return result;
  // exercise 8.3 end
}

double exact_match(const std::vector<std::string>& hypotheses,
                   const std::vector<std::vector<std::string>>& references) {
  if (hypotheses.size() != references.size()) {
    throw Error("exact_match: " + std::to_string(hypotheses.size()) + " hypotheses but " +
                std::to_string(references.size()) + " reference lists");
  }
  if (hypotheses.empty()) return 0.0;
  int64_t hits = 0;
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    for (const std::string& r : references[i]) {
      if (split_tokens(r) == split_tokens(hypotheses[i])) {
        ++hits;
        break;
      }
    }
  }
  return static_cast<double>(hits) / static_cast<double>(hypotheses.size());
}

}  // namespace attend::train
