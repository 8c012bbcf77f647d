// Beam search with GNMT's length penalty, the model score of a given output,
// both on top of StepwiseDecoder (so the KV cache serves beams too).
// Chapter 9 (docs/09-decoding.md).
#include <algorithm>
#include <cmath>
#include <limits>

#include "attend/autograd.hpp"
#include "attend/decode.hpp"
#include "attend/ops.hpp"

namespace attend::decode {

double length_penalty(int64_t length, double alpha) {
  return std::pow((5.0 + static_cast<double>(length)) / 6.0, alpha);
}

namespace {

constexpr double kDead = -std::numeric_limits<double>::infinity();  // the log-probability of an empty slot

// An extension of a live beam by one token.
struct Candidate {
  double log_prob;  // the beam's log-probability + log p(token | beam)
  int64_t row;      // the beam (row of the decoder) it extends
  int64_t token;
};

// Best first; ties go to the lower row, then the lower token id (as argmax does).
bool better(const Candidate& a, const Candidate& b) {
  if (a.log_prob != b.log_prob) return a.log_prob > b.log_prob;
  if (a.row != b.row) return a.row < b.row;
  return a.token < b.token;
}

}  // namespace

std::vector<std::vector<Hypothesis>> beam_search(nn::Seq2SeqTransformer& model, const Tensor& src,
                                                 int64_t max_len, int64_t bos_id, int64_t eos_id,
                                                 const BeamOptions& options) {
  if (src.dim() != 2) throw Error("beam_search: src must be (B, S), got " + to_string(src.shape()));
  if (options.beam_size < 1) throw Error("beam_search: beam size must be at least 1, got " + std::to_string(options.beam_size));
  const int64_t B = src.size(0), K = options.beam_size;
  std::vector<std::vector<Hypothesis>> finished(static_cast<size_t>(B));
  max_len = std::min(max_len, model.config.max_len - 1);
  if (max_len < 1) {  // nothing may be written: the empty output, unfinished
    for (auto& f : finished) f.push_back(Hypothesis{});
    return finished;
  }
  if (B == 0) return finished;
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();

  // Rows b*K ... b*K + K-1 are the K beams of sentence b; all start as <bos>.
  StepwiseDecoder decoder(model, src, max_len, bos_id, options.use_cache);
  std::vector<int64_t> expand;
  for (int64_t b = 0; b < B; ++b) expand.insert(expand.end(), static_cast<size_t>(K), b);
  decoder.reorder(expand);  // the encoder output's keys and values are copied to each beam, not recomputed
  // Only one beam per sentence is live at first: K copies of <bos> would
  // otherwise fill the beam with K copies of the same extension.
  std::vector<double> log_prob(static_cast<size_t>(B * K), kDead);
  for (int64_t b = 0; b < B; ++b) log_prob[static_cast<size_t>(b * K)] = 0.0;

  auto set_aside = [&](int64_t b, const Candidate& c, int64_t t, bool ended) {
    Hypothesis h;
    const std::vector<int64_t>& prefix = decoder.prefix(c.row);
    h.tokens.assign(prefix.begin() + 1, prefix.end());  // without <bos>
    if (!ended) h.tokens.push_back(c.token);
    h.log_prob = c.log_prob;
    h.finished = ended;
    h.score = c.log_prob / length_penalty(t, options.alpha);  // t tokens were scored, <eos> included
    finished[static_cast<size_t>(b)].push_back(std::move(h));
  };

  for (int64_t t = 1; t <= max_len; ++t) {
    const Tensor logp = log_softmax(decoder.next_logits(), -1);  // (R, V): log p(next token | beam)
    const std::vector<float> lp = logp.cpu().to_vector();  // the host picks the beams: (R, V) come back
    const int64_t V = logp.size(1);
    std::vector<int64_t> parents(static_cast<size_t>(B * K)), tokens(static_cast<size_t>(B * K), model.config.pad_id);
    std::vector<double> next_log_prob(static_cast<size_t>(B * K), kDead);
    bool any_live = false;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t j = 0; j < K; ++j) parents[static_cast<size_t>(b * K + j)] = b * K + j;  // empty slots stay put
      // The beam narrows by one for every finished hypothesis.
      // exercise 9.2 begin: one beam step for sentence b: the best extensions of its live beams
      const int64_t slots = K - static_cast<int64_t>(finished[static_cast<size_t>(b)].size());
      std::vector<Candidate> candidates;
      for (int64_t r = b * K; r < (b + 1) * K && slots > 0; ++r) {
        if (log_prob[static_cast<size_t>(r)] == kDead) continue;
        for (int64_t v = 0; v < V; ++v) {
          if (v == model.config.pad_id || v == bos_id) continue;  // never part of an output
          candidates.push_back({log_prob[static_cast<size_t>(r)] + lp[static_cast<size_t>(r * V + v)], r, v});
        }
      }
      const int64_t keep = std::min<int64_t>(slots, static_cast<int64_t>(candidates.size()));
      std::partial_sort(candidates.begin(), candidates.begin() + keep, candidates.end(), better);
      int64_t live = 0;
      for (int64_t i = 0; i < keep; ++i) {
        const Candidate& c = candidates[static_cast<size_t>(i)];
        if (c.token == eos_id) {
          set_aside(b, c, t, true);  // finished: it leaves the beam
        } else if (t == max_len) {
          set_aside(b, c, t, false);  // out of room: kept, unfinished
        } else {
          const size_t slot = static_cast<size_t>(b * K + live++);
          parents[slot] = c.row;
          tokens[slot] = c.token;
          next_log_prob[slot] = c.log_prob;
        }
      }
      any_live = any_live || live > 0;
      // exercise 9.2 end
    }
    if (!any_live) break;
    decoder.reorder(parents);  // each slot continues its parent beam: prefix and cache
    decoder.push(tokens);
    log_prob = std::move(next_log_prob);
  }
  for (auto& hypotheses : finished) {
    std::stable_sort(hypotheses.begin(), hypotheses.end(),
                     [](const Hypothesis& a, const Hypothesis& b) { return a.score > b.score; });
  }
  model.train(was_training);
  return finished;
}

std::vector<double> sequence_log_probs(nn::Seq2SeqTransformer& model, const Tensor& src,
                                       const std::vector<std::vector<int64_t>>& outputs, int64_t bos_id,
                                       int64_t eos_id) {
  const int64_t B = static_cast<int64_t>(outputs.size());
  if (src.dim() != 2 || src.size(0) != B) {
    throw Error("sequence_log_probs: src " + to_string(src.shape()) + " does not fit " + std::to_string(B) +
                " outputs");
  }
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  size_t T = 0;
  for (const auto& out : outputs) T = std::max(T, out.size() + 1);
  // Decoder input <bos> y1 .. yn (padded); the targets y1 .. yn <eos>.
  std::vector<int64_t> inputs(static_cast<size_t>(B) * T, model.config.pad_id);
  for (size_t b = 0; b < outputs.size(); ++b) {
    inputs[b * T] = bos_id;
    std::copy(outputs[b].begin(), outputs[b].end(), inputs.begin() + static_cast<std::ptrdiff_t>(b * T + 1));
  }
  const Tensor logp =
      log_softmax(model.forward(src, from_indices(inputs, {B, static_cast<int64_t>(T)}, src.device())), -1);
  const std::vector<float> lp = logp.cpu().to_vector();  // (B, T, V)
  const size_t V = static_cast<size_t>(logp.size(2));
  std::vector<double> result(static_cast<size_t>(B), 0.0);
  for (size_t b = 0; b < outputs.size(); ++b) {
    for (size_t t = 0; t <= outputs[b].size(); ++t) {
      const int64_t target = t < outputs[b].size() ? outputs[b][t] : eos_id;
      result[b] += lp[(b * T + t) * V + static_cast<size_t>(target)];
    }
  }
  model.train(was_training);
  return result;
}

}  // namespace attend::decode
