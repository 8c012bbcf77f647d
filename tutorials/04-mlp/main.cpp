// Tutorial 04: train a small MLP with Adam to tell two interleaved spirals
// apart, save a checkpoint, load it into a fresh model, and draw what the
// model learned as SVG pictures. Chapter 4 (docs/04-modules-and-optimizers.md).
// Build and run:  make tutorials && build/tutorials/04-mlp
// It writes 04-spirals.svg, 04-loss.svg, 04-schedules.svg (pictures) and
// 04-spirals.safetensors (the checkpoint) into the current directory.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "attend/attend.hpp"
#include "attend/checkpoint.hpp"
#include "attend/nn.hpp"
#include "attend/optim.hpp"
#include "attend/safetensors.hpp"
#include "attend/svg.hpp"

using attend::Tensor;

namespace {

constexpr double pi = 3.141592653589793;

// A labelled set of 2-D points.
struct Dataset {
  Tensor points;  // (N, 2) Float32, coordinates roughly in [-1, 1]
  Tensor labels;  // (N) Int64, 0 or 1
};

// Two spirals wound into each other, `per_class` points each. With
// f = i / per_class, point i of class c sits at radius 0.1 + 0.9 f and angle
// 4 pi f + c pi (two turns; class 1 is class 0 turned by half a circle),
// moved by Gaussian noise of standard deviation `noise`. The same seed gives
// the same points. Returns points (2 per_class, 2) and labels (2 per_class).
Dataset make_spirals(int64_t per_class, float noise, uint64_t seed) {
  attend::Generator gen(seed);
  std::vector<float> coordinates;
  std::vector<int64_t> labels;
  for (int64_t c = 0; c < 2; ++c) {
    for (int64_t i = 0; i < per_class; ++i) {
      const double fraction = static_cast<double>(i) / static_cast<double>(per_class);
      const double radius = 0.1 + 0.9 * fraction;
      const double angle = 4.0 * pi * fraction + static_cast<double>(c) * pi;
      coordinates.push_back(static_cast<float>(radius * std::cos(angle)) + noise * gen.normal());
      coordinates.push_back(static_cast<float>(radius * std::sin(angle)) + noise * gen.normal());
      labels.push_back(c);
    }
  }
  return {attend::from_vector(coordinates, {2 * per_class, 2}), attend::from_indices(labels, {2 * per_class})};
}

// The fraction of points whose largest logit is their label.
// model: (N, 2) -> (N, 2) logits. Runs in eval mode without recording a graph.
float accuracy(attend::nn::UnaryModule& model, const Dataset& data) {
  attend::NoGradGuard no_grad;
  model.eval();
  const Tensor predicted = attend::argmax(model(data.points), -1);  // (N) Int64
  model.train();
  const std::vector<int64_t> guesses = predicted.to_index_vector();
  const std::vector<int64_t> truth = data.labels.to_index_vector();
  int64_t correct = 0;
  for (size_t i = 0; i < truth.size(); ++i) correct += guesses[i] == truth[i] ? 1 : 0;
  return static_cast<float>(correct) / static_cast<float>(truth.size());
}

// {2, 64, 64, 2} -> "2-64-64-2" (with separator "-").
std::string join(const std::vector<int64_t>& sizes, const std::string& separator) {
  std::string text;
  for (size_t i = 0; i < sizes.size(); ++i) text += (i > 0 ? separator : "") + std::to_string(sizes[i]);
  return text;
}

// The largest |value| in a tensor of any shape.
float largest_magnitude(const Tensor& t) {
  float largest = 0.0f;
  for (float value : t.to_vector()) largest = std::max(largest, std::abs(value));
  return largest;
}

// Colors of the two classes: strong for points, pale for the regions.
const std::string class_color[2] = {"#1f77b4", "#d62728"};
const std::string class_region_color[2] = {"#9ecae1", "#fcae91"};

// Draws the model's decision regions over [-extent, extent]^2 as a grid of
// cells, shaded from class 0's color through white (p = 0.5, unsure) to
// class 1's, and the data points on top; misclassified points get a black ring.
// model: (N, 2) -> (N, 2) logits.
attend::io::svg::Canvas draw_decision_regions(attend::nn::UnaryModule& model, const Dataset& data,
                                          const std::string& title) {
  const double extent = 1.25;   // data coordinates shown: [-extent, extent]
  const int cells = 120;        // cells per side of the grid
  const double size = 480.0;    // pixels per side of the picture's square
  const double margin = 10.0, title_height = 30.0;
  auto to_pixel_x = [&](double x) { return margin + (x + extent) / (2.0 * extent) * size; };
  auto to_pixel_y = [&](double y) { return title_height + (extent - y) / (2.0 * extent) * size; };

  // The centre of every cell, row by row from the top: one (cells^2, 2) batch.
  std::vector<float> centres;
  for (int row = 0; row < cells; ++row) {
    for (int column = 0; column < cells; ++column) {
      centres.push_back(static_cast<float>(-extent + (column + 0.5) * 2.0 * extent / cells));
      centres.push_back(static_cast<float>(extent - (row + 0.5) * 2.0 * extent / cells));
    }
  }
  std::vector<float> probability_of_1;
  {
    attend::NoGradGuard no_grad;
    model.eval();
    const Tensor logits = model(attend::from_vector(centres, {cells * cells, 2}));  // (cells^2, 2)
    probability_of_1 = attend::softmax(logits, -1).select(1, 1).to_vector();       // (cells^2)
    model.train();
  }

  const double caption_height = 40.0;
  attend::io::svg::Canvas canvas(size + 2.0 * margin, title_height + size + caption_height);
  canvas.text(canvas.width() / 2.0, 21.0, title, 15.0, attend::io::svg::Anchor::Middle);
  canvas.text(canvas.width() / 2.0, title_height + size + 17.0,
              "points: class 0 blue, class 1 red. Regions: the predicted class,", 12.0,
              attend::io::svg::Anchor::Middle, "#333333");
  canvas.text(canvas.width() / 2.0, title_height + size + 33.0,
              "paler toward white where the model is unsure; a black ring marks a wrong guess.", 11.0,
              attend::io::svg::Anchor::Middle, "#333333");
  // p = 0 is class 0's pale color, 0.5 white, 1 class 1's. p is rounded to
  // steps of 0.1 first, so that neighbouring cells of one row often share a
  // color and are drawn as one wider rectangle: a file of about 100 KB
  // rather than one rectangle per cell (14,400 of them, about 1 MB).
  auto region_color = [&](double p) {
    p = std::round(p * 10.0) / 10.0;
    return p < 0.5 ? attend::io::svg::blend(class_region_color[0], "#ffffff", 2.0 * p)
                   : attend::io::svg::blend("#ffffff", class_region_color[1], 2.0 * p - 1.0);
  };
  const double cell = size / cells;
  for (int row = 0; row < cells; ++row) {
    int run_start = 0;  // the first column of the current run of one color
    for (int column = 1; column <= cells; ++column) {
      const std::string run_color = region_color(probability_of_1[static_cast<size_t>(row * cells + run_start)]);
      if (column < cells && region_color(probability_of_1[static_cast<size_t>(row * cells + column)]) == run_color) {
        continue;  // the run goes on
      }
      // Half a pixel larger than the run, so no hairline gaps show between rectangles.
      canvas.rect(margin + run_start * cell, title_height + row * cell, (column - run_start) * cell + 0.5,
                  cell + 0.5, run_color);
      run_start = column;
    }
  }

  const std::vector<float> xy = data.points.to_vector();
  const std::vector<int64_t> labels = data.labels.to_index_vector();
  std::vector<int64_t> predicted;
  {
    attend::NoGradGuard no_grad;
    model.eval();
    predicted = attend::argmax(model(data.points), -1).to_index_vector();
    model.train();
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    const bool wrong = predicted[i] != labels[i];
    canvas.circle(to_pixel_x(xy[2 * i]), to_pixel_y(xy[2 * i + 1]), 3.5, class_color[labels[i]],
                  wrong ? "#000000" : "#ffffff", wrong ? 1.5 : 0.8);
  }
  return canvas;
}

}  // namespace

int main() {
  std::printf("== 1. The data: two interleaved spirals\n\n");
  const Dataset data = make_spirals(/*per_class=*/100, /*noise=*/0.04f, /*seed=*/4);
  std::printf("points %s, labels %s (100 per class)\n\n", attend::to_string(data.points.shape()).c_str(),
              attend::to_string(data.labels.shape()).c_str());

  std::printf("== 2. The model and its named parameters\n\n");
  const std::vector<int64_t> sizes = {2, 64, 64, 2};  // in, hidden, hidden, out
  attend::Generator init_gen(42);
  attend::nn::MLP model(sizes, init_gen);
  // The MLP is a Sequential of Linear(2, 64), ReLU, Linear(64, 64), ReLU,
  // Linear(64, 2) named "layers.0" ... "layers.4"; ReLUs have no parameters.
  for (const auto& [name, tensor] : model.named_parameters()) {
    std::printf("  %-16s %s\n", name.c_str(), attend::to_string(tensor.shape()).c_str());
  }
  std::printf("%lld parameters in all\n", static_cast<long long>(model.parameter_count()));
  // Linear(in, out) starts uniform in [-1/sqrt(in), 1/sqrt(in)].
  const auto parameters = model.named_parameters();
  std::printf("largest |weight|: layers.0 %.4f (bound 1/sqrt(2) = %.4f), layers.2 %.4f (bound 1/sqrt(64) = %.4f)\n",
              largest_magnitude(parameters[0].second), 1.0 / std::sqrt(2.0),
              largest_magnitude(parameters[2].second), 1.0 / std::sqrt(64.0));
  std::printf("accuracy before training: %.1f%%\n\n", 100.0 * accuracy(model, data));

  std::printf("== 3. Training: full batch, Adam, warmup + cosine schedule, clipping\n\n");
  const int64_t total_steps = 300;
  attend::optim::Adam optimizer(model.named_parameters(), /*lr=*/0.0f);  // the schedule sets lr
  const attend::optim::WarmupCosineSchedule schedule(/*peak_lr=*/0.02f, /*warmup=*/30, total_steps,
                                                     /*min_lr=*/0.0005f);
  std::vector<double> loss_curve;
  // Each row describes the model as this step found it: its loss, the norm
  // of its gradient, its accuracy, and the learning rate the step then uses.
  std::printf("  step        lr    loss  grad norm  accuracy\n");
  for (int64_t step = 1; step <= total_steps; ++step) {
    const Tensor logits = model(data.points);                        // (200, 2)
    const Tensor loss = attend::cross_entropy(logits, data.labels);  // ()
    optimizer.zero_grad();
    loss.backward();
    // Rescale all gradients together if their joint norm exceeds 1.
    const float grad_norm = attend::optim::clip_grad_norm(model.parameters(), 1.0f);
    optimizer.lr = schedule.lr(step);
    loss_curve.push_back(loss.item());
    if (step == 1 || step % 25 == 0) {
      std::printf("  %4lld  %.6f  %.4f  %9.4f  %7.1f%%\n", static_cast<long long>(step), optimizer.lr,
                  loss.item(), grad_norm, 100.0 * accuracy(model, data));
    }
    optimizer.step();  // p -= lr * m_hat / (sqrt(v_hat) + eps) for every parameter
  }
  const float final_accuracy = accuracy(model, data);
  std::printf("final training accuracy: %.1f%% after %lld steps\n\n", 100.0 * final_accuracy,
              static_cast<long long>(total_steps));

  std::printf("== 4. A checkpoint: save, then load into a fresh model\n\n");
  const std::string checkpoint_path = "04-spirals.safetensors";
  attend::nn::save_checkpoint(checkpoint_path, model, &optimizer, total_steps, {{"task", "spirals"}, {"sizes", join(sizes, ",")}});
  // What is inside: the file is safetensors (docs/04-modules-and-optimizers.md).
  const attend::io::SafetensorsContents contents = attend::io::load_safetensors(checkpoint_path);
  std::printf("saved %s: %zu tensors\n", checkpoint_path.c_str(), contents.tensors.size());
  for (const auto& [name, tensor] : contents.tensors) {
    std::printf("  %-36s %s\n", name.c_str(), attend::to_string(tensor.shape()).c_str());
  }
  std::printf("and metadata");
  for (const auto& [key, value] : contents.metadata) std::printf(" %s=%s", key.c_str(), value.c_str());
  std::printf("\n");

  attend::Generator other_gen(7);  // a different seed: different starting weights
  attend::nn::MLP fresh_model(sizes, other_gen);
  attend::optim::Adam fresh_optimizer(fresh_model.named_parameters(), 0.0f);
  std::printf("fresh model before loading: %.1f%%\n", 100.0 * accuracy(fresh_model, data));
  const attend::nn::CheckpointInfo info = attend::nn::load_checkpoint(checkpoint_path, fresh_model, &fresh_optimizer);
  std::printf("loaded step %lld, task '%s', sizes '%s'; optimizer steps taken: %lld\n",
              static_cast<long long>(info.step), info.metadata.at("task").c_str(),
              info.metadata.at("sizes").c_str(), static_cast<long long>(fresh_optimizer.steps_taken()));
  float largest_difference = 0.0f;
  const auto trained = model.named_parameters(), loaded = fresh_model.named_parameters();
  for (size_t i = 0; i < trained.size(); ++i) {
    largest_difference = std::max(largest_difference, attend::max_abs_diff(trained[i].second, loaded[i].second));
  }
  const float loaded_accuracy = accuracy(fresh_model, data);
  std::printf("fresh model after loading:  %.1f%% (largest parameter difference %g)\n", 100.0 * loaded_accuracy,
              largest_difference);
  // A model of another shape is refused, and is left as it was.
  attend::nn::MLP narrower_model({2, 32, 2}, other_gen);
  bool refused = false;
  try {
    attend::nn::load_checkpoint(checkpoint_path, narrower_model, nullptr);
  } catch (const attend::Error& error) {
    refused = true;
    std::printf("loading into an MLP 2-32-2 fails: %s\n\n", error.what());
  }

  std::printf("== 5. Pictures, written into the current directory (open them in a web browser)\n\n");
  draw_decision_regions(fresh_model, data, "Decision regions of the loaded MLP (" + join(sizes, "-") + ")")
      .save("04-spirals.svg");
  std::printf("wrote 04-spirals.svg: the decision regions and the points\n");

  attend::io::svg::LinePlot loss_plot{"Training loss on the spirals", "step", "cross-entropy", {}, 640.0, 400.0};
  std::vector<double> steps(loss_curve.size());
  for (size_t i = 0; i < steps.size(); ++i) steps[i] = static_cast<double>(i + 1);
  loss_plot.series.push_back({"", steps, loss_curve, ""});  // one unnamed series: no legend
  attend::io::svg::draw_line_plot(loss_plot).save("04-loss.svg");
  std::printf("wrote 04-loss.svg: the loss at every step\n");

  // The three schedules of optim.hpp, at sizes like chapter 8's training run.
  const attend::optim::ConstantSchedule constant(1e-3f);
  const attend::optim::WarmupInverseSqrtSchedule inverse_sqrt(1e-3f, 400);
  const attend::optim::WarmupCosineSchedule cosine(1e-3f, 400, 4000, 1e-5f);
  attend::io::svg::LinePlot schedule_plot{"Learning-rate schedules (peak 0.001, warmup 400, cosine to step 4000)",
                                      "step", "learning rate", {}, 820.0, 400.0};
  schedule_plot.series.push_back({"constant", {}, {}, ""});
  schedule_plot.series.push_back({"warmup + inverse sqrt", {}, {}, ""});
  schedule_plot.series.push_back({"warmup + cosine", {}, {}, ""});
  const attend::optim::Schedule* schedules[3] = {&constant, &inverse_sqrt, &cosine};
  for (int64_t step = 1; step <= 5000; step += 10) {
    for (size_t k = 0; k < 3; ++k) {
      schedule_plot.series[k].x.push_back(static_cast<double>(step));
      schedule_plot.series[k].y.push_back(schedules[k]->lr(step));
    }
  }
  attend::io::svg::draw_line_plot(schedule_plot).save("04-schedules.svg");
  std::printf("wrote 04-schedules.svg; some values:\n");
  std::printf("  %5s  %10s  %12s  %10s\n", "step", "constant", "inverse sqrt", "cosine");
  for (int64_t step : {1, 200, 400, 1000, 2200, 4000, 5000}) {
    std::printf("  %5lld  %10.6f  %12.6f  %10.6f\n", static_cast<long long>(step), constant.lr(step),
                inverse_sqrt.lr(step), cosine.lr(step));
  }

  if (final_accuracy < 0.95f || loaded_accuracy != final_accuracy || largest_difference != 0.0f || !refused) {
    std::printf("\nFAILED: expected at least 95%% accuracy, the same parameters after loading, "
                "and the narrower model refused\n");
    return 1;
  }
  return 0;
}
