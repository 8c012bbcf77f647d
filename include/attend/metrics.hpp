// Scoring translations: exact match and corpus BLEU.
// Chapter 8 (docs/08-translation.md).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace attend::train {

struct BleuResult {
  double score = 0.0;                  // 0..100
  std::array<double, 4> precisions{};  // modified n-gram precisions, in percent
  double brevity_penalty = 1.0;
  int64_t hypothesis_length = 0;       // tokens in all hypotheses
  int64_t reference_length = 0;        // sum of the closest reference lengths
};

// Corpus BLEU-4 as sacrebleu computes it by default on already-tokenized
// text (tokens separated by spaces): n-gram matches clipped by the most any
// one reference has, counted over the whole corpus; the brevity penalty uses,
// per sentence, the reference length closest to the hypothesis (the shorter
// on a tie); an n-gram order with no match at all gets sacrebleu's "exp"
// smoothing (precision 100 / (2^k * total) for the k-th such order).
// references[i] holds every reference for hypotheses[i] (at least one).
BleuResult corpus_bleu(const std::vector<std::string>& hypotheses,
                       const std::vector<std::vector<std::string>>& references);

// Fraction of hypotheses equal to one of their references (0..1).
double exact_match(const std::vector<std::string>& hypotheses,
                   const std::vector<std::vector<std::string>>& references);

}  // namespace attend::train
