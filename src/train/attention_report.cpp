// One sentence translated by a trained model, with the attention weights of
// every layer for the pair and the tokens that label them: what
// `attend attention` draws. Chapter 9 (docs/09-decoding.md).
#include "attend/decode.hpp"
#include "attend/train.hpp"
#include "train_internal.hpp"

namespace attend::train {

AttentionReport attention_report(TranslationModel& m, const std::string& sentence) {
  AttentionReport r;
  r.translation = m.translate({sentence}, 1).front();

  // The source exactly as translate() fed it: tokens (or <unk>), then <eos>.
  std::vector<int64_t> src = encode_source(m, sentence);
  src.push_back(data::Vocabulary::kEos);
  for (int64_t id : src) r.source.push_back(m.source_vocab.token(id));

  // The decoder reads <bos> y1 .. yn and writes y1 .. yn <eos>.
  std::vector<int64_t> tgt_in{data::Vocabulary::kBos};
  r.decoder_inputs.push_back(m.target_vocab.token(data::Vocabulary::kBos));
  for (int64_t id : m.target_vocab.encode(r.translation)) {
    tgt_in.push_back(id);
    r.decoder_inputs.push_back(m.target_vocab.token(id));
    r.outputs.push_back(m.target_vocab.token(id));
  }
  r.outputs.push_back(m.target_vocab.token(data::Vocabulary::kEos));

  r.maps = decode::attention_maps(*m.model, from_indices(src, {1, static_cast<int64_t>(src.size())}),
                          from_indices(tgt_in, {1, static_cast<int64_t>(tgt_in.size())}));
  return r;
}

}  // namespace attend::train
