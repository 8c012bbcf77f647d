// A translation model as a file: the Transformer's config and both
// vocabularies travel in the checkpoint's metadata; translating and scoring.
// Chapter 8 (docs/08-translation.md).
#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "attend/autograd.hpp"
#include "attend/checkpoint.hpp"
#include "attend/decode.hpp"
#include "attend/metrics.hpp"
#include "attend/ops.hpp"
#include "attend/safetensors.hpp"
#include "attend/train.hpp"
#include "train_internal.hpp"

namespace attend::train {

// --- the config as text: "d_model=128 heads=4 ..." ---

std::string config_to_string(const nn::TransformerConfig& c) {
  std::ostringstream s;
  s << "src_vocab=" << c.src_vocab << " tgt_vocab=" << c.tgt_vocab << " d_model=" << c.d_model
    << " heads=" << c.heads << " encoder_layers=" << c.encoder_layers << " decoder_layers=" << c.decoder_layers
    << " d_ff=" << c.d_ff << " dropout=" << c.dropout << " max_len=" << c.max_len << " pad_id=" << c.pad_id
    << " pre_norm=" << c.pre_norm << " learned_positions=" << c.learned_positions
    << " use_positions=" << c.use_positions << " tie_output=" << c.tie_output
    << " activation=" << (c.activation == nn::Activation::ReLU ? "relu" : "gelu")
    << " embedding_std=" << c.embedding_std << " attention=" << c.attention.to_string();
  return s.str();
}

nn::TransformerConfig config_from_string(const std::string& text, const std::string& source) {
  nn::TransformerConfig c;
  std::istringstream in(text);
  for (std::string item; in >> item;) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos) throw Error(source + ": malformed model config entry '" + item + "'");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    try {
      size_t used = 0;
      auto integer = [&] { const int64_t v = std::stoll(value, &used); if (used != value.size()) throw std::invalid_argument(key); return v; };
      auto real = [&] { const float v = std::stof(value, &used); if (used != value.size()) throw std::invalid_argument(key); return v; };
      if (key == "src_vocab") c.src_vocab = integer();
      else if (key == "tgt_vocab") c.tgt_vocab = integer();
      else if (key == "d_model") c.d_model = integer();
      else if (key == "heads") c.heads = integer();
      else if (key == "encoder_layers") c.encoder_layers = integer();
      else if (key == "decoder_layers") c.decoder_layers = integer();
      else if (key == "d_ff") c.d_ff = integer();
      else if (key == "dropout") c.dropout = real();
      else if (key == "max_len") c.max_len = integer();
      else if (key == "pad_id") c.pad_id = integer();
      else if (key == "pre_norm") c.pre_norm = integer() != 0;
      else if (key == "learned_positions") c.learned_positions = integer() != 0;
      else if (key == "use_positions") c.use_positions = integer() != 0;
      else if (key == "tie_output") c.tie_output = integer() != 0;
      else if (key == "embedding_std") c.embedding_std = real();
      else if (key == "attention") {  // chapter 12; absent in older files: reference
        try {
          c.attention = nn::AttentionKind::parse(value);
        } catch (const Error& e) {
          throw Error(source + ": bad value in model config entry '" + item + "': " + e.what());
        }
      }
      else if (key == "activation") {
        if (value != "relu" && value != "gelu") throw std::invalid_argument(key);
        c.activation = value == "relu" ? nn::Activation::ReLU : nn::Activation::GELU;
      } else {
        throw Error(source + ": unknown model config key '" + key + "'");
      }
    } catch (const std::logic_error&) {  // invalid_argument, out_of_range
      throw Error(source + ": bad value in model config entry '" + item + "'");
    }
  }
  // Sizes that would make the model absurd or impossible to build.
  const bool sane = c.src_vocab > 0 && c.tgt_vocab > 0 && c.d_model > 0 && c.heads > 0 &&
                    c.d_model % c.heads == 0 && c.encoder_layers >= 0 && c.decoder_layers >= 0 &&
                    c.d_ff > 0 && c.max_len > 1 && c.dropout >= 0.0f && c.dropout <= 1.0f &&
                    c.src_vocab < (1 << 24) && c.tgt_vocab < (1 << 24) && c.d_model <= 65536 &&
                    c.d_ff <= 1 << 20 && c.max_len <= 1 << 16 && c.encoder_layers <= 256 && c.decoder_layers <= 256;
  if (!sane) throw Error(source + ": model config is out of range: " + text);
  return c;
}

// --- saving and loading ---

io::Metadata translation_model_metadata(const TranslationModel& m) {
  return {{kConfigKey, config_to_string(m.config)},
          {kSourceVocabKey, m.source_vocab.serialize()},
          {kTargetVocabKey, m.target_vocab.serialize()},
          {kLowercaseKey, m.lowercase ? "1" : "0"}};
}

TranslationModel load_translation_model(const std::string& path) {
  // The metadata says how to build the model; nn::load_checkpoint then fills it.
  const io::SafetensorsContents file = io::load_safetensors(path);
  auto meta = [&](const std::string& key) -> const std::string& {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end()) {
      throw Error(path + ": not a translation model written by 'attend train' (metadata '" + key + "' is missing)");
    }
    return it->second;
  };
  TranslationModel m;
  m.config = config_from_string(meta(kConfigKey), path);
  m.source_vocab = data::Vocabulary::deserialize(meta(kSourceVocabKey));
  m.target_vocab = data::Vocabulary::deserialize(meta(kTargetVocabKey));
  m.lowercase = meta(kLowercaseKey) == "1";
  if (m.source_vocab.size() != m.config.src_vocab || m.target_vocab.size() != m.config.tgt_vocab) {
    throw Error(path + ": vocabulary sizes (" + std::to_string(m.source_vocab.size()) + ", " +
                std::to_string(m.target_vocab.size()) + ") disagree with the model config (" +
                std::to_string(m.config.src_vocab) + ", " + std::to_string(m.config.tgt_vocab) + ")");
  }
  Generator gen(0);  // the weights are overwritten by the checkpoint
  m.model = std::make_unique<nn::Seq2SeqTransformer>(m.config, gen);
  nn::load_checkpoint(path, *m.model, nullptr);
  m.model->eval();
  return m;
}

// --- translating ---

namespace {

// Why a source of `tokens` tokens cannot be translated ("" if it can): it
// needs room for <eos> inside the positional table.
std::string length_problem(int64_t tokens, const nn::TransformerConfig& config) {
  const int64_t limit = config.max_len - 1;
  if (tokens <= limit) return "";
  return "a sentence of " + std::to_string(tokens) + " tokens is longer than the model's limit of " + std::to_string(limit);
}

}  // namespace

std::vector<std::string> TranslationModel::translate(const std::vector<std::string>& sentences,
                                                     int64_t batch_size) {
  data::TokenSequences sources;
  for (const std::string& s : sentences) sources.push_back(encode_source(*this, s));
  std::vector<std::string> out(sentences.size());
  // Sort by length so that a batch needs little padding; write back in input order.
  std::vector<int64_t> order(sentences.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return sources.length(a) < sources.length(b); });
  for (size_t start = 0; start < order.size(); start += static_cast<size_t>(batch_size)) {
    const std::vector<int64_t> indices(order.begin() + static_cast<std::ptrdiff_t>(start),
                                       order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), start + static_cast<size_t>(batch_size))));
    const data::Batch batch = data::make_batch(sources, sources, indices);
    const Tensor src = to_device(batch.src, model->device());  // decoding runs where the model is
    const int64_t max_len = max_output_length(batch.src.size(1), config);
    std::vector<std::vector<int64_t>> decoded;
    if (beam_size > 1) {  // chapter 9: the best hypothesis of each sentence
      for (const auto& hypotheses : decode::beam_search(*model, src, max_len, data::Vocabulary::kBos, data::Vocabulary::kEos,
                                                decode::BeamOptions{beam_size, length_alpha, use_cache})) {
        decoded.push_back(hypotheses.front().tokens);
      }
    } else {
      decode::DecodeOptions options;
      options.use_cache = use_cache;
      decoded = decode::greedy_decode(*model, src, max_len, data::Vocabulary::kBos, data::Vocabulary::kEos, options);
    }
    for (size_t k = 0; k < indices.size(); ++k) out[static_cast<size_t>(indices[k])] = target_vocab.decode(decoded[k]);
  }
  return out;
}

std::vector<int64_t> encode_source(const TranslationModel& m, const std::string& sentence) {
  std::string joined;
  for (const std::string& token : data::tokenize(sentence, m.lowercase)) joined += (joined.empty() ? "" : " ") + token;
  std::vector<int64_t> ids = m.source_vocab.encode(joined);
  const std::string problem = length_problem(static_cast<int64_t>(ids.size()), m.config);
  if (!problem.empty()) throw Error("translate: " + problem);
  return ids;
}

std::string TranslationModel::sentence_problem(const std::string& sentence) const {
  return length_problem(static_cast<int64_t>(data::tokenize(sentence, lowercase).size()), config);
}

void VocabularyCoverage::add(const TranslationModel& model, const std::string& sentence) {
  for (const std::string& token : data::tokenize(sentence, model.lowercase)) {
    ++tokens;
    if (model.source_vocab.id(token) == data::Vocabulary::kUnk) ++unknown;
  }
}

std::string VocabularyCoverage::warning() const {
  if (2 * unknown <= tokens) return "";
  return "warning: " + std::to_string(unknown) + " of the " + std::to_string(tokens) + " input tokens (" +
         std::to_string(100 * unknown / tokens) +
         "%) are unknown to the model's source vocabulary and read as <unk>: was the model trained on this kind of text?";
}

int64_t max_output_length(int64_t source_length, const nn::TransformerConfig& config) {
  return std::min<int64_t>(2 * source_length + 10, config.max_len - 1);
}

// --- scoring ---

EvalResult evaluate(TranslationModel& m, const std::vector<data::SentencePair>& pairs, int64_t batch_size) {
  EvalResult r;
  if (pairs.empty()) return r;
  NoGradGuard no_grad;
  const bool was_training = m.model->is_training();
  m.model->eval();

  // Teacher-forced loss and token accuracy over every pair.
  data::TokenSequences sources, targets;
  for (const auto& p : pairs) {
    sources.push_back(encode_source(m, p.source));
    targets.push_back(m.target_vocab.encode(p.target));
  }
  double loss_sum = 0.0;
  int64_t tokens = 0, correct = 0;
  const Device device = m.model->device();
  for (size_t start = 0; start < pairs.size(); start += static_cast<size_t>(batch_size)) {
    std::vector<int64_t> indices;
    for (size_t i = start; i < std::min(pairs.size(), start + static_cast<size_t>(batch_size)); ++i) indices.push_back(static_cast<int64_t>(i));
    const data::Batch batch = data::make_batch(sources, targets, indices);
    const data::Batch there = data::batch_on_device(batch, device);  // the model's device
    const Tensor logits = m.model->forward(there.src, there.tgt_in);  // (B, T, V)
    const Tensor loss = cross_entropy(logits, there.tgt_out, data::Vocabulary::kPad, 0.0f);
    loss_sum += static_cast<double>(to_device(loss, Device::cpu).item()) * static_cast<double>(batch.target_tokens);
    tokens += batch.target_tokens;
    const std::vector<int64_t> predicted = to_device(argmax(logits, -1), Device::cpu).to_index_vector();
    const std::vector<int64_t> expected = batch.tgt_out.to_index_vector();
    for (size_t i = 0; i < expected.size(); ++i) {
      if (expected[i] != data::Vocabulary::kPad && predicted[i] == expected[i]) ++correct;
    }
  }
  r.loss = tokens > 0 ? loss_sum / static_cast<double>(tokens) : 0.0;
  r.perplexity = std::exp(r.loss);
  r.token_accuracy = tokens > 0 ? static_cast<double>(correct) / static_cast<double>(tokens) : 0.0;

  // Greedy translations of each distinct source, scored against all its references.
  std::vector<std::string> unique_sources;
  std::map<std::string, std::vector<std::string>> references;
  for (const auto& p : pairs) {
    if (!references.count(p.source)) unique_sources.push_back(p.source);
    references[p.source].push_back(p.target);
  }
  const std::vector<std::string> hypotheses = m.translate(unique_sources, batch_size);
  std::vector<std::vector<std::string>> refs;
  for (const std::string& s : unique_sources) refs.push_back(references[s]);
  r.exact_match = train::exact_match(hypotheses, refs);
  r.bleu = train::corpus_bleu(hypotheses, refs).score;
  r.sentences = static_cast<int64_t>(unique_sources.size());
  m.model->train(was_training);
  return r;
}

}  // namespace attend::train
