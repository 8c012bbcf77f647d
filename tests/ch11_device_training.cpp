// Chapter 11, training on the device (docs/11-cuda.md, "Training on the
// device"): SGD, Adam, AdamW and gradient clipping on the device against the
// CPU, Module::to, optimizer state and checkpoints on either device, a
// whole training step of a small Transformer on the device against the same
// step on the CPU, and `attend --device`.
// On the emulator in `make test`; on a GPU with make CUDA=1 (tests/gpu/check.sh).
#include <sys/wait.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "attend/attend.hpp"
#include "catch_compat.hpp"
#include "test_devices.hpp"
#include "test_files.hpp"

using attend::Device;
using attend::Shape;
using attend::Tensor;
namespace kernels = attend::kernels;
using attend_test::same_bits;
namespace nn = attend::nn;
namespace optim = attend::optim;
using attend_test::TempDir;

#ifndef ATTEND_PROGRAM  // the Makefile passes the path of the `attend` program it builds
#define ATTEND_PROGRAM "build/attend"
#endif

namespace {

constexpr Device cuda = Device::cuda;

// The optimizers' arithmetic is the same on both devices, element by
// element: on the emulator the bits are the CPU's (on a GPU, nvcc may fuse
// a * b + c into one rounding: within 1e-4, test_devices.hpp).
void check_same_update(const Tensor& on_device, const Tensor& on_cpu, const std::string& what) {
  INFO(what);
  REQUIRE(on_device.device() == cuda);
  CHECK(attend_test::matches(on_device, on_cpu, attend_test::Match::same_bits_on_emulator));
}

// Sets p's gradient to exactly g: d/dp sum(p * g) = g (on p's device).
void set_gradient(Tensor p, const Tensor& g) {
  p.zero_grad();
  attend::sum(p * g.to(p.device())).backward();
}

// Parameters of awkward sizes: 1, 7, 33 x 5, and 16,385 (two ranges of the
// gradient norm, kOptimizerRangeSize = 16,384).
const std::vector<Shape> kShapes = {{1}, {7}, {33, 5}, {16385}};

attend::NamedTensors parameters_on(Device device, uint64_t seed) {
  attend::Generator gen(seed);
  attend::NamedTensors out;
  for (size_t i = 0; i < kShapes.size(); ++i) {
    Tensor p = attend::to_device(attend::randn(kShapes[i], gen), device);
    out.emplace_back("p" + std::to_string(i), p.set_requires_grad());
  }
  return out;
}

// Three steps of `make_optimizer` on the CPU and on the device, the same
// gradients; the parameters and every state tensor compared after each.
template <class MakeOptimizer>
void compare_optimizer_steps(const std::string& what, MakeOptimizer make_optimizer) {
  attend::NamedTensors on_cpu = parameters_on(Device::cpu, 3), on_device = parameters_on(cuda, 3);
  auto cpu_optimizer = make_optimizer(on_cpu);
  auto device_optimizer = make_optimizer(on_device);
  attend::Generator gradients(5);
  for (int step = 1; step <= 3; ++step) {
    for (size_t i = 0; i < on_cpu.size(); ++i) {
      const Tensor g = attend::randn(kShapes[i], gradients);
      set_gradient(on_cpu[i].second, g);
      set_gradient(on_device[i].second, g);
    }
    cpu_optimizer->step();
    device_optimizer->step();
    for (size_t i = 0; i < on_cpu.size(); ++i) {
      check_same_update(on_device[i].second, on_cpu[i].second,
                        what + ", step " + std::to_string(step) + ", " + on_cpu[i].first);
    }
    const attend::NamedTensors cpu_state = cpu_optimizer->state(), device_state = device_optimizer->state();
    REQUIRE(cpu_state.size() == device_state.size());
    for (size_t i = 0; i < cpu_state.size(); ++i) {
      check_same_update(device_state[i].second, cpu_state[i].second, what + ", state " + cpu_state[i].first);
    }
  }
}

// A small Transformer: every kind of layer, tiny sizes (so the emulator
// runs a step in well under a second).
nn::TransformerConfig tiny_config() {
  nn::TransformerConfig c;
  c.src_vocab = 11;
  c.tgt_vocab = 13;
  c.d_model = 8;
  c.heads = 2;
  c.encoder_layers = 1;
  c.decoder_layers = 1;
  c.d_ff = 16;
  c.dropout = 0.1f;
  c.max_len = 12;
  return c;
}

}  // namespace

// ---------------------------------------------------------------------------
// Optimizers and clipping
// ---------------------------------------------------------------------------

TEST_CASE("SGD, Adam and AdamW on the device update as on the CPU, bit for bit on the emulator", "[ch11]") {
  compare_optimizer_steps("SGD", [](const attend::NamedTensors& p) {
    return std::make_unique<optim::SGD>(p, 0.1f);
  });
  compare_optimizer_steps("SGD with momentum and weight decay", [](const attend::NamedTensors& p) {
    return std::make_unique<optim::SGD>(p, 0.1f, 0.9f, false, 0.01f);
  });
  compare_optimizer_steps("SGD with Nesterov momentum", [](const attend::NamedTensors& p) {
    return std::make_unique<optim::SGD>(p, 0.1f, 0.9f, true);
  });
  compare_optimizer_steps("Adam with L2 weight decay", [](const attend::NamedTensors& p) {
    return std::make_unique<optim::Adam>(p, 1e-2f, 0.9f, 0.98f, 1e-9f, 0.01f);
  });
  compare_optimizer_steps("AdamW", [](const attend::NamedTensors& p) {
    return std::make_unique<optim::AdamW>(p, 1e-2f);
  });
}

TEST_CASE("Adam's first step on the device, by hand: each weight moves by lr against its gradient's sign", "[ch11]") {
  // At step 1, m_hat = g and v_hat = g^2, so w -= lr g / (|g| + eps): a move
  // of lr (1e-8 eps aside). A wrong bias correction breaks this.
  Tensor w = attend::from_vector({1.0f, -2.0f, 0.5f}, {3}, cuda).set_requires_grad();
  optim::Adam adam({{"w", w}}, 0.1f, 0.9f, 0.999f, 1e-8f);
  set_gradient(w, attend::from_vector({0.5f, -3.0f, 1e-3f}, {3}));
  adam.step();
  const std::vector<float> after = w.cpu().to_vector();
  CHECK(after[0] == Approx(0.9f).margin(1e-6));
  CHECK(after[1] == Approx(-1.9f).margin(1e-6));
  CHECK(after[2] == Approx(0.4f).margin(1e-5));
  CHECK(adam.state()[0].second.device() == cuda);  // the moments live beside w
}

TEST_CASE("clip_grad_norm on the device: the CPU's norm and scaled gradients, nothing when under the limit", "[ch11]") {
  attend::NamedTensors on_cpu = parameters_on(Device::cpu, 7), on_device = parameters_on(cuda, 7);
  attend::Generator gen(9);
  std::vector<Tensor> cpu_params, device_params;
  for (size_t i = 0; i < on_cpu.size(); ++i) {
    const Tensor g = attend::randn(kShapes[i], gen);
    set_gradient(on_cpu[i].second, g);
    set_gradient(on_device[i].second, g);
    cpu_params.push_back(on_cpu[i].second);
    device_params.push_back(on_device[i].second);
  }
  // Under the limit (the norm is about sqrt(16,560) = 129): the gradients keep their bits.
  std::vector<Tensor> before;
  for (const Tensor& p : device_params) before.push_back(p.grad().clone());
  const Tensor unclipped = optim::clip_grad_norm_tensor(device_params, 1000.0f);
  CHECK(unclipped.device() == cuda);
  CHECK(unclipped.dim() == 0);
  for (size_t i = 0; i < before.size(); ++i) CHECK(same_bits(device_params[i].grad(), before[i]));
  // Over it: the same norm (summed in the same ranges, in the same order) and the same scaled gradients.
  const float cpu_norm = optim::clip_grad_norm(cpu_params, 1.0f);
  const float device_norm = optim::clip_grad_norm(device_params, 1.0f);
  CHECK(cpu_norm > 100.0f);
  if (kernels::running_on_gpu()) {  // (a GPU may fuse the double multiply-adds)
    CHECK(device_norm == Approx(cpu_norm).epsilon(1e-6));
  } else {
    CHECK(device_norm == cpu_norm);
    CHECK(unclipped.cpu().item() == cpu_norm);
  }
  for (size_t i = 0; i < cpu_params.size(); ++i) {
    check_same_update(device_params[i].grad(), cpu_params[i].grad(), "clipped gradient " + std::to_string(i));
  }
  // The norm after clipping is max_norm.
  CHECK(optim::clip_grad_norm(device_params, 1e9f) == Approx(1.0f).epsilon(1e-5));
}

TEST_CASE("clip_grad_norm refuses gradients on two devices, naming both", "[ch11]") {
  Tensor a = attend::ones({2, 3}).set_requires_grad();
  Tensor b = attend::ones({4}, cuda).set_requires_grad();
  set_gradient(a, attend::ones({2, 3}));
  set_gradient(b, attend::ones({4}));
  REQUIRE_THROWS_MENTIONING(optim::clip_grad_norm({a, b}, 1.0f), "clip_grad_norm: the gradients are on two devices",
                            "(2, 3) on cpu", "(4,) on cuda");
}

TEST_CASE("grad_norm and step_with_grad_scale refuse device gradients, changing nothing", "[ch11]") {
  Tensor a = attend::ones({2, 3}).set_requires_grad();
  Tensor b = attend::ones({4}, cuda).set_requires_grad();
  set_gradient(a, attend::ones({2, 3}));
  set_gradient(b, attend::ones({4}));
  REQUIRE_THROWS_MENTIONING(optim::grad_norm({b}), "grad_norm: the gradients are on cuda",
                            "clip_grad_norm_tensor");
  optim::Adam adam({{"a", a}, {"b", b}}, 0.1f);
  optim::SGD sgd({{"a", a}, {"b", b}}, 0.1f);
  for (optim::Optimizer* opt : std::initializer_list<optim::Optimizer*>{&adam, &sgd}) {
    REQUIRE_THROWS_MENTIONING(opt->step_with_grad_scale(0.5f), "step_with_grad_scale: parameter 'b' is on cuda");
    CHECK(opt->steps_taken() == 0);
    CHECK(a.to_vector() == std::vector<float>(6, 1.0f));  // no update,
    CHECK(a.grad().to_vector() == std::vector<float>(6, 1.0f));  // no gradient scaled
  }
  adam.step_with_grad_scale(1.0f);  // a scale of 1 is step(), which runs on the device too
  CHECK(adam.steps_taken() == 1);
}

// ---------------------------------------------------------------------------
// Modules on the device
// ---------------------------------------------------------------------------

TEST_CASE("Module::to moves parameters, gradients and buffers in place; cpu() brings them back bit-exact", "[ch11]") {
  attend::Generator gen(1);
  nn::Seq2SeqTransformer model(tiny_config(), gen);
  const attend::NamedTensors params = model.named_parameters();
  std::vector<Tensor> originals;
  for (const auto& [name, p] : params) originals.push_back(p.clone());
  const Tensor positions_before = model.named_buffers().at(0).second.clone();
  CHECK(model.named_buffers().at(0).first == "positions");
  set_gradient(model.src_embed->weight, attend::ones(model.src_embed->weight.shape()));
  CHECK(model.device() == Device::cpu);

  nn::Module& moved = model.to(cuda);
  CHECK(&moved == &model);  // returns the module, as PyTorch's to() does
  CHECK(model.device() == cuda);
  for (const auto& [name, p] : params) {  // the very handles taken before the move
    INFO(name);
    CHECK(p.device() == cuda);
    CHECK(p.requires_grad());
  }
  CHECK(model.src_embed->weight.device() == cuda);  // a module's own field sees the move
  CHECK(model.src_embed->weight.grad().device() == cuda);
  CHECK(model.named_buffers().at(0).second.device() == cuda);
  CHECK(model.named_parameters().size() == params.size());
  CHECK(model.state_dict().size() == params.size());  // buffers are not saved

  model.to(Device::cpu);
  for (size_t i = 0; i < params.size(); ++i) {
    INFO(params[i].first);
    CHECK(params[i].second.device() == Device::cpu);
    CHECK(same_bits(params[i].second, originals[i]));
  }
  CHECK(same_bits(model.named_buffers().at(0).second, positions_before));
  CHECK(same_bits(model.src_embed->weight.grad(), attend::ones(model.src_embed->weight.shape())));
}

TEST_CASE("Module::device names two parameters on two devices; an optimizer built before to() says so", "[ch11]") {
  attend::Generator gen(2);
  nn::Linear linear(3, 2, gen);
  optim::Adam built_too_early(linear.named_parameters());
  linear.weight.impl()->storage = attend::to_device(linear.weight, cuda).impl()->storage;  // half moved, by hand
  REQUIRE_THROWS_MENTIONING(linear.device(), "Module::device: the parameters are on two devices", "'weight' on cuda",
                            "'bias' on cpu");
  linear.to(cuda);
  set_gradient(linear.weight, attend::ones({2, 3}));
  set_gradient(linear.bias, attend::ones({2}));
  REQUIRE_THROWS_MENTIONING(built_too_early.step(), "parameter 'weight' (2, 3) is on cuda",
                            "its state 'exp_avg' is on cpu", "build the optimizer after moving the model");
  optim::Adam built_after(linear.named_parameters());
  built_after.step();
  for (const auto& [name, t] : built_after.state()) CHECK(t.device() == cuda);
}

TEST_CASE("checkpoints save from the device and load onto either device; a damaged one is refused, nothing lost", "[ch11]") {
  TempDir dir("ch11_checkpoint");
  const std::string path = dir.file("model.safetensors");
  attend::Generator gen(3);
  nn::MLP trained({4, 6, 2}, gen);
  trained.to(cuda);
  optim::Adam adam(trained.named_parameters(), 0.01f);
  for (Tensor p : trained.parameters()) set_gradient(p, attend::ones(p.shape()));
  adam.step();
  nn::save_checkpoint(path, trained, &adam, 1);

  // Onto the device: parameters and Adam's moments, bit for bit, where they were.
  attend::Generator other(4);
  nn::MLP on_device({4, 6, 2}, other);
  on_device.to(cuda);
  optim::Adam adam_on_device(on_device.named_parameters(), 0.01f);
  nn::load_checkpoint(path, on_device, &adam_on_device);
  for (size_t i = 0; i < trained.parameters().size(); ++i) {
    CHECK(on_device.parameters()[i].device() == cuda);
    CHECK(same_bits(on_device.parameters()[i], trained.parameters()[i]));
  }
  CHECK(adam_on_device.steps_taken() == 1);
  for (size_t i = 0; i < adam.state().size(); ++i) {
    CHECK(adam_on_device.state()[i].second.device() == cuda);
    CHECK(same_bits(adam_on_device.state()[i].second, adam.state()[i].second));
  }
  // Onto the CPU: the same numbers.
  nn::MLP on_cpu({4, 6, 2}, other);
  nn::load_checkpoint(path, on_cpu, nullptr);
  for (size_t i = 0; i < trained.parameters().size(); ++i) {
    CHECK(on_cpu.parameters()[i].device() == Device::cpu);
    CHECK(same_bits(on_cpu.parameters()[i], trained.parameters()[i]));
  }
  // A truncated file: refused with its reason, the model on the device untouched.
  const std::string bytes = attend_test::read_file(path);
  const std::string damaged = dir.file("damaged.safetensors");
  attend_test::write_file(damaged, bytes.substr(0, bytes.size() - 5));
  attend::Generator third(5);
  nn::MLP untouched({4, 6, 2}, third);
  untouched.to(cuda);
  std::vector<Tensor> before;
  for (const Tensor& p : untouched.parameters()) before.push_back(p.cpu());
  REQUIRE_THROWS_MENTIONING(nn::load_checkpoint(damaged, untouched, nullptr), damaged.c_str());
  for (size_t i = 0; i < before.size(); ++i) {
    CHECK(untouched.parameters()[i].device() == cuda);
    CHECK(same_bits(untouched.parameters()[i], before[i]));
  }
}

// ---------------------------------------------------------------------------
// The whole training step
// ---------------------------------------------------------------------------

TEST_CASE("a training step of a small Transformer on the device equals the CPU's, step after step", "[ch11]") {
  // Tolerance: the matmuls sum in another order on the device (and a GPU
  // fuses multiply-adds), so values differ in the last bits; Adam then turns
  // a gradient's relative error into the same relative error of a move of
  // about lr. 2e-5 relative + absolute holds for these 4 steps with room.
  // One exception, stated: the key projections' biases. Adding b to every
  // key adds q . b to all of a query's scores, which softmax ignores, so
  // their gradient is 0 in exact arithmetic and rounding noise (~1e-9) in
  // floats, and Adam scales noise to a full move of about lr with a random
  // sign. Those are checked to be tiny gradients and moves within 2 lr a step.
  constexpr float kTolerance = 2e-5f;
  constexpr float kLr = 3e-3f;
  const nn::TransformerConfig config = tiny_config();
  attend::Generator gen_cpu(42), gen_device(42);
  nn::Seq2SeqTransformer on_cpu(config, gen_cpu), on_device(config, gen_device);
  on_device.to(cuda);
  optim::Adam adam_cpu(on_cpu.named_parameters(), kLr, 0.9f, 0.98f, 1e-9f);
  optim::Adam adam_device(on_device.named_parameters(), kLr, 0.9f, 0.98f, 1e-9f);
  // A batch of 3 sentences with padding (id 0) in src and tgt; each step
  // takes them in another order. Target 1 stands for <bos>, 2 for <eos>.
  const std::vector<std::vector<int64_t>> sources = {{4, 5, 6, 7, 2}, {8, 9, 2, 0, 0}, {10, 3, 4, 2, 0}};
  const std::vector<std::vector<int64_t>> targets_in = {{1, 4, 5, 6, 0}, {1, 7, 8, 9, 12}, {1, 11, 0, 0, 0}};
  const std::vector<std::vector<int64_t>> targets_out = {{4, 5, 6, 2, 0}, {7, 8, 9, 12, 2}, {11, 2, 0, 0, 0}};
  const attend::NamedTensors cpu_params = on_cpu.named_parameters(), device_params = on_device.named_parameters();
  for (int step = 1; step <= 4; ++step) {
    INFO("step " << step);
    std::vector<int64_t> src, tgt_in, tgt_out;
    for (size_t b = 0; b < 3; ++b) {
      const size_t sentence = (b + static_cast<size_t>(step)) % 3;
      src.insert(src.end(), sources[sentence].begin(), sources[sentence].end());
      tgt_in.insert(tgt_in.end(), targets_in[sentence].begin(), targets_in[sentence].end());
      tgt_out.insert(tgt_out.end(), targets_out[sentence].begin(), targets_out[sentence].end());
    }
    const Tensor src_ids = attend::from_indices(src, {3, 5}), tgt_in_ids = attend::from_indices(tgt_in, {3, 5});
    const Tensor tgt_out_ids = attend::from_indices(tgt_out, {3, 5});
    float losses[2];
    for (int d = 0; d < 2; ++d) {
      nn::Seq2SeqTransformer& model = d == 0 ? on_cpu : on_device;
      optim::Adam& adam = d == 0 ? adam_cpu : adam_device;
      const Device device = d == 0 ? Device::cpu : cuda;
      const Tensor logits = model.forward(src_ids.to(device), tgt_in_ids.to(device));
      const Tensor loss = attend::cross_entropy(logits, tgt_out_ids.to(device), 0, 0.1f);
      REQUIRE(loss.device() == device);
      losses[d] = loss.cpu().item();
      adam.zero_grad();
      loss.backward();
      optim::clip_grad_norm(model.parameters(), 0.5f);  // small: the step clips
      adam.step();
    }
    CHECK(losses[1] == Approx(losses[0]).epsilon(kTolerance));
    for (size_t i = 0; i < cpu_params.size(); ++i) {
      INFO(cpu_params[i].first);
      const Tensor& p_cpu = cpu_params[i].second;
      const Tensor& p_device = device_params[i].second;
      REQUIRE(p_device.device() == cuda);
      REQUIRE(p_cpu.grad().defined() == p_device.grad().defined());
      if (p_cpu.grad().defined()) {
        CHECK(p_device.grad().device() == cuda);
        CHECK(attend::allclose(p_device.grad().cpu(), p_cpu.grad(), kTolerance, kTolerance));
      }
      const std::string& name = cpu_params[i].first;
      if (name.size() > 11 && name.compare(name.size() - 11, 11, "k_proj.bias") == 0) {
        CHECK(attend::max_abs_diff(p_cpu.grad(), attend::zeros_like(p_cpu.grad())) < 1e-6f);
        CHECK(attend::max_abs_diff(p_device.cpu(), p_cpu) <= 2.0f * kLr * static_cast<float>(step));
        continue;
      }
      CHECK(attend::allclose(p_device.cpu(), p_cpu, kTolerance, kTolerance));
    }
  }
}

// ---------------------------------------------------------------------------
// The program: --device
// ---------------------------------------------------------------------------

namespace {

struct ProgramRun {
  int status = -1;
  std::string out, err;
};

// Runs `ENVIRONMENT attend ARGS` (stdin empty), capturing status, stdout and stderr.
ProgramRun run_attend(const TempDir& dir, const std::string& environment, const std::string& args) {
  const std::string out = dir.file("stdout.txt"), err = dir.file("stderr.txt");
  const std::string command = environment + " OMP_NUM_THREADS=1 '" + ATTEND_PROGRAM + "' " + args +
                              " < /dev/null > '" + out + "' 2> '" + err + "'";
  const int raw = std::system(command.c_str());
  REQUIRE(raw != -1);
  REQUIRE(WIFEXITED(raw));
  ProgramRun run{WEXITSTATUS(raw), attend_test::read_file(out), attend_test::read_file(err)};
  UNSCOPED_INFO("$ " << environment << " attend " << args << "\nexit " << run.status << "\nstdout:\n"
                     << run.out << "stderr:\n" << run.err);
  return run;
}

// A tiny copy-task model, quick even on the emulator.
const std::string kTinyRun =
    " --task copy --d-model 8 --heads 2 --layers 1 --ff 16 --train-size 60 --valid-size 4 --batch 4 --eval-every 0 "
    "--checkpoint-every 0 --seed 3 --steps 3";

// The losses of the progress lines ("step 2/3  loss 2.7431 ..."), in order.
std::vector<std::string> logged_losses(const std::string& log) {
  std::vector<std::string> losses;
  for (size_t at = log.find("  loss "); at != std::string::npos; at = log.find("  loss ", at + 1)) {
    losses.push_back(log.substr(at + 7, log.find(' ', at + 7) - (at + 7)));
  }
  return losses;
}

}  // namespace

TEST_CASE("attend --device: a bad value is a usage error; cuda without CUDA says how to build it", "[ch11]") {
  REQUIRE(std::filesystem::exists(ATTEND_PROGRAM));  // built by `make tests`
  TempDir dir("ch11_device_cli");
  for (const std::string command : {"train --steps 1", "translate --model m.safetensors", "eval --model m --data d"}) {
    const ProgramRun bad = run_attend(dir, "", command + " --device gpu");
    CHECK(bad.status == 2);
    CHECK(bad.err.find("bad value for --device: unknown device 'gpu'") != std::string::npos);
  }
  if (!kernels::running_on_gpu()) {  // the default build: the emulator is for tests only
    for (const std::string command : {"train --steps 1", "translate --model m.safetensors", "eval --model m --data d"}) {
      const ProgramRun refused = run_attend(dir, "", command + " --device cuda");
      CHECK(refused.status == 1);
      CHECK(refused.err.find("--device cuda: this attend was built without CUDA; build it with CUDA: make CUDA=1") !=
            std::string::npos);
    }
  } else {  // a CUDA build: with the GPU hidden, it says none was found
    const ProgramRun hidden = run_attend(dir, "CUDA_VISIBLE_DEVICES=", "train --steps 1 --device cuda");
    CHECK(hidden.status == 1);
    CHECK(hidden.err.find("--device cuda: no GPU was found") != std::string::npos);
  }
  const ProgramRun help = run_attend(dir, "", "train --help");
  CHECK(help.out.find("--device D") != std::string::npos);
}

TEST_CASE("attend train, translate and eval --device cuda give the CPU's losses and translations", "[ch11]") {
  REQUIRE(std::filesystem::exists(ATTEND_PROGRAM));
  TempDir dir("ch11_device_run");
  const std::string emulate = kernels::running_on_gpu() ? "" : "ATTEND_EMULATE_CUDA=1";
  const std::string cpu_model = dir.file("cpu.safetensors"), device_model = dir.file("cuda.safetensors");
  const ProgramRun cpu = run_attend(dir, "", "train" + kTinyRun + " --out '" + cpu_model + "'");
  REQUIRE(cpu.status == 0);
  const ProgramRun device = run_attend(dir, emulate, "train" + kTinyRun + " --device cuda --out '" + device_model + "'");
  REQUIRE(device.status == 0);
  CHECK(device.err.find("device cuda") != std::string::npos);
  const std::vector<std::string> cpu_losses = logged_losses(cpu.err), device_losses = logged_losses(device.err);
  REQUIRE(cpu_losses.size() == 1);  // (not on a terminal: the last step's line)
  CHECK(device_losses == cpu_losses);  // to the 4 decimals printed

  const std::string sentences = " '1 2 3' '4 5'";
  const ProgramRun cpu_translation = run_attend(dir, "", "translate --model '" + device_model + "'" + sentences);
  const ProgramRun device_translation =
      run_attend(dir, emulate, "translate --device cuda --model '" + device_model + "'" + sentences);
  REQUIRE(cpu_translation.status == 0);
  REQUIRE(device_translation.status == 0);
  CHECK(device_translation.out == cpu_translation.out);

  const std::string data = dir.file("test.tsv");
  attend_test::write_file(data, "1 2\t1 2\n3 4 5\t3 4 5\n");
  const ProgramRun cpu_eval = run_attend(dir, "", "eval --model '" + cpu_model + "' --data '" + data + "'");
  const ProgramRun device_eval =
      run_attend(dir, emulate, "eval --device cuda --model '" + cpu_model + "' --data '" + data + "'");
  REQUIRE(cpu_eval.status == 0);
  REQUIRE(device_eval.status == 0);
  CHECK(device_eval.out == cpu_eval.out);
}
