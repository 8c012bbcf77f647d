// Pieces shared by the training loop and the translation model (not public).
// Chapter 8 (docs/08-translation.md).
#pragma once

#include <string>
#include <vector>

#include "attend/safetensors.hpp"
#include "attend/train.hpp"

namespace attend::train {

// io::Metadata keys of a translation checkpoint (besides checkpoint.hpp's own).
inline const std::string kConfigKey = "model.config";
inline const std::string kSourceVocabKey = "vocab.source";
inline const std::string kTargetVocabKey = "vocab.target";
inline const std::string kLowercaseKey = "data.lowercase";

// The metadata load_translation_model reads back: config, vocabularies, case folding.
io::Metadata translation_model_metadata(const TranslationModel& model);

// "src_vocab=60 tgt_vocab=80 d_model=128 ..." and back (strict; `source`
// names the file in errors).
std::string config_to_string(const nn::TransformerConfig& config);
nn::TransformerConfig config_from_string(const std::string& text, const std::string& source);

// Token ids of a raw source sentence (tokenized, case-folded if the model
// was trained so; unknown words -> <unk>). Error if longer than the model allows.
std::vector<int64_t> encode_source(const TranslationModel& model, const std::string& sentence);

// How many tokens decoding may produce for a source of this length.
int64_t max_output_length(int64_t source_length, const nn::TransformerConfig& config);

// --- the state of a training run (src/train/run_state.cpp) ---

// Everything a checkpoint holds besides the weights, the optimizer's moments
// and the model's metadata, so that a resumed run continues exactly where
// the first one stopped.
struct RunState {
  int64_t step = 0;               // steps taken
  std::string settings;           // run_settings_text(): the "flag value" lines that define the run
  std::string data_fingerprint;   // data_fingerprint() of the training pairs
  int64_t schedule_steps = 0;     // a cosine schedule's length (0: inverse square root)
  int64_t epoch = 0;              // where the data stream stands: the epoch,
  uint64_t epoch_rng = 0;         // the shuffling generator's state at its start,
  int64_t batch_in_epoch = 0;     // and its next batch
  std::vector<StepRecord> history;
  std::vector<EvalRecord> eval_history;
};

// The pair that writes and reads a training checkpoint: model and optimizer
// (nn::save_checkpoint), the model's metadata and the RunState. Nothing on
// disk changes if save_run throws; load_run validates everything before it
// changes the model or the optimizer (which must have the checkpoint's shapes:
// build the model with load_translation_model first).
void save_run(const std::string& path, const TranslationModel& model, const optim::Optimizer& optimizer,
              const RunState& run);
RunState load_run(const std::string& path, TranslationModel& model, optim::Optimizer& optimizer);

// "<pairs> <fingerprint>": the count and a 64-bit FNV-1a hash of the
// training pairs, so that a resumed run can tell it is fed the same data.
std::string data_fingerprint(const std::vector<data::SentencePair>& pairs);

// The run's settings as "flag value" lines (the rows of train_options() that
// are not ThisRunOnly), and the reverse on --resume: each setting comes from
// the checkpoint, and one the caller gave with another value is an Error
// naming both values.
std::string run_settings_text(const TrainOptions& options);
void adopt_run_settings(TrainOptions& options, const std::string& path, const std::string& settings);

}  // namespace attend::train
