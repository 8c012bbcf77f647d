// Saving and loading the state of a training run: one struct (RunState) and
// one symmetric pair of functions, save_run and load_run, over a checkpoint.
// Chapter 8 (docs/08-translation.md, Appendix B, "Checkpoints, Ctrl-C and --resume").
#include <cstdio>
#include <sstream>

#include "attend/checkpoint.hpp"
#include "train_internal.hpp"

namespace attend::train {

namespace {

// Metadata keys of the run's state (the model's own are in train_internal.hpp).
const std::string kRunKey = "train.run";                       // the settings that define the run
const std::string kDataKey = "train.data";                     // "<pairs> <fingerprint>" of the training pairs
const std::string kScheduleStepsKey = "train.schedule_steps";  // length of a cosine schedule
const std::string kEpochKey = "train.epoch";
const std::string kEpochRngKey = "train.epoch_rng";            // data shuffling state at the epoch's start
const std::string kBatchKey = "train.batch_in_epoch";          // next batch of that epoch
const std::string kHistoryKey = "train.history";               // "step loss lr" lines
const std::string kEvalHistoryKey = "train.eval_history";      // "step loss exact_match bleu" lines

std::string history_text(const std::vector<StepRecord>& steps) {
  std::ostringstream s;
  s.precision(9);
  for (const StepRecord& r : steps) s << r.step << " " << r.loss << " " << r.lr << "\n";
  return s.str();
}

std::vector<StepRecord> parse_history(const std::string& text) {
  std::vector<StepRecord> out;
  std::istringstream in(text);
  StepRecord r{};
  while (in >> r.step >> r.loss >> r.lr) out.push_back(r);
  return out;
}

std::string eval_history_text(const std::vector<EvalRecord>& evals) {
  std::ostringstream s;
  s.precision(9);
  for (const EvalRecord& e : evals) {
    s << e.step << " " << e.result.loss << " " << e.result.exact_match << " " << e.result.bleu << "\n";
  }
  return s.str();
}

std::vector<EvalRecord> parse_eval_history(const std::string& text) {
  std::vector<EvalRecord> out;
  std::istringstream in(text);
  EvalRecord e{};
  while (in >> e.step >> e.result.loss >> e.result.exact_match >> e.result.bleu) out.push_back(e);
  return out;
}

}  // namespace

void save_run(const std::string& path, const TranslationModel& model, const optim::Optimizer& optimizer,
              const RunState& run) {
  io::Metadata meta = translation_model_metadata(model);
  meta[kRunKey] = run.settings;
  meta[kDataKey] = run.data_fingerprint;
  if (run.schedule_steps > 0) meta[kScheduleStepsKey] = std::to_string(run.schedule_steps);
  meta[kEpochKey] = std::to_string(run.epoch);
  meta[kEpochRngKey] = std::to_string(run.epoch_rng);
  meta[kBatchKey] = std::to_string(run.batch_in_epoch);
  meta[kHistoryKey] = history_text(run.history);
  meta[kEvalHistoryKey] = eval_history_text(run.eval_history);
  nn::save_checkpoint(path, *model.model, &optimizer, run.step, meta);
}

RunState load_run(const std::string& path, TranslationModel& model, optim::Optimizer& optimizer) {
  const io::Metadata meta = io::load_safetensors(path).metadata;
  auto text = [&](const std::string& key) -> std::string {
    auto it = meta.find(key);
    if (it == meta.end()) throw Error(path + ": not a training checkpoint (no '" + key + "')");
    return it->second;
  };
  RunState run;
  run.settings = text(kRunKey);
  run.data_fingerprint = text(kDataKey);
  try {
    if (meta.count(kScheduleStepsKey)) run.schedule_steps = std::stoll(text(kScheduleStepsKey));
    run.epoch = std::stoll(text(kEpochKey));
    run.epoch_rng = std::stoull(text(kEpochRngKey));
    run.batch_in_epoch = std::stoll(text(kBatchKey));
  } catch (const std::logic_error&) {
    throw Error(path + ": the data position or schedule length of the run is malformed");
  }
  run.history = parse_history(text(kHistoryKey));
  run.eval_history = parse_eval_history(text(kEvalHistoryKey));
  run.step = nn::load_checkpoint(path, *model.model, &optimizer).step;
  return run;
}

std::string data_fingerprint(const std::vector<data::SentencePair>& pairs) {
  uint64_t hash = data::kFnv1aOffsetBasis;
  for (const data::SentencePair& p : pairs) {
    hash = data::fnv1a(p.source, hash);
    hash = data::fnv1a("\t", hash);
    hash = data::fnv1a(p.target, hash);
    hash = data::fnv1a("\n", hash);
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
  return std::to_string(pairs.size()) + " " + hex;
}

}  // namespace attend::train
