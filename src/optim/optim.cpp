// SGD, Adam, AdamW, gradient clipping and learning-rate schedules.
// Chapter 4 (docs/04-modules-and-optimizers.md). Updates are plain loops over
// each parameter's contiguous data, done in place, each element by the
// formula of attend/optimizer_kernels.hpp. Chapter 10 shares Adam's update
// and the gradient norm among threads (ElementRange below); chapter 11 runs
// the same formulas on the device, one CUDA thread per element
// (docs/11-cuda.md, "Training on the device").
#include "attend/optim.hpp"

#include "attend/parallel.hpp"

#include <algorithm>
#include <cmath>

#include "attend/optimizer_kernels.hpp"

namespace attend::optim {

namespace {

// Elements [begin, end) of parameter `param`. Adam's update and the gradient
// norm cut all parameters into such ranges and share them among the threads
// in one loop per step: most parameters are too small (a bias, a 128 x 128
// weight) to be worth waking the threads for on their own, all of them
// together are not. The ranges depend on the sizes alone, never on the
// thread count.
struct ElementRange {
  size_t param;
  int64_t begin, end;
};
constexpr int64_t kRangeSize = kernels::kOptimizerRangeSize;  // the GPU's norm uses the same ranges

std::vector<ElementRange> element_ranges(const std::vector<int64_t>& sizes) {
  std::vector<ElementRange> ranges;
  for (size_t i = 0; i < sizes.size(); ++i) {
    for (int64_t b = 0; b < sizes[i]; b += kRangeSize) {
      ranges.push_back({i, b, std::min(sizes[i], b + kRangeSize)});
    }
  }
  return ranges;
}

// How many pieces to cut `range_count` ranges into for the threads: ranges
// differ in size (a bias is one short range), so several pieces per thread,
// each taken by whichever thread is free.
int64_t range_pieces(int64_t range_count) { return range_count > 1 ? 4 * thread_count() : 1; }

}  // namespace

// --- Optimizer ---

Optimizer::Optimizer(NamedTensors params, float lr_) : lr(lr_), params_(std::move(params)) {
  for (const auto& [name, p] : params_) {
    if (!p.defined() || p.dtype() != DType::Float32 || !p.is_contiguous() || !p.is_leaf()) {
      throw Error("Optimizer: parameter '" + name +
                  "' must be a defined, contiguous float32 leaf tensor");
    }
  }
}

void Optimizer::zero_grad() {
  for (auto& [name, p] : params_) p.zero_grad();
}

void Optimizer::add_state(const std::string& kind) {
  std::vector<Tensor> buffers;
  for (const auto& [name, p] : params_) buffers.push_back(zeros(p.shape(), p.device()));  // beside its parameter
  state_.emplace_back(kind, std::move(buffers));
}

Tensor& Optimizer::state_of(const std::string& kind, size_t i) {
  for (auto& [k, buffers] : state_) {
    if (k != kind) continue;
    const Tensor& p = params_[i].second;
    if (buffers[i].device() != p.device()) {
      throw Error("Optimizer: parameter '" + params_[i].first + "' " + to_string(p.shape()) + " is on " +
                  to_string(p.device()) + " but its state '" + kind + "' is on " +
                  to_string(buffers[i].device()) +
                  ": build the optimizer after moving the model (model.to(device), then the optimizer)");
    }
    return buffers[i];
  }
  throw Error("Optimizer: no state named '" + kind + "'");
}

NamedTensors Optimizer::state() const {
  NamedTensors out;
  for (const auto& [kind, buffers] : state_) {
    for (size_t i = 0; i < params_.size(); ++i) out.emplace_back(kind + "." + params_[i].first, buffers[i]);
  }
  return out;
}

void Optimizer::load_state(const NamedTensors& saved, int64_t steps_taken) {
  std::vector<std::pair<Tensor*, Tensor>> updates;  // check everything before changing anything
  for (auto& [kind, buffers] : state_) {
    for (size_t i = 0; i < params_.size(); ++i) {
      const std::string name = kind + "." + params_[i].first;
      auto it = std::find_if(saved.begin(), saved.end(), [&](const auto& e) { return e.first == name; });
      if (it == saved.end()) throw Error("Optimizer::load_state: missing entry '" + name + "'");
      if (!it->second.defined() || it->second.dtype() != DType::Float32 || it->second.shape() != buffers[i].shape()) {
        throw Error("Optimizer::load_state: entry '" + name + "' has the wrong shape or dtype (expected " +
                    to_string(buffers[i].shape()) + ")");
      }
      updates.emplace_back(&buffers[i], it->second);
    }
  }
  // Strict, like load_state_dict: an entry that is not ours, or one given
  // twice, is an error too (Adam's state must not pass silently into SGD).
  for (size_t i = 0; i < saved.size(); ++i) {
    const std::string& name = saved[i].first;
    bool ours = false;
    for (const auto& [kind, buffers] : state_) {
      for (const auto& [param_name, p] : params_) ours = ours || name == kind + "." + param_name;
    }
    if (!ours) throw Error("Optimizer::load_state: unexpected entry '" + name + "'");
    for (size_t j = 0; j < i; ++j) {
      if (saved[j].first == name) throw Error("Optimizer::load_state: entry '" + name + "' appears twice");
    }
  }
  if (steps_taken < 0) throw Error("Optimizer::load_state: negative step count");
  for (auto& [slot, value] : updates) {  // onto the parameter's device, from either device
    Tensor fresh = empty(slot->shape(), DType::Float32, slot->device());
    copy_into(fresh, value);
    *slot = fresh;
  }
  steps_ = steps_taken;
}

namespace {

// step_with_grad_scale scales CPU gradients only (on the device, clipping
// stays clip_grad_norm_tensor, then step()). Checked before anything
// changes, so a refused call leaves the parameters, gradients and step count.
void require_cpu_parameters(const NamedTensors& params, float grad_scale) {
  if (grad_scale == 1.0f) return;
  for (const auto& [name, p] : params) {
    if (p.device() != Device::cpu) {
      throw Error("step_with_grad_scale: parameter '" + name + "' is on " + to_string(p.device()) +
                  "; a scale other than 1 needs CPU parameters (on the device: clip_grad_norm_tensor, then step())");
    }
  }
}

}  // namespace

void Optimizer::step_with_grad_scale(float grad_scale) {
  require_cpu_parameters(params_, grad_scale);
  if (grad_scale != 1.0f) {
    for (auto& [name, p] : params_) {
      Tensor g = p.grad();  // contiguous: the engine makes every .grad so
      if (!g.defined()) continue;
      float* d = g.data();
      for (int64_t k = 0; k < g.numel(); ++k) d[k] *= grad_scale;
    }
  }
  step();
}

// --- SGD ---

SGD::SGD(NamedTensors params, float lr_, float momentum_, bool nesterov_, float weight_decay_)
    : Optimizer(std::move(params), lr_), momentum(momentum_), weight_decay(weight_decay_), nesterov(nesterov_) {
  if (momentum > 0.0f) add_state("momentum");
}

void SGD::step() {
  ++steps_;
  const kernels::SgdConstants c{lr, momentum, weight_decay, nesterov, steps_ == 1};
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i].second;
    const Tensor grad = p.grad();
    if (!grad.defined()) continue;  // no gradient reached this parameter
    Tensor* buffer = momentum > 0.0f ? &state_of("momentum", i) : nullptr;
    const int64_t n = p.numel();
    if (p.device() == Device::cuda) {  // one CUDA thread per element (chapter 11)
      kernels::sgd_update_device(p.device_data(), grad.device_data(),
                                 buffer ? buffer->device_data() : nullptr, n, c);
      continue;
    }
    float* w = p.data();
    const float* g = grad.data();
    float* buf = buffer ? buffer->data() : nullptr;
    for (int64_t k = 0; k < n; ++k) kernels::sgd_update_element(w[k], g[k], buf ? buf + k : nullptr, c);
  }
}

// --- Adam, AdamW ---

Adam::Adam(NamedTensors params, float lr_, float beta1_, float beta2_, float eps_, float weight_decay_)
    : Optimizer(std::move(params), lr_), beta1(beta1_), beta2(beta2_), eps(eps_), weight_decay(weight_decay_) {
  add_state("exp_avg");     // m: running mean of g
  add_state("exp_avg_sq");  // v: running mean of g^2
}

namespace {

// Elements [begin, end) of one parameter: w (weights), m and v (Adam's
// state), g (gradient). A template on AdamW-or-Adam so that the loop has no
// branch inside; with `simd` (w, m, v and g are different arrays) the
// compiler then updates several elements at once.
// The gradient is g[k] * grad_scale: a multiply by 1 changes no bit, and any
// other scale gives the bits of a gradient clipped in place first.
template <bool kDecoupled>
void adam_update(float* w, float* m, float* v, const float* g, float grad_scale, int64_t begin, int64_t end,
                 const kernels::AdamConstants& c) {
#pragma omp simd
  for (int64_t k = begin; k < end; ++k) {
    kernels::adam_update_element<kDecoupled>(w[k], m[k], v[k], g[k] * grad_scale, c);
  }
}

}  // namespace

void Adam::step_with_grad_scale(float grad_scale) {
  require_cpu_parameters(params_, grad_scale);
  ++steps_;
  const double t = static_cast<double>(steps_);
  const float correction1 = static_cast<float>(1.0 - std::pow(static_cast<double>(beta1), t));
  const float correction2 = static_cast<float>(1.0 - std::pow(static_cast<double>(beta2), t));
  const kernels::AdamConstants c{lr, beta1, beta2, eps, weight_decay, correction1, correction2};
  // Each parameter's arrays, looked up once (a parameter without a gradient
  // gets no update: size 0).
  struct Arrays {
    float *w, *m, *v;
    const float* g;
  };
  std::vector<Arrays> arrays(params_.size());
  std::vector<int64_t> sizes(params_.size(), 0);
  std::vector<Tensor> grads(params_.size());  // holds each gradient alive during the update
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i].second;
    grads[i] = p.grad();
    if (!grads[i].defined()) continue;
    Tensor& m = state_of("exp_avg", i);
    Tensor& v = state_of("exp_avg_sq", i);
    if (p.device() == Device::cuda) {  // one CUDA thread per element (chapter 11); not in the ranges
      kernels::adam_update_device(p.device_data(), m.device_data(), v.device_data(), grads[i].device_data(),
                                  p.numel(), c, decoupled_);
      continue;
    }
    arrays[i] = {p.data(), m.data(), v.data(), grads[i].data()};
    sizes[i] = p.numel();
  }
  // One pass over each element: read w, g, m, v once, write w, m, v once.
  // Every element is independent, so the threads share them freely.
  const std::vector<ElementRange> ranges = element_ranges(sizes);
  const int64_t range_count = static_cast<int64_t>(ranges.size());
  parallel_for_ranges(range_count, range_pieces(range_count), [&](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r) {
      const auto [w, m, v, g] = arrays[ranges[r].param];
      if (decoupled_) {
        adam_update<true>(w, m, v, g, grad_scale, ranges[r].begin, ranges[r].end, c);
      } else {
        adam_update<false>(w, m, v, g, grad_scale, ranges[r].begin, ranges[r].end, c);
      }
    }
  });
}

AdamW::AdamW(NamedTensors params, float lr_, float beta1_, float beta2_, float eps_, float weight_decay_)
    : Adam(std::move(params), lr_, beta1_, beta2_, eps_, weight_decay_) {
  decoupled_ = true;
}

// --- gradient clipping ---

namespace {

// The norm on the device: each gradient's range sums into one array (one
// launch per gradient, one thread per range), then one thread adds them in
// order and works out the scale, then every gradient is scaled by it, the
// scale read on the device. Nothing comes back to the host.
Tensor clip_on_device(const std::vector<Tensor>& grads, float max_norm) {
  int64_t total_ranges = 0;
  for (const Tensor& g : grads) total_ranges += (g.numel() + kRangeSize - 1) / kRangeSize;
  const kernels::DeviceBlock range_sums(static_cast<size_t>(std::max<int64_t>(total_ranges, 1)) * sizeof(double));
  double* sums = static_cast<double*>(range_sums.get());
  int64_t first_range = 0;
  for (const Tensor& g : grads) {
    kernels::sum_of_squares_device(g.device_data(), g.numel(), sums + first_range);
    first_range += (g.numel() + kRangeSize - 1) / kRangeSize;
  }
  Tensor norm_and_scale = empty({2}, Device::cuda);
  kernels::clip_coefficients_device(sums, total_ranges, max_norm, norm_and_scale.device_data());
  for (Tensor g : grads) kernels::scale_by_device(g.device_data(), g.numel(), norm_and_scale.device_data() + 1);
  return norm_and_scale.select(0, 0);
}

// The defined gradients of params, all on one device (`op` names the caller
// in the error).
std::vector<Tensor> defined_gradients(const std::vector<Tensor>& params, const char* op) {
  std::vector<Tensor> grads;
  for (const Tensor& p : params) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    if (!grads.empty() && g.device() != grads[0].device()) {
      throw Error(std::string(op) + ": the gradients are on two devices: " + to_string(grads[0].shape()) + " on " +
                  to_string(grads[0].device()) + ", " + to_string(g.shape()) + " on " + to_string(g.device()) +
                  " (move the whole model with Module::to)");
    }
    grads.push_back(g);
  }
  return grads;
}

// The global norm of CPU gradients. The sum of squares of every element, in
// double: each range's sum on whichever thread, then the range sums in order
// on one thread, so the norm is the same on any number of threads.
float cpu_gradient_norm(const std::vector<Tensor>& grads, const std::vector<ElementRange>& ranges) {
  const int64_t range_count = static_cast<int64_t>(ranges.size());
  std::vector<double> range_sums(ranges.size(), 0.0);
  parallel_for_ranges(range_count, range_pieces(range_count), [&](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r) {
      range_sums[r] = kernels::sum_of_squares(grads[ranges[r].param].data(), ranges[r].begin, ranges[r].end);
    }
  });
  double total = 0.0;
  for (double s : range_sums) total += s;
  return static_cast<float>(std::sqrt(total));
}

std::vector<int64_t> sizes_of(const std::vector<Tensor>& tensors) {
  std::vector<int64_t> sizes;
  for (const Tensor& t : tensors) sizes.push_back(t.numel());
  return sizes;
}

}  // namespace

float grad_norm(const std::vector<Tensor>& params) {
  const std::vector<Tensor> grads = defined_gradients(params, "grad_norm");
  if (!grads.empty() && grads[0].device() != Device::cpu) {
    throw Error("grad_norm: the gradients are on " + to_string(grads[0].device()) +
                "; it sums CPU gradients (on the device: clip_grad_norm_tensor)");
  }
  return cpu_gradient_norm(grads, element_ranges(sizes_of(grads)));
}

Tensor clip_grad_norm_tensor(const std::vector<Tensor>& params, float max_norm) {
  std::vector<Tensor> grads = defined_gradients(params, "clip_grad_norm");  // scaled in place below
  if (!grads.empty() && grads[0].device() == Device::cuda) return clip_on_device(grads, max_norm);
  const std::vector<ElementRange> ranges = element_ranges(sizes_of(grads));
  const int64_t range_count = static_cast<int64_t>(ranges.size());
  const float norm = cpu_gradient_norm(grads, ranges);
  const float scale = kernels::clip_scale(norm, max_norm);
  if (scale != 1.0f) {
    parallel_for_ranges(range_count, range_pieces(range_count), [&](int64_t first, int64_t last) {
      for (int64_t r = first; r < last; ++r) {
        float* d = grads[ranges[r].param].data();
        for (int64_t k = ranges[r].begin; k < ranges[r].end; ++k) d[k] *= scale;
      }
    });
  }
  return scalar_tensor(norm);
}

float clip_grad_norm(const std::vector<Tensor>& params, float max_norm) {
  return to_device(clip_grad_norm_tensor(params, max_norm), Device::cpu).item();
}

// --- schedules ---

WarmupInverseSqrtSchedule::WarmupInverseSqrtSchedule(float peak_lr, int64_t warmup)
    : peak_lr_(peak_lr), warmup_(warmup) {
  if (warmup < 1) throw Error("WarmupInverseSqrtSchedule: warmup must be at least 1");
}

float WarmupInverseSqrtSchedule::lr(int64_t step) const {
  const double s = static_cast<double>(std::max<int64_t>(step, 1));
  const double w = static_cast<double>(warmup_);
  return static_cast<float>(peak_lr_ * std::min(s / w, std::sqrt(w / s)));
}

WarmupCosineSchedule::WarmupCosineSchedule(float peak_lr, int64_t warmup, int64_t total, float min_lr)
    : peak_lr_(peak_lr), min_lr_(min_lr), warmup_(warmup), total_(total) {
  if (warmup < 0 || total <= warmup) {
    throw Error("WarmupCosineSchedule: need 0 <= warmup < total_steps, got warmup=" +
                std::to_string(warmup) + " total_steps=" + std::to_string(total));
  }
}

float WarmupCosineSchedule::lr(int64_t step) const {
  // exercise 4.4 begin: the learning rate at step: linear warm-up, then a cosine from peak_lr down to min_lr
  const double s = static_cast<double>(std::max<int64_t>(step, 1));
  if (s <= static_cast<double>(warmup_)) return static_cast<float>(peak_lr_ * s / static_cast<double>(warmup_));
  if (step >= total_) return min_lr_;
  // progress goes 0 -> 1 from the end of warmup to total_steps
  const double progress = (s - static_cast<double>(warmup_)) / static_cast<double>(total_ - warmup_);
  return static_cast<float>(min_lr_ + (peak_lr_ - min_lr_) * 0.5 * (1.0 + std::cos(3.141592653589793 * progress)));
  // exercise 4.4 end
}

}  // namespace attend::optim
