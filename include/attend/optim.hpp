// Optimizers (SGD, Adam, AdamW), gradient clipping and learning-rate
// schedules. Chapter 4 (docs/04-modules-and-optimizers.md).
// An optimizer holds the parameters (by name) and its own per-parameter state;
// step() updates the parameters in place from their .grad(). The state lives
// on each parameter's device, and a parameter on the GPU is updated there
// (chapter 11): build the optimizer after moving the model.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "attend/tensor.hpp"

namespace attend::optim {

class Optimizer {
 public:
  // params: (name, tensor) pairs, e.g. model.named_parameters().
  Optimizer(NamedTensors params, float lr);
  virtual ~Optimizer() = default;

  virtual void step() = 0;  // one update from the current gradients
  // One update as if every gradient were first multiplied by grad_scale:
  // gradient clipping folded into the update (train_step on the CPU), so
  // that the gradients are read once instead of scaled in place, then read.
  // Adam and AdamW scale each gradient as they read it and leave .grad as
  // it was; the default (SGD) scales .grad in place, then calls step().
  virtual void step_with_grad_scale(float grad_scale);
  void zero_grad();         // forgets the gradients of all parameters

  float lr;                 // a schedule may change it before each step
  int64_t steps_taken() const { return steps_; }

  // The state to checkpoint, named "<kind>.<parameter name>" (e.g.
  // "exp_avg.layers.0.weight"); the step count is saved separately.
  NamedTensors state() const;
  // Restores it: every entry must be present once with the parameter's shape,
  // and there must be no others. Nothing changes if it throws.
  void load_state(const NamedTensors& state, int64_t steps_taken);

 protected:
  // Creates (zeroed) state of this kind for every parameter: "momentum", "exp_avg"...
  void add_state(const std::string& kind);
  Tensor& state_of(const std::string& kind, size_t param_index);

  NamedTensors params_;
  int64_t steps_ = 0;

 private:
  std::vector<std::pair<std::string, std::vector<Tensor>>> state_;  // kind -> one per parameter
};

// Stochastic gradient descent: g = grad + weight_decay * p;
// with momentum m: buf = m * buf + g, then g = buf (or g + m * buf with Nesterov);
// p -= lr * g.
class SGD : public Optimizer {
 public:
  SGD(NamedTensors params, float lr, float momentum = 0.0f, bool nesterov = false,
      float weight_decay = 0.0f);
  void step() override;
  float momentum, weight_decay;
  bool nesterov;
};

// Adam (Kingma & Ba): running means of g and g^2 with bias correction.
//   g = grad + weight_decay * p             (L2 penalty folded into the gradient)
//   m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2
//   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
class Adam : public Optimizer {
 public:
  Adam(NamedTensors params, float lr = 1e-3f, float beta1 = 0.9f, float beta2 = 0.999f,
       float eps = 1e-8f, float weight_decay = 0.0f);
  void step() override { step_with_grad_scale(1.0f); }
  void step_with_grad_scale(float grad_scale) override;
  float beta1, beta2, eps, weight_decay;

 protected:
  bool decoupled_ = false;  // AdamW
};

// AdamW (Loshchilov & Hutter): weight decay applied to the parameter directly,
// p -= lr * weight_decay * p, and not through the adaptive gradient.
class AdamW : public Adam {
 public:
  AdamW(NamedTensors params, float lr = 1e-3f, float beta1 = 0.9f, float beta2 = 0.999f,
        float eps = 1e-8f, float weight_decay = 1e-2f);
};

// Scales all gradients together so that their global L2 norm is at most
// max_norm. Returns the norm before clipping. The gradients must be on one
// device; on the GPU the norm is summed there (src/kernels/optimizer.cu) and
// only the returned float comes back.
float clip_grad_norm(const std::vector<Tensor>& params, float max_norm);
// The same, returning the norm as a 0-d tensor on the gradients' device
// (as PyTorch's clip_grad_norm_ does): on the GPU nothing is copied to the
// host and the host does not wait for the device (the training step uses it).
Tensor clip_grad_norm_tensor(const std::vector<Tensor>& params, float max_norm);
// The global L2 norm of the gradients, which clip_grad_norm returns, without
// scaling them (the same bits); with kernels::clip_scale(norm, max_norm) and
// Optimizer::step_with_grad_scale it clips in the update. CPU gradients.
float grad_norm(const std::vector<Tensor>& params);

// --- learning-rate schedules: the learning rate as a function of the step ---
// Steps count from 1 (the first update).

class Schedule {
 public:
  virtual ~Schedule() = default;
  virtual float lr(int64_t step) const = 0;
};

class ConstantSchedule : public Schedule {
 public:
  explicit ConstantSchedule(float lr) : lr_(lr) {}
  float lr(int64_t) const override { return lr_; }

 private:
  float lr_;
};

// The original transformer's: a linear rise to peak_lr over warmup steps,
// then decay with 1/sqrt(step):  peak_lr * min(step / warmup, sqrt(warmup / step)).
class WarmupInverseSqrtSchedule : public Schedule {
 public:
  WarmupInverseSqrtSchedule(float peak_lr, int64_t warmup);
  float lr(int64_t step) const override;

 private:
  float peak_lr_;
  int64_t warmup_;
};

// A linear rise to peak_lr over warmup steps, then half a cosine down to
// min_lr at total_steps (and min_lr after that).
class WarmupCosineSchedule : public Schedule {
 public:
  WarmupCosineSchedule(float peak_lr, int64_t warmup, int64_t total_steps, float min_lr = 0.0f);
  float lr(int64_t step) const override;

 private:
  float peak_lr_, min_lr_;
  int64_t warmup_, total_;
};

}  // namespace attend::optim
