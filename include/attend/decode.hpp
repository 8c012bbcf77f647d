// Turning a trained model's next-token scores into output sentences.
// Chapter 8 uses greedy decoding; chapter 9 (docs/09-decoding.md) adds the KV
// cache (StepwiseDecoder), beam search, sequence scores and attention maps.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attend/svg.hpp"
#include "attend/transformer.hpp"

namespace attend::decode {

// Feeds R growing target prefixes (one per row: a sentence, or a beam of a
// sentence) to the model and returns the next-token logits, one step at a
// time. Greedy decoding and beam search are both written on top of it.
//  - use_cache = true: only the newest token of each prefix goes through the
//    decoder; the keys and values of the older ones are in the KV cache.
//  - use_cache = false: the decoder reruns over every whole prefix at every
//    step (chapter 8's way). Slower, but obviously right: the reference the
//    tests compare the cache against.
// Call it without recording a graph (NoGradGuard) and in eval mode.
class StepwiseDecoder {
 public:
  // src: (B, S) Int64. Rows start as B prefixes <bos>, one per sentence.
  // The model runs where src is (its parameters must be there too); the
  // logits come back on that device (chapter 11).
  // max_steps: how many times next_logits may be called (the cache's capacity;
  // at most the model's max_len).
  StepwiseDecoder(nn::Seq2SeqTransformer& model, const Tensor& src, int64_t max_steps, int64_t bos_id,
                  bool use_cache);

  int64_t rows() const { return static_cast<int64_t>(prefixes_.size()); }
  // -> (R, V): for each row, the logits of the token after its prefix.
  Tensor next_logits();
  // tokens: R ids; appends tokens[r] to row r's prefix.
  void push(const std::vector<int64_t>& tokens);
  // Row i continues what row index[i] was (prefix and cache): index may
  // repeat rows and change their number (B sentences -> B * K beams).
  void reorder(const std::vector<int64_t>& index);
  // Row r's tokens so far, <bos> first.
  const std::vector<int64_t>& prefix(int64_t row) const { return prefixes_[static_cast<size_t>(row)]; }
  // Which sentence of src row r translates.
  int64_t sentence_of(int64_t row) const { return sentence_[static_cast<size_t>(row)]; }
  // The cache (null when use_cache is false), e.g. to measure its memory.
  const nn::DecoderCache* cache() const { return use_cache_ ? &cache_ : nullptr; }

 private:
  nn::Seq2SeqTransformer& model_;
  bool use_cache_;
  int64_t max_steps_;
  Device device_ = Device::cpu;                 // src's: the token ids it feeds the model go there too
  std::vector<std::vector<int64_t>> prefixes_;  // per row, <bos> first
  std::vector<int64_t> sentence_;               // per row: which sentence of src
  nn::DecoderCache cache_;                      // with the cache
  Tensor src_, memory_;                         // without: (B, S) and the encoder output (B, S, C)
  Tensor rows_src_, rows_memory_;               // without: the same for each row's sentence, (R, S), (R, S, C)
};

// How greedy_decode runs (chapter 9 adds these; the defaults are what a user wants).
struct DecodeOptions {
  bool use_cache = true;    // false: recompute the whole prefix every step (the reference)
  bool stop_at_eos = true;  // false: always max_len tokens, <eos> or not (for timing)
  // If given, receives the logits (B, V) of every step, for comparing the two
  // ways. Row b of step t is meaningful while sentence b is unfinished
  // (t <= its length + 1); afterwards the row is fed <pad> and ignored.
  std::vector<Tensor>* step_logits = nullptr;
};

// Greedy decoding: start from <bos>, append the most likely next token, stop
// at <eos> or after max_len tokens (and at most the model's max_len - 1).
// Runs in eval mode without recording a graph (the model's train/eval mode
// is restored afterwards).
// src: (B, S) Int64 -> B token-id sequences, without <bos> and <eos>.
std::vector<std::vector<int64_t>> greedy_decode(nn::Seq2SeqTransformer& model, const Tensor& src,
                                                int64_t max_len, int64_t bos_id, int64_t eos_id,
                                                const DecodeOptions& options = DecodeOptions());

// GNMT's length penalty ((5 + length) / 6)^alpha. Beam search ranks finished
// hypotheses by log_prob / length_penalty: with alpha = 0 by their plain
// probability (which favours short outputs), with alpha > 0 a longer output
// needs less probability per token to win.
double length_penalty(int64_t length, double alpha);

struct BeamOptions {
  int64_t beam_size = 4;  // K: hypotheses kept per sentence; 1 is greedy decoding
  double alpha = 0.6;     // length-penalty exponent (0: none)
  bool use_cache = true;  // false: recompute every step (the reference)
};

// One output of beam search.
struct Hypothesis {
  std::vector<int64_t> tokens;  // without <bos> and <eos>
  double log_prob = 0.0;        // log P(tokens, then <eos> if finished | source)
  double score = 0.0;           // log_prob / length_penalty(scored tokens, alpha)
  bool finished = false;        // ended with <eos> (false: stopped at max_len)
};

// Beam search: keep the K most probable prefixes of each sentence; extend
// each by every token and keep the K best of all those extensions; a
// hypothesis that ends with <eos> is set aside as finished and the beam
// narrows by one. When no prefix is left (or after max_len tokens, then the
// live prefixes are set aside unfinished), the finished ones are ranked by
// score. With K = 1 this is exactly greedy decoding.
// src: (B, S) Int64 -> for each sentence its K hypotheses, best score first.
// Rows of the batch are B * K beams that share the cache layout; when beams
// are reordered the cache rows follow them (DecoderCache::reorder).
std::vector<std::vector<Hypothesis>> beam_search(nn::Seq2SeqTransformer& model, const Tensor& src,
                                                 int64_t max_len, int64_t bos_id, int64_t eos_id,
                                                 const BeamOptions& options = BeamOptions());

// log P(output, <eos> | source) for given outputs, by one teacher-forced
// pass: the model score of any translation (e.g. greedy's, to compare with
// beam search's). src: (B, S); outputs: B sequences without <bos>/<eos> -> B values.
std::vector<double> sequence_log_probs(nn::Seq2SeqTransformer& model, const Tensor& src,
                                       const std::vector<std::vector<int64_t>>& outputs, int64_t bos_id,
                                       int64_t eos_id);

// --- attention maps ---

// The attention weights of every layer for a source and a target, recorded
// during one teacher-forced forward pass (MultiHeadAttention::record_weights).
struct AttentionMaps {
  std::vector<Tensor> encoder_self;  // per encoder layer: (B, H, S, S), rows are source positions
  std::vector<Tensor> decoder_self;  // per decoder layer: (B, H, T, T), rows are target positions
  std::vector<Tensor> cross;         // per decoder layer: (B, H, T, S): target position -> source position
};

// src: (B, S), tgt_in: (B, T) (<bos> then the output) -> the maps. Row t of
// the decoder's maps is the step that wrote output token t (the one after
// tgt_in[t]). Runs in eval mode without a graph.
AttentionMaps attention_maps(nn::Seq2SeqTransformer& model, const Tensor& src, const Tensor& tgt_in);

// One SVG page with a heatmap per layer and head: the encoder's
// self-attention (source x source), the decoder's self-attention (outputs x
// decoder inputs) and the cross-attention (outputs x source), for sentence
// `row` of the maps. Labels: source tokens (S), decoder inputs (T: <bos> and
// the output) and outputs (T: the output and <eos>, what each step wrote).
io::svg::Canvas draw_attention_maps(const AttentionMaps& maps, int64_t row, const std::vector<std::string>& source,
                                const std::vector<std::string>& decoder_inputs,
                                const std::vector<std::string>& outputs, const std::string& title);

}  // namespace attend::decode
