// Chapter 8 tests, training side (docs/08-translation.md): a tiny model
// overfits 32 toy-French pairs, an interrupted run resumes bit for bit, a
// NaN loss stops training and keeps the last checkpoint, damaged model files
// are refused, and the `attend` program works end to end (data, train,
// translate, eval, --resume, help, usage errors and exit statuses).
#include <signal.h>    // kill, SIGINT
#include <sys/stat.h>  // mkfifo
#include <sys/wait.h>  // waitpid, WIFEXITED, WEXITSTATUS
#include <unistd.h>    // fork, execl, usleep

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "attend/checkpoint.hpp"
#include "attend/data.hpp"
#include "attend/safetensors.hpp"
#include "attend/tensor.hpp"
#include "attend/train.hpp"
#include "attend/transformer.hpp"
#include "catch_compat.hpp"
#include "test_files.hpp"
#include "test_threads.hpp"

#ifndef ATTEND_PROGRAM  // the Makefile passes the path of the `attend` program it builds
#define ATTEND_PROGRAM "build/attend"
#endif

namespace data = attend::data;
namespace train = attend::train;
using attend::Generator;
using attend::Tensor;
using attend_test::read_file;
using attend_test::KeepThreads;  // train() sets the OpenMP thread count for the whole process
using attend_test::TempDir;
using attend_test::write_file;

namespace {

void write_tsv(const std::string& path, const std::vector<data::SentencePair>& pairs) {
  std::string text;
  for (const auto& p : pairs) text += p.source + "\t" + p.target + "\n";
  write_file(path, text);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// A tiny, fast run of the copy task (about 6,000 parameters).
train::TrainOptions tiny_options(const std::string& out, int threads) {
  train::TrainOptions o;
  o.task = "copy";
  o.train_size = 96;  // 6 batches of 16: an epoch every 6 steps
  o.valid_size = 20;
  o.model.d_model = 16;
  o.model.heads = 2;
  o.model.encoder_layers = o.model.decoder_layers = 1;
  o.model.d_ff = 32;
  o.model.dropout = 0.1f;  // dropout's random stream must resume exactly too
  o.batch_size = 16;
  o.lr = 3e-3f;
  o.warmup = 10;
  o.seed = 3;
  o.threads = threads;
  o.eval_every = 0;
  o.checkpoint_every = 0;
  o.log_every = 1000;
  o.out = out;
  return o;
}

int64_t checkpoint_step(const std::string& path) {
  return std::stoll(attend::io::load_safetensors(path).metadata.at("attend.step"));
}

}  // namespace

// ---------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------

TEST_CASE("train: a small model overfits 32 toy-French pairs to 100% greedy exact match", "[ch08]") {
  KeepThreads keep;
  TempDir dir("ch08_train");
  const std::vector<data::SentencePair> pairs = data::generate_task("toy-french", data::Split::Train, 32, 8);
  write_tsv(dir.file("pairs.tsv"), pairs);

  // One batch of all 32 pairs per step; the same file as validation set, so
  // that no pair is held out. d_model 32, one layer each side, no dropout or
  // label smoothing, a high learning rate: exact match reaches 100% by step
  // 50-60 (tried with 4 sets of 32 pairs and 2 seeds each); 80 steps leave a
  // margin and take under a second of CPU (-O2).
  train::TrainOptions o;
  o.train_path = dir.file("pairs.tsv");
  o.valid_path = dir.file("pairs.tsv");
  o.model.d_model = 32;
  o.model.heads = 2;
  o.model.encoder_layers = o.model.decoder_layers = 1;
  o.model.d_ff = 64;
  o.model.dropout = 0.0f;
  o.label_smoothing = 0.0f;
  o.batch_size = 32;
  o.steps = 80;
  o.lr = 1e-2f;
  o.warmup = 10;
  o.seed = 1;
  o.threads = 1;
  o.eval_every = 0;
  o.checkpoint_every = 0;
  o.log_every = 1000;
  o.out = dir.file("model.safetensors");
  std::ostringstream log;
  const train::TrainResult result = train::train(o, log);
  INFO(log.str());
  REQUIRE(result.final_step == 80);
  REQUIRE(result.steps.size() == 80);
  CHECK(result.steps.front().step == 1);
  CHECK(result.steps.back().loss < 0.2);
  CHECK(result.steps.back().loss < result.steps.front().loss / 10);
  CHECK(log.str().find("32 pairs") != std::string::npos);

  train::TranslationModel model = train::load_translation_model(o.out);
  std::vector<std::string> sources;
  for (const auto& p : pairs) sources.push_back(p.source);
  const std::vector<std::string> outputs = model.translate(sources);
  REQUIRE(outputs.size() == pairs.size());
  for (size_t i = 0; i < pairs.size(); ++i) {
    INFO(pairs[i].source);
    CHECK(outputs[i] == pairs[i].target);
  }
  const train::EvalResult r = train::evaluate(model, pairs);
  CHECK(r.exact_match == 1.0);
  CHECK(r.token_accuracy == 1.0);
  CHECK(std::fabs(r.bleu - 100.0) < 1e-9);
  CHECK(r.sentences == 32);
  CHECK(r.loss < 0.2);
  CHECK(std::fabs(r.perplexity - std::exp(r.loss)) < 1e-9);
}

TEST_CASE("train: an interrupted run resumes exactly (losses and final weights, bit for bit)", "[ch08]") {
  KeepThreads keep;
  TempDir dir("ch08_train");
  // threads 1 and 2; a resume point inside the first epoch (step 4) and one
  // at its end (6, so the resumed run starts by shuffling a new epoch); 14
  // steps in all, so the resumed part crosses an epoch boundary either way.
  for (const int threads : {1, 2}) {
    for (const int64_t half : {int64_t{4}, int64_t{6}}) {
      INFO("threads " << threads << ", resumed after step " << half);
      std::ostringstream log;
      train::TrainOptions whole = tiny_options(dir.file("whole.safetensors"), threads);
      whole.steps = 14;
      const train::TrainResult a = train::train(whole, log);

      train::TrainOptions first = tiny_options(dir.file("part.safetensors"), threads);
      first.steps = half;
      const train::TrainResult b = train::train(first, log);
      REQUIRE(checkpoint_step(first.out) == half);

      train::TrainOptions rest = tiny_options(dir.file("resumed.safetensors"), threads);
      rest.steps = 14;
      rest.resume = first.out;
      const train::TrainResult c = train::train(rest, log);

      REQUIRE(a.steps.size() == 14);
      REQUIRE(b.steps.size() == static_cast<size_t>(half));
      REQUIRE(c.steps.size() == static_cast<size_t>(14 - half));
      REQUIRE(c.final_step == 14);
      for (int64_t i = 0; i < half; ++i) {  // the first part is the same run
        CHECK(b.steps[static_cast<size_t>(i)].loss == a.steps[static_cast<size_t>(i)].loss);
      }
      for (size_t i = 0; i < c.steps.size(); ++i) {
        const train::StepRecord& expected = a.steps[static_cast<size_t>(half) + i];
        INFO("step " << expected.step);
        CHECK(c.steps[i].step == expected.step);
        CHECK(c.steps[i].loss == expected.loss);  // exactly, not approximately
        CHECK(c.steps[i].lr == expected.lr);
      }
      // The final files hold the same parameters, optimizer moments,
      // generators and history: they are the same bytes.
      const attend::io::SafetensorsContents x = attend::io::load_safetensors(whole.out);
      const attend::io::SafetensorsContents y = attend::io::load_safetensors(rest.out);
      REQUIRE(x.tensors.size() == y.tensors.size());
      for (size_t i = 0; i < x.tensors.size(); ++i) {
        INFO(x.tensors[i].first);
        CHECK(x.tensors[i].first == y.tensors[i].first);
        CHECK(x.tensors[i].second.to_vector() == y.tensors[i].second.to_vector());
      }
      CHECK(x.metadata == y.metadata);
      CHECK(read_file(whole.out) == read_file(rest.out));
    }
  }
}

TEST_CASE("train: before_step sees each step and its batch; threads changed there change no bits", "[ch08]") {
  KeepThreads keep;
  TempDir dir("ch08_before_step");
  std::ostringstream log;
  // Wide enough that products and loops are shared among 2 threads.
  const auto options = [&](const std::string& name) {
    train::TrainOptions o = tiny_options(dir.file(name), 1);
    o.model.d_model = 64;
    o.model.d_ff = 256;
    o.steps = 8;
    return o;
  };
  train::TrainOptions plain = options("plain.safetensors");
  const train::TrainResult a = train::train(plain, log);

  // The same run with the thread count switched between 1 and 2 every two
  // steps from the hook (as tutorial 10 times them).
  train::TrainOptions hooked = options("hooked.safetensors");
  std::vector<int64_t> steps_seen;
  int64_t tokens_seen = 0;
  hooked.before_step = [&](int64_t step, const attend::data::Batch& batch) {
    steps_seen.push_back(step);
    tokens_seen += batch.source_tokens + batch.target_tokens;
    CHECK(batch.target_tokens > 0);
    omp_set_num_threads((step - 1) / 2 % 2 == 0 ? 1 : 2);
  };
  const train::TrainResult b = train::train(hooked, log);
  CHECK(steps_seen == std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8});
  CHECK(tokens_seen > 8 * 16);  // 8 batches of 16 sentences, each of a few tokens
  REQUIRE(a.steps.size() == b.steps.size());
  for (size_t i = 0; i < a.steps.size(); ++i) {
    INFO("step " << a.steps[i].step);
    CHECK(b.steps[i].loss == a.steps[i].loss);  // exactly
  }
  CHECK(read_file(plain.out) == read_file(hooked.out));
}

TEST_CASE("train: a NaN loss stops training, names the step and keeps the last checkpoint", "[ch08]") {
  KeepThreads keep;
  TempDir dir("ch08_train");
  std::ostringstream log;
  // A learning rate of 1e30 (warmup 1: at once) makes the first update throw
  // every weight to ~1e30; the next forward pass overflows to inf and NaN.
  train::TrainOptions wild = tiny_options(dir.file("wild.safetensors"), 1);
  wild.steps = 20;
  wild.lr = 1e30f;
  wild.warmup = 1;
  REQUIRE_THROWS_MENTIONING(train::train(wild, log), "at step 2", "stopped", "No checkpoint was written");
  CHECK_FALSE(std::filesystem::exists(wild.out));

  // A good checkpoint after 5 steps. A resumed run may not change its
  // learning rate (nor any other setting of the run), so to make the resumed
  // run fail, one weight of a copy of the checkpoint is set to NaN: the loss
  // of step 6 is NaN, and the file it resumed from is left exactly as it was.
  train::TrainOptions good = tiny_options(dir.file("good.safetensors"), 1);
  good.steps = 5;
  train::train(good, log);
  attend::io::SafetensorsContents contents = attend::io::load_safetensors(good.out);
  bool poisoned = false;
  for (auto& [name, tensor] : contents.tensors) {
    if (!poisoned && name.find("feed_forward.linear1.weight") != std::string::npos) {
      tensor.data()[0] = std::nanf("");
      poisoned = true;
    }
  }
  REQUIRE(poisoned);
  const std::string bad = dir.file("poisoned.safetensors");
  attend::io::save_safetensors(bad, contents.tensors, contents.metadata);
  const std::string before = read_file(bad);
  train::TrainOptions resumed = good;
  resumed.steps = 20;
  resumed.resume = bad;
  resumed.out = bad;
  resumed.checkpoint_every = 0;
  bool threw = false;
  try {
    train::train(resumed, log);
  } catch (const attend::Error& e) {
    threw = true;
    const std::string message = e.what();
    INFO(message);
    CHECK(message.find("NaN") != std::string::npos);
    CHECK(message.find("at step 6") != std::string::npos);
  }
  REQUIRE(threw);
  CHECK(read_file(bad) == before);
  CHECK(checkpoint_step(bad) == 5);
}

TEST_CASE("train: --resume keeps the run's settings and data, and refuses to change them", "[ch08]") {
  KeepThreads keep;
  TempDir dir("ch08_train");
  std::ostringstream log;
  train::TrainOptions whole = tiny_options(dir.file("whole.safetensors"), 1);
  whole.steps = 10;
  const train::TrainResult a = train::train(whole, log);
  train::TrainOptions first = tiny_options(dir.file("part.safetensors"), 1);
  first.steps = 4;
  train::train(first, log);
  const std::string before = read_file(first.out);

  // Left out, every setting comes from the checkpoint: a resume that names
  // only the file, the output and the steps continues the same run, even on
  // another number of threads (every sum has a fixed order, chapter 10).
  train::TrainOptions bare;
  bare.resume = first.out;
  bare.out = dir.file("resumed.safetensors");
  bare.steps = 10;
  bare.threads = 2;
  bare.eval_every = 0;
  bare.checkpoint_every = 0;
  const train::TrainResult c = train::train(bare, log);
  REQUIRE(c.steps.size() == 6);
  for (size_t i = 0; i < c.steps.size(); ++i) CHECK(c.steps[i].loss == a.steps[4 + i].loss);
  CHECK(read_file(bare.out) == read_file(whole.out));

  // Given, a setting must agree with the run's: another batch size, learning
  // rate, model size, task or smoothing is refused, naming both values, and
  // nothing is written.
  struct Change {
    std::function<void(train::TrainOptions&)> apply;
    std::vector<std::string> fragments;
  };
  const std::vector<Change> changes = {
      {[](train::TrainOptions& o) { o.batch_size = 8; }, {"--batch 16", "--batch 8"}},
      {[](train::TrainOptions& o) { o.lr = 1e-2f; }, {"--lr 0.00300000003", "--lr 0.00999999978"}},
      {[](train::TrainOptions& o) { o.model.d_model = 32; }, {"--d-model 16", "--d-model 32"}},
      {[](train::TrainOptions& o) { o.task = "reverse"; }, {"--task copy", "--task reverse"}},
      {[](train::TrainOptions& o) { o.label_smoothing = 0.2f; }, {"--label-smoothing"}},
      {[](train::TrainOptions& o) { o.train_size = 95; }, {"--train-size 96", "--train-size 95"}},
      {[](train::TrainOptions& o) { o.seed = 12345; }, {"--seed 3", "--seed 12345"}},
  };
  for (const Change& change : changes) {
    train::TrainOptions o = tiny_options(dir.file("changed.safetensors"), 1);
    o.steps = 10;
    o.resume = first.out;
    change.apply(o);
    INFO(change.fragments[0]);
    try {
      train::train(o, log);
      FAIL("the changed setting was accepted");
    } catch (const attend::Error& e) {
      const std::string message = e.what();
      INFO(message);
      CHECK(message.find(first.out) != std::string::npos);
      for (const std::string& fragment : change.fragments) CHECK(message.find(fragment) != std::string::npos);
    }
    CHECK_FALSE(std::filesystem::exists(o.out));
  }
  CHECK(read_file(first.out) == before);
}

TEST_CASE("train: --resume of a TSV run checks the data's contents, not the file's name", "[ch08]") {
  KeepThreads keep;
  TempDir dir("ch08_train");
  std::ostringstream log;
  const auto pairs = data::generate_task("toy-french", data::Split::Train, 60, 2);
  write_tsv(dir.file("train.tsv"), pairs);
  train::TrainOptions o = tiny_options(dir.file("model.safetensors"), 1);
  o.train_path = dir.file("train.tsv");
  o.valid_size = 10;
  o.steps = 3;
  train::train(o, log);

  // The same pairs under another name: accepted.
  write_tsv(dir.file("moved.tsv"), pairs);
  train::TrainOptions moved = o;
  moved.train_path = dir.file("moved.tsv");
  moved.resume = o.out;
  moved.out = dir.file("moved.safetensors");
  moved.steps = 5;
  CHECK(train::train(moved, log).final_step == 5);

  // One pair changed, or one pair fewer: refused, with the counts and fingerprints.
  auto edited = pairs;
  edited[7].target = "le chien .";
  write_tsv(dir.file("train.tsv"), edited);
  train::TrainOptions again = o;
  again.resume = o.out;
  again.out = dir.file("again.safetensors");
  again.steps = 5;
  REQUIRE_THROWS_MENTIONING(train::train(again, log), o.out.c_str(), "training data are not those", "54 ");
  edited = pairs;
  edited.resize(49);  // 45 for training, 4 held out
  write_tsv(dir.file("train.tsv"), edited);
  REQUIRE_THROWS_MENTIONING(train::train(again, log), "54 ", "45 ");
  CHECK_FALSE(std::filesystem::exists(again.out));

  // A --data run has no task: asking to resume it as a task names that.
  train::TrainOptions as_task;
  as_task.resume = moved.out;
  as_task.out = dir.file("as_task.safetensors");
  as_task.task = "copy";
  as_task.steps = 8;
  REQUIRE_THROWS_MENTIONING(train::train(as_task, log), "used no --task", "asks for --task copy");
}

TEST_CASE("train: a resumed cosine schedule keeps the length it was drawn with", "[ch08]") {
  KeepThreads keep;
  TempDir dir("ch08_train");
  std::ostringstream log;
  // A 5-step cosine run (warmup 2) continued to step 8 stays at the curve's
  // floor; it does not start a new 8-step curve, as a fresh 8-step run would.
  train::TrainOptions first = tiny_options(dir.file("part.safetensors"), 1);
  first.schedule = "cosine";
  first.warmup = 2;
  first.steps = 5;
  train::train(first, log);
  train::TrainOptions longer = first;
  longer.resume = first.out;
  longer.out = dir.file("longer.safetensors");
  longer.steps = 8;
  const train::TrainResult c = train::train(longer, log);
  REQUIRE(c.steps.size() == 3);
  const float floor = first.lr * 0.01f;
  for (const train::StepRecord& r : c.steps) CHECK(r.lr == Approx(floor));
  train::TrainOptions fresh = first;
  fresh.out = dir.file("fresh.safetensors");
  fresh.steps = 8;
  CHECK(train::train(fresh, log).steps[5].lr > 2.0 * floor);
}

TEST_CASE("estimate_training_memory: the exact parameter count, and sizes that cannot fit refused by flag", "[ch08]") {
  // The parameter count is the model's own, whatever the shape of the model.
  for (const auto& [pre_norm, tie_output, learned_positions] :
       std::vector<std::tuple<bool, bool, bool>>{{true, false, false}, {false, true, true}}) {
    train::TrainOptions o;
    o.model.d_model = 12;
    o.model.heads = 3;
    o.model.encoder_layers = 2;
    o.model.decoder_layers = 1;
    o.model.d_ff = 20;
    o.model.pre_norm = pre_norm;
    o.model.tie_output = tie_output;
    o.model.learned_positions = learned_positions;
    attend::nn::TransformerConfig config = o.model;
    config.src_vocab = 17;
    config.tgt_vocab = tie_output ? 17 : 23;
    Generator gen(1);
    const attend::nn::Seq2SeqTransformer model(config, gen);
    const train::MemoryEstimate e =
        train::estimate_training_memory(o, train::DataShape{config.src_vocab, config.tgt_vocab, 12, 1000});
    CHECK(e.parameters == static_cast<double>(model.parameter_count()));
    CHECK(e.model_bytes == 16.0 * e.parameters);  // weight, gradient, Adam's two moments
  }

  // The default run fits in 2 GB; each size below cannot fit in 64 GB, and
  // the refusal names the flag to blame and the estimate.
  const train::TrainOptions defaults;
  train::check_training_memory(defaults, train::DataShape{}, 2e9);
  train::check_training_memory(defaults, train::DataShape{80, 100, 30, 0}, 2e9);
  const std::vector<std::pair<std::vector<std::string>, std::string>> too_big = {
      {{"--d-model", "1048576"}, "--d-model 1048576 is the cause"},
      {{"--ff", "2000000000"}, "--ff 2000000000 is the cause"},
      {{"--layers", "100000"}, "--layers 100000 is the cause"},
      {{"--layers", "2", "--decoder-layers", "100000"}, "--decoder-layers 100000 is the cause"},
      {{"--train-size", "2000000000"}, "--train-size 2000000000 is the cause"},
      {{"--batch", "100000000"}, "--batch 100000000 is the cause"},
  };
  for (const auto& [args, blame] : too_big) {
    const train::TrainOptions o = train::parse_train_arguments(args);
    REQUIRE_THROWS_MENTIONING(train::check_training_memory(o, train::DataShape{14, 14, 12, 0}, 64e9),
                              "this run needs about", "more than this machine's 64.0 GB", blame.c_str());
  }
  // check_train_options() asks the machine: no machine has the 400 TB this needs.
  REQUIRE_THROWS_MENTIONING(train::check_train_options(train::parse_train_arguments({"--d-model", "1048576"})),
                            "TB of memory", "--d-model 1048576");
  CHECK(train::physical_memory_bytes() > 0.0);
}

TEST_CASE("load_translation_model: damaged or foreign files are refused, naming the file", "[ch08]") {
  KeepThreads keep;
  TempDir dir("ch08_train");
  std::ostringstream log;
  train::TrainOptions o = tiny_options(dir.file("model.safetensors"), 1);
  o.steps = 2;
  train::train(o, log);
  const std::string bytes = read_file(o.out);
  REQUIRE(bytes.size() > 1000);
  REQUIRE_NOTHROW(train::load_translation_model(o.out));

  const std::string damaged = dir.file("damaged.safetensors");
  auto refused = [&](const std::string& contents, const std::string& what) {
    INFO(what);
    write_file(damaged, contents);
    REQUIRE_THROWS_MENTIONING(train::load_translation_model(damaged), damaged.c_str());
  };
  refused("", "an empty file");
  refused(bytes.substr(0, 4), "4 bytes");
  refused(bytes.substr(0, 100), "cut inside the header");
  refused(bytes.substr(0, bytes.size() / 2), "cut in half");
  refused(bytes.substr(0, bytes.size() - 1), "one byte short");
  refused(bytes + "x", "one byte too many");
  refused("src\ttgt\n", "a text file");
  // One flipped bit anywhere: in the length field, the JSON header (names,
  // shapes, offsets, metadata, the checksum) or the data.
  for (size_t k = 0; k < 48; ++k) {
    const size_t position = k < 8 ? k : 8 + (k - 8) * (bytes.size() - 9) / 39;
    std::string flipped = bytes;
    flipped[position] = static_cast<char>(flipped[position] ^ (1 << (k % 8)));
    refused(flipped, "bit " + std::to_string(k % 8) + " of byte " + std::to_string(position) + " flipped");
  }
  // A good safetensors file that is not a translation model.
  attend::io::save_safetensors(damaged, {{"w", attend::zeros({2, 2})}}, {});
  REQUIRE_THROWS_MENTIONING(train::load_translation_model(damaged), damaged.c_str(), "not a translation model");
  // A file that does not exist.
  const std::string missing = dir.file("missing.safetensors");
  REQUIRE_THROWS_MENTIONING(train::load_translation_model(missing), missing.c_str());
}

// ---------------------------------------------------------------------------
// The `attend` program, end to end
// ---------------------------------------------------------------------------

namespace {

struct Outcome {
  int status = -1;
  std::string out, err;
};

// Runs `attend ARGS < input`, capturing its exit status, stdout and stderr.
Outcome attend_program(const TempDir& dir, const std::string& args, const std::string& input = "") {
  const std::string in = dir.file("stdin.txt"), out = dir.file("stdout.txt"), err = dir.file("stderr.txt");
  write_file(in, input);
  const std::string command =
      std::string("'") + ATTEND_PROGRAM + "' " + args + " < '" + in + "' > '" + out + "' 2> '" + err + "'";
  const int raw = std::system(command.c_str());
  REQUIRE(raw != -1);
  REQUIRE(WIFEXITED(raw));
  Outcome o{WEXITSTATUS(raw), read_file(out), read_file(err)};
  UNSCOPED_INFO("$ attend " << args << "\nexit " << o.status << "\nstdout:\n" << o.out << "stderr:\n" << o.err);
  return o;
}

void require_program() {
  INFO("the tests run " ATTEND_PROGRAM ": build it first ('make cli', with the same BUILD=)");
  REQUIRE(std::filesystem::exists(ATTEND_PROGRAM));
}

// The options of a tiny, quick model of the copy task.
const std::string kTiny =
    " --task copy --d-model 16 --heads 2 --layers 1 --ff 32 --train-size 500 --batch 16 --eval-every 0 --threads 1 "
    "--seed 4";

}  // namespace

TEST_CASE("attend: help, usage errors and exit statuses", "[ch08]") {
  require_program();
  TempDir dir("ch08_train");
  Outcome o = attend_program(dir, "--help");
  CHECK(o.status == 0);
  CHECK(o.out.find("usage: attend COMMAND") != std::string::npos);
  for (const char* command : {"data", "train", "translate", "eval"}) {
    o = attend_program(dir, std::string(command) + " --help");
    CHECK(o.status == 0);
    CHECK(o.out.rfind("usage: attend " + std::string(command), 0) == 0);
    CHECK(o.err.empty());
  }
  o = attend_program(dir, "train --help");
  CHECK(o.out.find("--steps") != std::string::npos);
  CHECK(o.out.find("--resume") != std::string::npos);

  // Usage errors: exit status 2, what is wrong and the usage line on stderr, nothing on stdout.
  const std::vector<std::pair<std::string, std::string>> usage_errors = {
      {"train --bogus", "unknown option --bogus"},
      {"train --steps abc", "train: bad value for --steps: 'abc'"},
      {"train --steps -5", "train: bad value for --steps"},
      {"train --lr 0", "train: bad value for --lr"},
      {"train --dropout 1.5", "train: bad value for --dropout"},
      {"data --n many", "data: bad value for --n"},
      {"train --task spanish", "spanish"},
      {"train --task copy --data x.tsv", "not both"},
      {"train extra", "unexpected argument 'extra'"},
      {"data --n", "--n needs a value"},
      {"data --split dev", "dev"},
      {"translate 1 2 3", "--model is required"},
      {"eval --model m.safetensors", "required"},
  };
  for (const auto& [args, fragment] : usage_errors) {
    o = attend_program(dir, args);
    CHECK(o.status == 2);
    CHECK(o.err.find(fragment) != std::string::npos);
    const std::string command = args.substr(0, args.find(' '));
    CHECK(o.err.find("usage: attend " + command) != std::string::npos);
    CHECK(o.out.empty());
  }
  o = attend_program(dir, "frobnicate");
  CHECK(o.status == 2);
  CHECK(o.err.find("unknown command 'frobnicate'") != std::string::npos);
  o = attend_program(dir, "");  // no command at all: a usage error, on stderr
  CHECK(o.status == 2);
  CHECK(o.err.find("usage: attend COMMAND") != std::string::npos);
  CHECK(o.out.empty());
}

TEST_CASE("attend data: N lines of source<TAB>target, the same as generate_task", "[ch08]") {
  require_program();
  TempDir dir("ch08_train");
  Outcome o = attend_program(dir, "data --n 7 --seed 3");
  REQUIRE(o.status == 0);
  CHECK(o.err.empty());
  std::vector<std::string> lines = lines_of(o.out);
  const auto expected = data::generate_task("toy-french", data::Split::Train, 7, 3);
  REQUIRE(lines.size() == 7);
  for (size_t i = 0; i < lines.size(); ++i) {
    CHECK(std::count(lines[i].begin(), lines[i].end(), '\t') == 1);
    CHECK(lines[i] == expected[i].source + "\t" + expected[i].target);
  }

  o = attend_program(dir, "data --task reverse --split test --n 4 --seed 9");
  REQUIRE(o.status == 0);
  lines = lines_of(o.out);
  const auto reversed = data::generate_task("reverse", data::Split::Test, 4, 9);
  REQUIRE(lines.size() == 4);
  for (size_t i = 0; i < lines.size(); ++i) CHECK(lines[i] == reversed[i].source + "\t" + reversed[i].target);

  o = attend_program(dir, "data --n 0");
  CHECK(o.status == 0);
  CHECK(o.out.empty());
}

TEST_CASE("attend train, translate, eval and --resume, end to end", "[ch08]") {
  require_program();
  TempDir dir("ch08_train");
  const std::string model = dir.file("model.safetensors");

  // train: writes the model, reports on stderr.
  Outcome o = attend_program(dir, "train" + kTiny + " --steps 30 --out '" + model + "'");
  REQUIRE(o.status == 0);
  CHECK(o.out.empty());
  CHECK(o.err.find("done: step 30") != std::string::npos);
  REQUIRE(std::filesystem::exists(model));
  CHECK(checkpoint_step(model) == 30);
  train::TranslationModel tm = train::load_translation_model(model);
  CHECK(tm.config.d_model == 16);
  CHECK(tm.source_vocab.size() == 14);  // 4 specials + 10 digits

  // translate: one line per sentence given on the command line...
  o = attend_program(dir, "translate --model '" + model + "' '1 2 3'");
  REQUIRE(o.status == 0);
  REQUIRE(lines_of(o.out).size() == 1);
  CHECK(lines_of(o.out)[0] == tm.translate({"1 2 3"})[0]);
  o = attend_program(dir, "translate --model '" + model + "' '1 2 3' '4 5 6 7 8 9'");
  REQUIRE(o.status == 0);
  CHECK(lines_of(o.out).size() == 2);

  // ...or per line of standard input, in order, whatever the batching; an
  // unknown word and an empty line do not stop it.
  const std::vector<std::string> inputs = {"1 2 3", "9 9 9 9 9 9 9", "hello 1 2", "", "4 5", "0 1 2 3 4 5 6 7 8 9"};
  std::string input;
  for (const std::string& s : inputs) input += s + "\n";
  const std::vector<std::string> expected = tm.translate(inputs);
  for (const char* batch : {"", " --batch 2"}) {
    o = attend_program(dir, "translate --model '" + model + "'" + batch, input);
    REQUIRE(o.status == 0);
    CHECK(o.err.empty());
    CHECK(lines_of(o.out) == expected);
  }

  // eval: the table, then one machine-readable last line.
  const auto test_pairs = data::generate_task("copy", data::Split::Test, 20, 5);
  std::vector<data::SentencePair> scored = test_pairs;
  scored.push_back({test_pairs[0].source, "7 7 7"});  // a second reference for the first source
  write_tsv(dir.file("test.tsv"), scored);
  o = attend_program(dir, "eval --model '" + model + "' --data '" + dir.file("test.tsv") + "'");
  REQUIRE(o.status == 0);
  const std::vector<std::string> eval_lines = lines_of(o.out);
  REQUIRE(!eval_lines.empty());
  const std::string& last = eval_lines.back();
  double exact = -1, accuracy = -1, bleu = -1;
  long long sentences = -1;
  int used = 0;
  REQUIRE(std::sscanf(last.c_str(), "exact_match=%lf token_accuracy=%lf bleu=%lf sentences=%lld%n", &exact, &accuracy,
                      &bleu, &sentences, &used) == 4);
  CHECK(used == static_cast<int>(last.size()));  // nothing after the count
  CHECK((exact >= 0.0 && exact <= 1.0));
  CHECK((accuracy >= 0.0 && accuracy <= 1.0));
  CHECK((bleu >= 0.0 && bleu <= 100.0));
  CHECK(sentences == 20);  // distinct sources
  const train::EvalResult r = train::evaluate(tm, scored);
  char expected_line[200];
  std::snprintf(expected_line, sizeof expected_line, "exact_match=%.4f token_accuracy=%.4f bleu=%.2f sentences=%lld",
                r.exact_match, r.token_accuracy, r.bleu, static_cast<long long>(r.sentences));
  CHECK(eval_lines.back() == expected_line);

  // --resume continues the run to --steps; it ends where a run of 40 steps
  // from scratch ends, byte for byte.
  const std::string resumed = dir.file("resumed.safetensors"), straight = dir.file("straight.safetensors");
  o = attend_program(dir, "train" + kTiny + " --steps 40 --resume '" + model + "' --out '" + resumed + "'");
  REQUIRE(o.status == 0);
  CHECK(o.err.find("resuming") != std::string::npos);
  CHECK(o.err.find("at step 30") != std::string::npos);
  CHECK(o.err.find("done: step 40") != std::string::npos);
  CHECK(checkpoint_step(resumed) == 40);
  o = attend_program(dir, "train" + kTiny + " --steps 40 --out '" + straight + "'");
  REQUIRE(o.status == 0);
  CHECK(read_file(resumed) == read_file(straight));

  // A missing or damaged model: exit status 1 and one line naming the file.
  const std::string missing = dir.file("missing.safetensors"), damaged = dir.file("damaged.safetensors");
  const std::string bytes = read_file(model);
  std::string flipped = bytes;
  flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x10);
  for (const auto& [path, contents] : std::vector<std::pair<std::string, std::string>>{
           {missing, ""}, {damaged, bytes.substr(0, bytes.size() / 3)}, {damaged, flipped}}) {
    if (path == damaged) write_file(damaged, contents);
    for (const std::string& args : {"translate --model '" + path + "' '1 2 3'",
                                    "eval --model '" + path + "' --data '" + dir.file("test.tsv") + "'",
                                    "train" + kTiny + " --steps 40 --resume '" + path + "' --out '" + dir.file("x") + "'"}) {
      o = attend_program(dir, args);
      CHECK(o.status == 1);
      CHECK(o.out.empty());
      CHECK(std::count(o.err.begin(), o.err.end(), '\n') == 1);
      CHECK(o.err.back() == '\n');
      CHECK(o.err.find(path) != std::string::npos);
    }
  }
  // A missing data file is named too.
  o = attend_program(dir, "eval --model '" + model + "' --data '" + dir.file("none.tsv") + "'");
  CHECK(o.status == 1);
  CHECK(o.err.find(dir.file("none.tsv")) != std::string::npos);
  o = attend_program(dir, "train --data '" + dir.file("none.tsv") + "' --steps 1 --out '" + dir.file("x") + "'");
  CHECK(o.status == 1);
  CHECK(o.err.find(dir.file("none.tsv")) != std::string::npos);
}

TEST_CASE("attend translate: each line on its own; a bad one gets an empty line and an error naming it", "[ch08]") {
  require_program();
  TempDir dir("ch08_train");
  const std::string model = dir.file("model.safetensors");
  REQUIRE(attend_program(dir, "train" + kTiny + " --steps 2 --out '" + model + "'").status == 0);
  train::TranslationModel tm = train::load_translation_model(model);
  std::string too_long;
  for (int i = 0; i < 300; ++i) too_long += "1 ";  // the model's positions hold 255 tokens
  const std::string input = std::string("\xEF\xBB\xBF" "1 2 3\r\n") +  // a byte order mark, a Windows line end
                            "4 \xff 5\n" +                               // invalid UTF-8
                            std::string("6 \0 7\n", 6) +                 // a NUL byte
                            too_long + "\n" +                            // too long for the model
                            "8 9\r\n";
  const std::vector<std::string> good = tm.translate({"1 2 3", "8 9"});
  for (const char* batch : {"", " --batch 1"}) {
    Outcome o = attend_program(dir, "translate --model '" + model + "'" + batch, input);
    CHECK(o.status == 1);
    CHECK(lines_of(o.out) == std::vector<std::string>{good[0], "", "", "", good[1]});
    CHECK(lines_of(o.err) == std::vector<std::string>{
                                 "attend translate: standard input:2: invalid UTF-8 at byte 3",
                                 "attend translate: standard input:3: a NUL byte at byte 3",
                                 "attend translate: standard input:4: a sentence of 300 tokens is longer than the "
                                 "model's limit of 255"});
  }
  // Sentences on the command line are named by their place.
  Outcome o = attend_program(dir, "translate --model '" + model + "' '1 2 3' \"$(printf '4 \\377 5')\" '8 9'");
  CHECK(o.status == 1);
  CHECK(lines_of(o.out) == std::vector<std::string>{good[0], "", good[1]});
  CHECK(o.err == "attend translate: argument 2: invalid UTF-8 at byte 3\n");
}

TEST_CASE("attend eval, train, translate: empty data, unknown words and empty vocabularies are named", "[ch08]") {
  require_program();
  TempDir dir("ch08_train");
  const std::string model = dir.file("model.safetensors");
  REQUIRE(attend_program(dir, "train" + kTiny + " --steps 2 --out '" + model + "'").status == 0);
  write_tsv(dir.file("good.tsv"), data::generate_task("copy", data::Split::Valid, 30, 2));

  // Data files without a pair: an error naming the file, for eval and for --valid.
  write_file(dir.file("empty.tsv"), "");
  write_file(dir.file("blank.tsv"), " \n\n\t\r\n");
  write_file(dir.file("bad.tsv"), "one column\n\xff\tx\n");
  for (const auto& [file, skip] : std::vector<std::pair<std::string, std::string>>{
           {dir.file("empty.tsv"), ""}, {dir.file("blank.tsv"), ""}, {"/dev/null", ""}, {dir.file("bad.tsv"), " --skip-bad-lines"}}) {
    Outcome o = attend_program(dir, "eval --model '" + model + "' --data '" + file + "'" + skip);
    CHECK(o.status == 1);
    CHECK(o.out.empty());
    CHECK(o.err == "attend eval: " + file + ": " + o.err.substr(o.err.find("no source<TAB>target pairs")));
    o = attend_program(dir, "train --data '" + dir.file("good.tsv") + "' --valid '" + file + "'" + skip +
                                " --d-model 16 --heads 2 --layers 1 --ff 32 --steps 1 --out '" + dir.file("v.st") + "'");
    CHECK(o.status == 1);
    CHECK(o.err.find(file + ": no source<TAB>target pairs") != std::string::npos);
    CHECK(!std::filesystem::exists(dir.file("v.st")));
  }

  // A copy-task model given English knows none of its words: a warning with the fraction.
  const std::string english = "the cat sees the dog .\nthe dogs eat .\n";
  Outcome o = attend_program(dir, "translate --model '" + model + "'", english);
  CHECK(o.status == 0);
  CHECK(lines_of(o.out).size() == 2);
  CHECK(o.err == "attend translate: warning: 10 of the 10 input tokens (100%) are unknown to the model's source "
                 "vocabulary and read as <unk>: was the model trained on this kind of text?\n");
  write_tsv(dir.file("english.tsv"), data::generate_task("toy-french", data::Split::Test, 5, 1));
  o = attend_program(dir, "eval --model '" + model + "' --data '" + dir.file("english.tsv") + "'");
  CHECK(o.status == 0);
  CHECK(o.err.find("attend eval: warning: ") == 0);
  CHECK(o.err.find("(100%) are unknown to the model's source vocabulary") != std::string::npos);
  // Half or fewer unknown: no warning.
  o = attend_program(dir, "translate --model '" + model + "' '1 2 hello' 'cat 3'");
  CHECK(o.status == 0);
  CHECK(o.err.empty());

  // A --min-count that no word reaches leaves only the special tokens: refused, naming the flag.
  o = attend_program(dir, "train --data '" + dir.file("good.tsv") + "' --min-count 1000 --steps 1 --out '" +
                              dir.file("m.st") + "'");
  CHECK(o.status == 1);
  CHECK(o.err.find("--min-count 1000") != std::string::npos);
  CHECK(o.err.find("only the special tokens") != std::string::npos);
  CHECK(!std::filesystem::exists(dir.file("m.st")));
}

TEST_CASE("attend train: sizes that cannot fit are refused at once, naming the estimate and the flag", "[ch08]") {
  require_program();
  TempDir dir("ch08_train");
  for (const std::string flag : {"--d-model 1048576", "--ff 2000000000", "--layers 100000", "--train-size 2000000000"}) {
    // Were anything allocated first, these would take many seconds and end in std::bad_alloc.
    Outcome o = attend_program(dir, "train --task copy " + flag + " --steps 1 --out '" + dir.file("x.st") + "'");
    CHECK(o.status == 1);
    CHECK(o.err.find("attend train: this run needs about ") == 0);
    CHECK(o.err.find(flag + " is the cause") != std::string::npos);
    CHECK(o.err.find("bad_alloc") == std::string::npos);
  }
}

TEST_CASE("attend data: examples are written as they are drawn (| head -1 prints at once)", "[ch08]") {
  require_program();
  // Before streaming, 10^8 examples took minutes and gigabytes before the first line.
  const std::string command = std::string("'") + ATTEND_PROGRAM + "' data --task copy --n 100000000 --seed 5 | head -n 1";
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char line[256] = {};
  const bool got = std::fgets(line, sizeof line, pipe) != nullptr;
  pclose(pipe);
  REQUIRE(got);
  const auto first = data::generate_task("copy", data::Split::Train, 1, 5)[0];
  CHECK(std::string(line) == first.source + "\t" + first.target + "\n");
}

// Starts `attend train` (kTiny, a run far too long to finish) in a child
// process, waits for its step-50 progress line, sends `signal`, and returns
// the child's wait status and its stderr.
static std::pair<int, std::string> interrupt_training(const TempDir& dir, const std::string& model, int signal) {
  const std::string err = dir.file("stderr.txt");
  const std::string command = std::string("exec '") + ATTEND_PROGRAM + "' train" + kTiny +
                              " --steps 100000000 --checkpoint-every 0 --out '" + model + "' 2> '" + err + "'";
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  bool started = false, exited = false;
  int raw = 0;
  for (int waited_ms = 0; waited_ms < 300000 && !started && !exited; waited_ms += 20) {
    // The child's shell creates the file: until it has, there is nothing to read.
    started = std::filesystem::exists(err) && read_file(err).find("step 50/") != std::string::npos;
    // A program that stopped before step 50 (an error) will not get there: stop waiting.
    if (!started) exited = ::waitpid(child, &raw, WNOHANG) == child;
    if (!started && !exited) ::usleep(20000);
  }
  if (!exited) {
    ::kill(child, started ? signal : SIGKILL);
    REQUIRE(::waitpid(child, &raw, 0) == child);
  }
  const std::string log = read_file(err);
  INFO("stderr:\n" << log);
  REQUIRE(started);
  return {raw, log};
}

TEST_CASE("attend train: Ctrl-C (SIGINT) writes a checkpoint, exits 0, and the run resumes from it", "[ch08]") {
  require_program();
  TempDir dir("ch08_train");
  const std::string model = dir.file("model.safetensors");
  const auto [raw, log] = interrupt_training(dir, model, SIGINT);
  INFO("stderr:\n" << log);
  REQUIRE(WIFEXITED(raw));  // it exits by itself, not killed by the signal
  CHECK(WEXITSTATUS(raw) == 0);
  const size_t at = log.find("interrupted at step ");
  REQUIRE(at != std::string::npos);
  const int64_t step = std::stoll(log.substr(at + std::string("interrupted at step ").size()));
  CHECK(step >= 50);
  CHECK(log.find("checkpoint written to " + model) != std::string::npos);
  REQUIRE(checkpoint_step(model) == step);

  // The checkpoint continues the run exactly: resumed to step + 5, it is
  // byte for byte the file of an unbroken run of step + 5 steps.
  const std::string steps = " --steps " + std::to_string(step + 5);
  const std::string resumed = dir.file("resumed.safetensors"), straight = dir.file("straight.safetensors");
  Outcome o = attend_program(dir, "train" + kTiny + steps + " --resume '" + model + "' --out '" + resumed + "'");
  REQUIRE(o.status == 0);
  o = attend_program(dir, "train" + kTiny + steps + " --out '" + straight + "'");
  REQUIRE(o.status == 0);
  CHECK(read_file(resumed) == read_file(straight));
}

TEST_CASE("docs/08 quotes train_step() and train() as they are in src/train/trainer.cpp", "[ch08]") {
  const std::string root = ATTEND_SOURCE_DIR;
  const std::string code = read_file(root + "/src/train/trainer.cpp");
  const std::string text = read_file(root + "/docs/08-translation.md");
  for (const std::string signature : {"double train_step(", "TrainResult train(const TrainOptions& options"}) {
    INFO(signature);
    // The function as written in the code: from its signature to the first "}" alone on a line.
    const size_t begin = code.find(signature);
    REQUIRE(begin != std::string::npos);
    const std::string function = code.substr(begin, code.find("\n}\n", begin) + 3 - begin);
    CHECK(text.find("```cpp\n" + function + "```") != std::string::npos);
  }
}


TEST_CASE("attend train: SIGTERM is treated like Ctrl-C (checkpoint, exit 0)", "[ch08]") {
  require_program();
  TempDir dir("ch08_files");
  const std::string model = dir.file("model.safetensors");
  const auto [raw, log] = interrupt_training(dir, model, SIGTERM);
  INFO("stderr:\n" << log);
  REQUIRE(WIFEXITED(raw));
  CHECK(WEXITSTATUS(raw) == 0);
  const size_t at = log.find("interrupted at step ");
  REQUIRE(at != std::string::npos);
  CHECK(checkpoint_step(model) == std::stoll(log.substr(at + std::string("interrupted at step ").size())));
  CHECK_FALSE(std::filesystem::exists(model + ".lock"));  // the lock goes with the run
}

TEST_CASE("attend: an output that is an input, another output, or not a regular file is refused before any work",
          "[ch08]") {
  require_program();
  TempDir dir("ch08_files");
  write_tsv(dir.file("g.tsv"), data::generate_task("toy-french", data::Split::Train, 40, 1));
  const std::string data_before = read_file(dir.file("g.tsv"));
  std::filesystem::create_directory(dir.file("sub"));
  REQUIRE(::mkfifo(dir.file("fifo").c_str(), 0600) == 0);
  Outcome o = attend_program(dir, "train" + kTiny + " --steps 2 --out '" + dir.file("m.safetensors") + "'");
  REQUIRE(o.status == 0);
  const std::string model_before = read_file(dir.file("m.safetensors"));
  const std::string tiny_tsv = " --d-model 16 --heads 2 --layers 1 --ff 32 --batch 8 --eval-every 0 --steps 2";
  struct Probe {
    std::string args, fragment;
  };
  const std::vector<Probe> probes = {
      // the same file under another spelling, as data and as model
      {"train --data '" + dir.file("g.tsv") + "'" + tiny_tsv + " --out '" + dir.file("sub/../g.tsv") + "'",
       "is the same file as --data"},
      {"attention --model '" + dir.file("m.safetensors") + "' --out '" + dir.file("./m.safetensors") + "' \"1 2 3\"",
       "is the same file as --model"},
      {"train" + kTiny + " --steps 2 --out '" + dir.file("n.safetensors") + "' --plot '" + dir.file("n.safetensors") + "'",
       "is the same file as --out"},
      {"train --data '" + dir.file("g.tsv") + "' --valid '" + dir.file("g.tsv") + "'" + tiny_tsv + " --out '" +
           dir.file("x.safetensors") + "' --plot '" + dir.file("g.tsv") + "'",
       "is the same file as --data"},
      // not a regular file (a FIFO made here: a test must never risk /dev/full if the check breaks)
      {"train" + kTiny + " --steps 2 --out '" + dir.file("fifo") + "'", "is a FIFO"},
      {"train" + kTiny + " --steps 2 --out '" + dir.file("sub") + "'", "is a directory"},
      // cannot be created: no such directory, or a file system that takes no files
      {"train" + kTiny + " --steps 2 --out '" + dir.file("missing/m.safetensors") + "'", "missing"},
      {"train" + kTiny + " --steps 2 --out /proc/attend-model.safetensors", "cannot create a file in /proc"},
      {"train" + kTiny + " --steps 2 --out '" + dir.file("y.safetensors") + "' --plot '" + dir.file("missing/p.svg") + "'",
       "--plot"},
  };
  for (const Probe& p : probes) {
    o = attend_program(dir, p.args);
    CHECK(o.status == 1);
    CHECK(o.err.find(p.fragment) != std::string::npos);
    CHECK(o.err.find("model:") == std::string::npos);  // refused before the model was built
  }
  CHECK(read_file(dir.file("g.tsv")) == data_before);
  CHECK(read_file(dir.file("m.safetensors")) == model_before);
  CHECK(std::filesystem::is_fifo(dir.file("fifo")));
  for (const char* never : {"n.safetensors", "x.safetensors", "y.safetensors"}) CHECK_FALSE(std::filesystem::exists(dir.file(never)));
}

TEST_CASE("attend train --resume writes back to the resumed file, and refuses a run with nothing to do", "[ch08]") {
  require_program();
  TempDir dir("ch08_files");
  const std::string res = dir.file("res.safetensors");
  Outcome o = attend_program(dir, "train" + kTiny + " --steps 6 --out '" + res + "'");
  REQUIRE(o.status == 0);
  // Run from inside `dir`: the default ./model.safetensors must not appear.
  const std::string cd = "sh -c \"cd '" + dir.path().string() + "' && exec '" + std::string(ATTEND_PROGRAM) + "' ";
  int raw = std::system((cd + "train --resume res.safetensors --steps 8\" > /dev/null 2>&1").c_str());
  REQUIRE(WIFEXITED(raw));
  CHECK(WEXITSTATUS(raw) == 0);
  CHECK(checkpoint_step(res) == 8);
  CHECK_FALSE(std::filesystem::exists(dir.file("model.safetensors")));
  const std::string before = read_file(res);
  for (const char* steps : {"8", "5"}) {
    o = attend_program(dir, "train --resume '" + res + "' --steps " + steps);
    CHECK(o.status == 1);
    CHECK(o.err.find("at step 8 already") != std::string::npos);
    CHECK(o.err.find("nothing to do") != std::string::npos);
  }
  CHECK(read_file(res) == before);
}

TEST_CASE("attend train: a second writer of the same --out is refused; stale locks and temporary files are cleaned",
          "[ch08]") {
  require_program();
  TempDir dir("ch08_files");
  const std::string model = dir.file("m.safetensors");
  // A live writer: this test process holds the lock.
  write_file(model + ".lock", std::to_string(::getpid()) + "\n");
  Outcome o = attend_program(dir, "train" + kTiny + " --steps 2 --out '" + model + "'");
  CHECK(o.status == 1);
  CHECK(o.err.find("is being written by another run (process " + std::to_string(::getpid())) != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(model));
  // A writer that died (kill -9) left its lock and a temporary file: a
  // process that has exited is certainly not running any more.
  const pid_t gone = ::fork();
  REQUIRE(gone >= 0);
  if (gone == 0) ::_exit(0);
  REQUIRE(::waitpid(gone, nullptr, 0) == gone);
  write_file(model + ".lock", std::to_string(gone) + "\n");
  const std::string stale = model + ".tmp." + std::to_string(gone) + ".0";
  const std::string live = model + ".tmp." + std::to_string(::getpid()) + ".0";  // someone else's, still running
  write_file(stale, std::string(1000, 'x'));
  write_file(live, "y");
  o = attend_program(dir, "train" + kTiny + " --steps 2 --out '" + model + "'");
  CHECK(o.status == 0);
  CHECK(checkpoint_step(model) == 2);
  CHECK_FALSE(std::filesystem::exists(model + ".lock"));
  CHECK_FALSE(std::filesystem::exists(stale));
  CHECK(std::filesystem::exists(live));
}

TEST_CASE("attend: output to standard output that cannot be written is an error, not exit 0", "[ch08]") {
  require_program();
  TempDir dir("ch08_files");
  Outcome o = attend_program(dir, "train" + kTiny + " --steps 2 --out '" + dir.file("m.safetensors") + "'");
  REQUIRE(o.status == 0);
  const std::vector<std::string> commands = {
      "data --task copy --n 5",
      "translate --model '" + dir.file("m.safetensors") + "' \"1 2 3\"",
      "attention --model '" + dir.file("m.safetensors") + "' --out '" + dir.file("a.svg") + "' \"1 2 3\"",
  };
  for (const std::string& args : commands) {
    INFO(args);
    const std::string err = dir.file("err.txt");
    const int raw = std::system(("'" + std::string(ATTEND_PROGRAM) + "' " + args + " > /dev/full 2> '" + err + "'").c_str());
    REQUIRE(WIFEXITED(raw));
    CHECK(WEXITSTATUS(raw) == 1);
    CHECK(read_file(err).find("cannot write to standard output") != std::string::npos);
  }
}
