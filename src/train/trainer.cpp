// The training loop for translation. train_step() is the step a learner must
// understand (forward, loss, backward, clip, update); train() is the loop
// around it: batches, the schedule, validation, progress, checkpoints, Ctrl-C.
// Setting a run up (fresh or resumed) is start_training(). Chapter 8
// (docs/08-translation.md).
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "attend/files.hpp"
#include "attend/gpu_kernels.hpp"
#include "attend/ops.hpp"
#include "attend/optimizer_kernels.hpp"
#include "attend/parallel.hpp"
#include "attend/svg.hpp"
#include "train_internal.hpp"

namespace attend::train {

namespace {

// --- Ctrl-C (SIGINT) and SIGTERM (kill, timeout, job schedulers): finish
// the step, write a checkpoint, stop ---

volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_interrupt(int) { g_interrupted = 1; }

// Installs the handler for the duration of training, then restores the old ones.
class InterruptGuard {
 public:
  InterruptGuard() : previous_int_(std::signal(SIGINT, on_interrupt)), previous_term_(std::signal(SIGTERM, on_interrupt)) {
    g_interrupted = 0;
  }
  ~InterruptGuard() {
    std::signal(SIGINT, previous_int_);
    std::signal(SIGTERM, previous_term_);
  }
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

 private:
  void (*previous_int_)(int);
  void (*previous_term_)(int);
};

std::string format_seconds(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  }
  return buf;
}

// The live progress line: a bar on a terminal (redrawn in place with \r),
// one plain line every `every` steps otherwise (a log file, a CI run).
class Progress {
 public:
  Progress(std::ostream& out, bool terminal, int64_t every) : out_(out), terminal_(terminal), every_(every) {}

  void update(int64_t step, int64_t total, double loss, double lr, double tokens_per_second,
              double elapsed, double left) {
    if (!terminal_ && step % every_ != 0 && step != total) return;
    char line[256];
    std::snprintf(line, sizeof line, "step %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  elapsed %s  left %s",
                  static_cast<long long>(step), static_cast<long long>(total), loss, lr, tokens_per_second,
                  format_seconds(elapsed).c_str(), format_seconds(left).c_str());
    if (terminal_) {
      const int width = 24;
      const int filled = total > 0 ? static_cast<int>(width * step / total) : 0;
      out_ << "\r[" << std::string(static_cast<size_t>(filled), '#')
           << std::string(static_cast<size_t>(width - filled), '.') << "] " << line << "\033[K" << std::flush;
      dirty_ = true;
    } else {
      out_ << line << "\n" << std::flush;
    }
  }

  // A line of its own (validation results, checkpoints) without breaking the bar.
  void message(const std::string& text) {
    if (dirty_) out_ << "\n";
    dirty_ = false;
    out_ << text << "\n" << std::flush;
  }

 private:
  std::ostream& out_;
  bool terminal_;
  int64_t every_;
  bool dirty_ = false;
};

// What --device prints at the end: the time a step takes and the tokens a
// second (the steps alone), and on the GPU what the caching allocator held
// at its peak (docs/11-cuda.md, "Training on the device").
std::string speed_report(Device device, int64_t steps, double seconds, int64_t tokens) {
  char line[320];
  int length = std::snprintf(line, sizeof line, "speed on %s: %.2f ms a step, %.0f tokens/s (%lld steps; validation and checkpoints not counted)",
                             to_string(device).c_str(), 1000.0 * seconds / static_cast<double>(steps),
                             static_cast<double>(tokens) / seconds, static_cast<long long>(steps));
  if (device == Device::cuda && length > 0 && static_cast<size_t>(length) < sizeof line) {
    const kernels::DeviceMemoryStats memory = kernels::device_memory_stats();
    std::snprintf(line + length, sizeof line - static_cast<size_t>(length),
                  "; device memory: peak %.1f MiB in use, %lld blocks taken from the device, %lld reused",
                  static_cast<double>(memory.peak_bytes_in_use) / (1024.0 * 1024.0),
                  static_cast<long long>(memory.device_allocations), static_cast<long long>(memory.reuses));
  }
  return line;
}

// Training and validation pairs, from a task or from TSV files.
void load_pairs(const TrainOptions& o, std::vector<data::SentencePair>& train_pairs,
                std::vector<data::SentencePair>& valid_pairs, std::ostream& log) {
  if (o.train_path.empty()) {
    train_pairs = data::generate_task(o.task, data::Split::Train, o.train_size, o.seed);
    valid_pairs = data::generate_task(o.task, data::Split::Valid, o.valid_size, o.seed + 1);
    return;
  }
  data::TsvOptions tsv;
  tsv.max_tokens = o.max_tokens;
  tsv.skip_bad_lines = o.skip_bad_lines;
  tsv.lowercase = o.lowercase;
  data::TsvSummary summary;
  train_pairs = data::read_tsv(o.train_path, tsv, &summary);
  log << o.train_path << ": " << summary.pairs << " pairs";
  if (summary.skipped > 0) log << ", " << summary.skipped << " bad lines skipped (first: " << summary.first_problem << ")";
  log << "\n";
  if (!o.valid_path.empty()) {
    valid_pairs = data::read_tsv(o.valid_path, tsv, &summary);
  } else {
    // Hold out the last valid_size pairs (the file's order is the user's).
    const size_t n = std::min(train_pairs.size() / 10, static_cast<size_t>(std::max<int64_t>(o.valid_size, 0)));
    valid_pairs.assign(train_pairs.end() - static_cast<std::ptrdiff_t>(n), train_pairs.end());
    train_pairs.resize(train_pairs.size() - n);
  }
  if (train_pairs.empty()) throw Error(o.train_path + ": no training pairs");
}

// Training loss (averaged over windows of steps) and validation loss on top;
// validation exact match below.
void write_plot(const std::string& path, const std::vector<StepRecord>& steps, const std::vector<EvalRecord>& evals) {
  io::svg::Series train_loss{"train loss", {}, {}, ""}, valid_loss{"valid loss", {}, {}, ""};
  const size_t window = std::max<size_t>(1, steps.size() / 200);
  for (size_t i = 0; i + window <= steps.size(); i += window) {
    double sum = 0.0;
    for (size_t k = i; k < i + window; ++k) sum += steps[k].loss;
    train_loss.x.push_back(static_cast<double>(steps[i + window - 1].step));
    train_loss.y.push_back(sum / static_cast<double>(window));
  }
  io::svg::Series exact{"valid exact match", {}, {}, ""};
  for (const EvalRecord& e : evals) {
    valid_loss.x.push_back(static_cast<double>(e.step));
    valid_loss.y.push_back(e.result.loss);
    exact.x.push_back(static_cast<double>(e.step));
    exact.y.push_back(e.result.exact_match);
  }
  if (train_loss.x.empty()) return;
  io::svg::LinePlot loss_plot{"Loss", "step", "cross-entropy per token", {train_loss}, 720.0, 360.0};
  if (!valid_loss.x.empty()) loss_plot.series.push_back(valid_loss);
  io::svg::Canvas page(720.0, exact.x.empty() ? 360.0 : 720.0);
  page.draw_canvas(io::svg::draw_line_plot(loss_plot), 0.0, 0.0);
  if (!exact.x.empty()) {
    io::svg::LinePlot exact_plot{"Validation exact match (greedy)", "step", "fraction of sentences", {exact}, 720.0, 360.0};
    page.draw_canvas(io::svg::draw_line_plot(exact_plot), 0.0, 360.0);
  }
  page.save(path);
}

// Everything the loop works with, set up by start_training().
struct Training {
  TrainOptions options;  // after --resume: with the checkpoint's settings
  TranslationModel model;
  std::unique_ptr<optim::Adam> optimizer;
  std::unique_ptr<optim::Schedule> schedule;
  data::TokenSequences source_ids, target_ids;               // the encoded training pairs
  std::vector<data::SentencePair> eval_pairs;                 // what validation scores
  RunState run;                                               // step, data position, history
  Generator shuffle{0};
  std::vector<std::vector<int64_t>> epoch;                    // this epoch's batches
  std::unique_ptr<io::OutputLock> lock;                       // on options.out while the run writes it

  // The next batch of the data stream, starting a new epoch when one ends.
  data::Batch next_batch() {
    if (run.batch_in_epoch == static_cast<int64_t>(epoch.size())) {
      ++run.epoch;
      run.batch_in_epoch = 0;
      run.epoch_rng = shuffle.state();
      epoch = data::bucketed_batches(source_ids, target_ids, options.batch_size, shuffle);
    }
    return data::make_batch(source_ids, target_ids, epoch[static_cast<size_t>(run.batch_in_epoch++)]);
  }
};

// A fresh run: vocabularies from the training pairs, a model from the seed.
TranslationModel new_translation_model(const TrainOptions& o, const std::vector<data::SentencePair>& train_pairs) {
  std::vector<std::string_view> sources, targets;  // views: a copy of 200,000 pairs would double their memory
  int64_t longest = 0;  // tokens (the pairs hold them joined by single spaces)
  for (const auto& p : train_pairs) {
    sources.push_back(p.source);
    targets.push_back(p.target);
    for (const std::string* side : {&p.source, &p.target}) {
      longest = std::max<int64_t>(longest, std::count(side->begin(), side->end(), ' ') + 1);
    }
  }
  TranslationModel tm;
  tm.source_vocab = data::Vocabulary::build(sources, o.min_count);
  tm.target_vocab = data::Vocabulary::build(targets, o.min_count);
  for (const data::Vocabulary* vocab : {&tm.source_vocab, &tm.target_vocab}) {
    if (vocab->size() == data::Vocabulary().size()) {
      throw Error("train: no word of the training " + std::string(vocab == &tm.source_vocab ? "sources" : "targets") +
                  " occurs --min-count " + std::to_string(o.min_count) +
                  " times: the vocabulary would hold only the special tokens (lower --min-count)");
    }
  }
  // With the vocabularies and sentence lengths known: can the model and a batch fit?
  check_training_memory(o, DataShape{tm.source_vocab.size(), tm.target_vocab.size(), longest + 1,
                                     o.train_path.empty() ? 0 : static_cast<int64_t>(train_pairs.size())},
                        physical_memory_bytes());
  tm.lowercase = o.lowercase;
  tm.config = o.model;
  tm.config.src_vocab = tm.source_vocab.size();
  tm.config.tgt_vocab = tm.target_vocab.size();
  tm.config.pad_id = data::Vocabulary::kPad;
  Generator init(o.seed);
  tm.model = std::make_unique<nn::Seq2SeqTransformer>(tm.config, init);
  return tm;
}

std::unique_ptr<optim::Adam> make_optimizer(nn::Seq2SeqTransformer& model, float lr) {
  return std::make_unique<optim::Adam>(model.named_parameters(), lr, 0.9f, 0.98f, 1e-9f);
}

// The model, optimizer, data and position of a run: new, or continued from
// options.resume (whose settings and data the run must keep).
Training start_training(const TrainOptions& options, std::ostream& log) {
  check_train_options(options);
  Training t;
  TrainOptions& o = t.options;
  o = options;
  // Outputs first, before any work: a resumed run writes back where it came from.
  if (o.out.empty()) o.out = o.resume.empty() ? "model.safetensors" : o.resume;
  std::vector<io::NamedPath> inputs = {{"--data", o.train_path}, {"--valid", o.valid_path}};
  std::error_code same_error;
  if (!o.resume.empty() && !std::filesystem::equivalent(o.resume, o.out, same_error)) inputs.push_back({"--resume", o.resume});
  io::check_output_files(inputs, {{"--out", o.out}, {"--plot", o.plot}});
  t.lock = std::make_unique<io::OutputLock>(o.out);
  std::vector<data::SentencePair> train_pairs, valid_pairs;
  if (o.resume.empty()) {
    load_pairs(o, train_pairs, valid_pairs, log);
    t.model = new_translation_model(o, train_pairs);
    t.model.model->to(o.device);  // before the optimizer, whose state goes beside the parameters
    t.optimizer = make_optimizer(*t.model.model, o.lr);
    t.run.settings = run_settings_text(o);
    t.run.data_fingerprint = data_fingerprint(train_pairs);
    if (o.schedule == "cosine") t.run.schedule_steps = o.steps;  // the curve spans the first run's steps
    t.shuffle = Generator(o.seed + 12345);
    t.run.epoch_rng = t.shuffle.state();
  } else {
    t.model = load_translation_model(o.resume);
    t.model.model->to(o.device);  // a checkpoint loads on the host; the run goes on where it is asked to
    t.optimizer = make_optimizer(*t.model.model, o.lr);
    t.run = load_run(o.resume, t.model, *t.optimizer);
    if (o.steps > 0 && o.minutes <= 0.0 && o.steps <= t.run.step) {
      throw Error(o.resume + ": the run is at step " + std::to_string(t.run.step) + " already; --steps " +
                  std::to_string(o.steps) + " leaves nothing to do (nothing was written)");
    }
    adopt_run_settings(o, o.resume, t.run.settings);
    check_train_options(o);
    load_pairs(o, train_pairs, valid_pairs, log);
    const std::string fingerprint = data_fingerprint(train_pairs);
    if (fingerprint != t.run.data_fingerprint) {
      throw Error(o.resume + ": the training data are not those of the run in this checkpoint (pairs and fingerprint: " +
                  t.run.data_fingerprint + " then, " + fingerprint + " now)");
    }
    if (o.schedule == "cosine" && t.run.schedule_steps <= 0) {
      throw Error(o.resume + ": the length of the cosine schedule is missing or malformed");
    }
    t.shuffle.set_state(t.run.epoch_rng);
    log << "resuming " << o.resume << " at step " << t.run.step << "\n";
  }
  if (o.schedule == "cosine") {
    t.schedule = std::make_unique<optim::WarmupCosineSchedule>(o.lr, o.warmup, t.run.schedule_steps, o.lr * 0.01f);
  } else {
    t.schedule = std::make_unique<optim::WarmupInverseSqrtSchedule>(o.lr, o.warmup);
  }

  // Encoded training data; examples that do not fit the positional table are dropped.
  const nn::TransformerConfig& c = t.model.config;
  int64_t source_words = 0, target_words = 0;  // reserved first: a growing vector leaves copies behind
  for (const auto& p : train_pairs) {
    source_words += std::count(p.source.begin(), p.source.end(), ' ') + 1;
    target_words += std::count(p.target.begin(), p.target.end(), ' ') + 1;
  }
  t.source_ids.reserve(static_cast<int64_t>(train_pairs.size()), source_words);
  t.target_ids.reserve(static_cast<int64_t>(train_pairs.size()), target_words);
  for (const auto& p : train_pairs) {
    std::vector<int64_t> s = t.model.source_vocab.encode(p.source), g = t.model.target_vocab.encode(p.target);
    if (static_cast<int64_t>(std::max(s.size(), g.size())) + 1 > c.max_len) continue;
    t.source_ids.push_back(s);
    t.target_ids.push_back(g);
  }
  if (t.source_ids.empty()) throw Error("train: no training example fits max_len " + std::to_string(c.max_len));
  t.eval_pairs = valid_pairs;
  if (static_cast<int64_t>(t.eval_pairs.size()) > o.eval_sentences) t.eval_pairs.resize(static_cast<size_t>(o.eval_sentences));
  t.epoch = data::bucketed_batches(t.source_ids, t.target_ids, o.batch_size, t.shuffle);
  if (t.run.batch_in_epoch > static_cast<int64_t>(t.epoch.size())) throw Error(o.resume + ": data position beyond the epoch");

  log << "model: " << t.model.model->parameter_count() << " parameters (d_model " << c.d_model << ", " << c.heads
      << " heads, " << c.encoder_layers << "+" << c.decoder_layers << " layers, feed-forward " << c.d_ff
      << "); vocabularies " << t.model.source_vocab.size() << " / " << t.model.target_vocab.size() << "; "
      << t.source_ids.size() << " training pairs; threads " << omp_get_max_threads();
  if (o.device == Device::cuda) log << "; device cuda (" << kernels::device_name() << ")";
  log << "\n";
  t.model.model->train();
  return t;
}

// Scores the validation sample, records it and prints one line.
void validate(Training& t, TrainResult& result, Progress& progress) {
  const EvalResult r = evaluate(t.model, t.eval_pairs, t.options.batch_size);
  t.run.eval_history.push_back({t.run.step, r});
  result.evals.push_back(t.run.eval_history.back());
  char line[200];
  std::snprintf(line, sizeof line, "valid @ %lld: loss %.4f  ppl %.3f  token acc %.4f  exact %.4f  BLEU %.2f (%lld sentences)",
                static_cast<long long>(t.run.step), r.loss, r.perplexity, r.token_accuracy, r.exact_match, r.bleu,
                static_cast<long long>(r.sentences));
  progress.message(line);
  if (!t.options.plot.empty()) {
    try {  // a picture that cannot be written must not stop training (or lose the model)
      write_plot(t.options.plot, t.run.history, t.run.eval_history);
    } catch (const Error& e) {
      progress.message(std::string("warning: ") + e.what());
    }
  }
  t.model.model->train();  // evaluate() switched dropout off
}

}  // namespace

double train_step(nn::Seq2SeqTransformer& model, const data::Batch& batch, optim::Optimizer& optimizer,
                  float label_smoothing, float clip_norm) {
  const Tensor logits = model.forward(batch.src, batch.tgt_in);  // (B, T, V)
  const Tensor loss = cross_entropy(logits, batch.tgt_out, data::Vocabulary::kPad, label_smoothing);
  // On the GPU the loss is the one number that comes back (and the host waits for it).
  const double loss_value = to_device(loss, Device::cpu).item();
  if (!std::isfinite(loss_value)) return loss_value;  // the caller stops; nothing was updated
  optimizer.zero_grad();
  loss.backward();
  if (logits.device() == Device::cpu) {
    // Clipping folded into the update: the norm, then the optimizer scales
    // each gradient as it reads it (one pass over the gradients fewer than
    // scaling them in place first; the same bits).
    const float norm = optim::grad_norm(model.parameters());
    optimizer.step_with_grad_scale(kernels::clip_scale(norm, clip_norm));
  } else {
    optim::clip_grad_norm_tensor(model.parameters(), clip_norm);  // the norm stays where it is
    optimizer.step();
  }
  return loss_value;
}

TrainResult train(const TrainOptions& options, std::ostream& log) {
  if (options.threads > 0) omp_set_num_threads(options.threads);
  Training t = start_training(options, log);
  const TrainOptions& o = t.options;
  RunState& run = t.run;
  TrainResult result;
  Progress progress(log, isatty(STDERR_FILENO) && &log == &std::cerr, o.log_every);
  InterruptGuard interrupt_guard;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  auto finished = [&] { return (o.steps > 0 && run.step >= o.steps) || (o.minutes > 0.0 && elapsed() >= o.minutes * 60.0); };
  const int64_t first_step = run.step;
  int64_t tokens = 0, saved_step = -1;
  double step_seconds = 0.0;  // in the steps alone: no validation, no checkpoints
  auto save = [&] {
    save_run(o.out, t.model, *t.optimizer, run);
    saved_step = run.step;
  };

  while (!finished()) {
    const double step_started = elapsed();
    const data::Batch batch = data::batch_on_device(t.next_batch(), o.device);  // built on the host, moved once
    ++run.step;
    if (o.before_step) o.before_step(run.step, batch);
    t.optimizer->lr = t.schedule->lr(run.step);
    double loss = 0.0;
    // One team of threads for the whole step: woken once here, they share
    // every parallel loop in it (chapter 10, parallel.hpp).
    run_as_thread_team([&] {
      loss = train_step(*t.model.model, batch, *t.optimizer, o.label_smoothing, o.clip_norm);
    });
    step_seconds += elapsed() - step_started;  // (on the GPU the loss's copy waited for the step)
    if (!std::isfinite(loss)) {
      progress.message("");
      throw Error("train: the loss became " + std::string(std::isnan(loss) ? "NaN" : "infinite") + " at step " +
                  std::to_string(run.step) + "; stopped. " +
                  (saved_step < 0 ? std::string("No checkpoint was written in this run.")
                                  : "The last good checkpoint is " + o.out + "."));
    }
    run.history.push_back({run.step, loss, t.optimizer->lr});
    result.steps.push_back(run.history.back());
    tokens += batch.source_tokens + batch.target_tokens;
    const double seconds = elapsed(), per_step = seconds / static_cast<double>(run.step - first_step);
    const int64_t total = o.minutes > 0.0 ? run.step + static_cast<int64_t>((o.minutes * 60.0 - seconds) / per_step) : o.steps;
    progress.update(run.step, std::max(total, run.step), loss, t.optimizer->lr, static_cast<double>(tokens) / seconds,
                    seconds, static_cast<double>(std::max<int64_t>(0, total - run.step)) * per_step);

    const bool last = finished();
    if (o.eval_every > 0 && (run.step % o.eval_every == 0 || last) && !t.eval_pairs.empty()) validate(t, result, progress);
    if (g_interrupted) {
      save();
      progress.message("interrupted at step " + std::to_string(run.step) + ": checkpoint written to " + o.out);
      result.interrupted = true;
      break;
    }
    if ((o.checkpoint_every > 0 && run.step % o.checkpoint_every == 0) || last) save();
  }
  if (saved_step != run.step) save();
  if (!o.plot.empty()) write_plot(o.plot, run.history, run.eval_history);  // after the model: a failure here loses nothing
  progress.message("done: step " + std::to_string(run.step) + ", " + format_seconds(elapsed()) + "; model written to " + o.out);
  if (o.report_speed && run.step > first_step) progress.message(speed_report(o.device, run.step - first_step, step_seconds, tokens));
  result.final_step = run.step;
  return result;
}

}  // namespace attend::train
