// Pieces shared by the training loop and the translation model (not public).
// Chapter 8 (docs/08-translation.md).
#pragma once

#include <string>
#include <vector>

#include "attend/train.hpp"

namespace attend::train {

// io::Metadata keys of a translation checkpoint (besides checkpoint.hpp's own).
inline const std::string kConfigKey = "model.config";
inline const std::string kSourceVocabKey = "vocab.source";
inline const std::string kTargetVocabKey = "vocab.target";
inline const std::string kLowercaseKey = "data.lowercase";

// "src_vocab=60 tgt_vocab=80 d_model=128 ..." and back (strict; `source`
// names the file in errors).
std::string config_to_string(const nn::TransformerConfig& config);
nn::TransformerConfig config_from_string(const std::string& text, const std::string& source);

// Token ids of a raw source sentence (tokenized, case-folded if the model
// was trained so; unknown words -> <unk>). Error if longer than the model allows.
std::vector<int64_t> encode_source(const TranslationModel& model, const std::string& sentence);

// How many tokens decoding may produce for a source of this length.
int64_t max_output_length(int64_t source_length, const nn::TransformerConfig& config);

}  // namespace attend::train
