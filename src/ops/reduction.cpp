// Reductions over chosen dims (sum, mean, max, argmax), with keepdim.
// Chapter 3 (docs/03-operations.md).
//
// Every reduction works the same way: permute the reduced dims to the end
// and copy, so that each output element reduces one contiguous "group" of
// R values; the output is (rows) values, reshaped to the kept dims. sum and
// mean run on the device too (chapter 11): the same copy, then a kernel with
// one thread per row summing in the same order (src/kernels/reduction.cu);
// so do max and argmax, one thread per row finding its first maximum.
#include <cmath>
#include <limits>

#include "attend/ops.hpp"
#include "attend/row_kernels.hpp"
#include "op_helpers.hpp"

namespace attend {

namespace {

using Grads = std::vector<Tensor>;

struct ReductionPlan {
  Tensor groups;        // (rows, R) contiguous: the values of each group side by side
  int64_t rows = 0;
  int64_t group_size = 0;  // R
  Shape keepdim_shape;  // the input's shape with reduced dims set to 1
  Shape out_shape;      // keepdim_shape, or without the reduced dims
  Shape permutation;    // kept dims, then reduced dims
};

ReductionPlan plan_reduction(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim,
                             const std::string& op, detail::Runs runs = detail::Runs::on_cpu_only) {
  detail::require_float(x, op, "input", runs);
  if (dims.empty()) {
    throw Error(op + ": the list of dims is empty (call " + op + "(x) to reduce over everything)");
  }
  std::vector<bool> reduced(static_cast<size_t>(x.dim()), false);
  for (int64_t d : dims) {
    const int64_t nd = normalize_dim(d, x.shape(), op);
    if (reduced[nd]) throw Error(op + ": dim " + std::to_string(nd) + " is listed twice");
    reduced[nd] = true;
  }
  ReductionPlan plan;
  Shape kept_sizes, reduced_sizes, reduced_dims;
  for (int64_t d = 0; d < x.dim(); ++d) {
    const int64_t size = x.shape()[d];
    plan.keepdim_shape.push_back(reduced[d] ? 1 : size);
    if (reduced[d]) {
      reduced_dims.push_back(d);
      reduced_sizes.push_back(size);
    } else {
      plan.permutation.push_back(d);
      kept_sizes.push_back(size);
      plan.out_shape.push_back(size);
    }
  }
  if (keepdim) plan.out_shape = plan.keepdim_shape;
  plan.permutation.insert(plan.permutation.end(), reduced_dims.begin(), reduced_dims.end());
  plan.rows = numel(kept_sizes);
  plan.group_size = numel(reduced_sizes);
  // Raw permuted view (no history: the backward of each reduction is its own).
  Shape perm_shape, perm_strides;
  for (int64_t d : plan.permutation) {
    perm_shape.push_back(x.shape()[d]);
    perm_strides.push_back(x.strides()[d]);
  }
  plan.groups = copy_to_contiguous(as_strided(x, perm_shape, perm_strides, x.offset()));
  return plan;
}

Shape all_dims(const Tensor& x) {
  Shape dims(static_cast<size_t>(x.dim()));
  for (int64_t d = 0; d < x.dim(); ++d) dims[d] = d;
  return dims;
}

// Sum (divided by `divisor`) of each group, accumulated in double.
Tensor reduce_sum(const ReductionPlan& plan, double divisor) {
  if (plan.groups.device() == Device::cuda) {
    Tensor out = empty(plan.out_shape, Device::cuda);
    kernels::sum_rows_device(plan.groups.device_data(), out.device_data(), plan.rows,
                             plan.group_size, divisor);
    return out;
  }
  Tensor out = zeros(plan.out_shape);
  const float* in = plan.groups.data();
  float* o = out.data();
  const int64_t R = plan.group_size;
  parallel_for(plan.rows, plan.rows * R >= detail::kParallelThreshold, [&](int64_t r) {
    double s = 0.0;
    for (int64_t k = 0; k < R; ++k) s += in[r * R + k];
    o[r] = static_cast<float>(s / divisor);
  });
  return out;
}

// The position of the (first) largest value in each group: what max keeps
// and argmax returns (kernels::first_max_position, shared with the device).
std::vector<int64_t> position_of_max(const ReductionPlan& plan, const Shape& input_shape, const std::string& op) {
  const int64_t R = plan.group_size;
  if (R == 0) throw Error(op + ": cannot reduce over an empty dim of shape " + to_string(input_shape));
  const float* in = plan.groups.data();
  std::vector<int64_t> winner(static_cast<size_t>(plan.rows));
  for (int64_t r = 0; r < plan.rows; ++r) winner[r] = kernels::first_max_position(in + r * R, R);
  return winner;
}

// The same on the device: the positions (Int64, out_shape) and, when asked
// for, the values (out_shape), one thread per group.
Tensor position_of_max_on_device(const ReductionPlan& plan, const Shape& input_shape, const std::string& op,
                                 Tensor* values) {
  if (plan.group_size == 0) throw Error(op + ": cannot reduce over an empty dim of shape " + to_string(input_shape));
  Tensor positions = empty(plan.out_shape, DType::Int64, Device::cuda);
  if (values) *values = empty(plan.out_shape, Device::cuda);
  kernels::max_rows_device(plan.groups.device_data(), plan.rows, plan.group_size,
                           values ? values->device_data() : nullptr, positions.device_index_data());
  return positions;
}

// The inverse of a permutation: where each dim went.
Shape inverse_permutation(const Shape& permutation) {
  Shape inverse(permutation.size());
  for (size_t i = 0; i < permutation.size(); ++i) inverse[permutation[i]] = static_cast<int64_t>(i);
  return inverse;
}

// max on the device: the values, and a backward that puts g at each group's maximum.
Tensor max_on_device(const Tensor& x, const ReductionPlan& plan) {
  Tensor values;
  const Tensor positions = position_of_max_on_device(plan, x.shape(), "max", &values);
  record_op("max", values, {x}, [positions, rows = plan.rows, R = plan.group_size, perm = plan.permutation,
                                 groups_shape = plan.groups.shape()](const Tensor& g) {
    const Tensor gc = g.contiguous();
    Tensor grad_groups = empty(groups_shape, Device::cuda);  // each row written in full
    kernels::max_rows_backward_device(gc.device_data(), positions.device_index_data(), rows, R,
                                      grad_groups.device_data());
    return Grads{grad_groups.permute(inverse_permutation(perm))};
  });
  return values;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const ReductionPlan plan = plan_reduction(x, dims, keepdim, "sum", detail::Runs::on_any_device);
  Tensor out = reduce_sum(plan, 1.0);
  // d(sum)/dx_i = 1: every element of a group gets the group's gradient.
  record_op("sum", out, {x}, [keep = plan.keepdim_shape, shape = x.shape()](const Tensor& g) {
    return Grads{g.reshape(keep).expand(shape)};
  });
  return out;
}

Tensor sum(const Tensor& x) {
  detail::require_float(x, "sum", "input", detail::Runs::on_any_device);
  return x.dim() == 0 ? x.clone() : sum(x, all_dims(x));
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const ReductionPlan plan = plan_reduction(x, dims, keepdim, "mean", detail::Runs::on_any_device);
  const float R = static_cast<float>(plan.group_size);
  Tensor out = reduce_sum(plan, static_cast<double>(plan.group_size));
  // d(mean)/dx_i = 1/R
  record_op("mean", out, {x}, [keep = plan.keepdim_shape, shape = x.shape(), R](const Tensor& g) {
    return Grads{(g / R).reshape(keep).expand(shape)};
  });
  return out;
}

Tensor mean(const Tensor& x) {
  detail::require_float(x, "mean", "input", detail::Runs::on_any_device);
  return x.dim() == 0 ? x.clone() : mean(x, all_dims(x));
}

Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const ReductionPlan plan = plan_reduction(x, dims, keepdim, "max", detail::Runs::on_any_device);
  if (x.device() == Device::cuda) return max_on_device(x, plan);
  const int64_t R = plan.group_size;
  const std::vector<int64_t> winner = position_of_max(plan, x.shape(), "max");
  Tensor out = empty(plan.out_shape);
  const float* in = plan.groups.data();
  float* o = out.data();
  for (int64_t r = 0; r < plan.rows; ++r) o[r] = in[r * R + winner[r]];
  // d(max)/dx_i = 1 for the (first) maximum of the group, 0 for the others.
  record_op("max", out, {x}, [plan_rows = plan.rows, R, winner, perm = plan.permutation,
                             groups_shape = plan.groups.shape()](const Tensor& g) {
    Tensor grad_groups = zeros(groups_shape);  // in the permuted layout
    float* gg = grad_groups.data();
    const std::vector<float> gv = g.to_vector();
    for (int64_t r = 0; r < plan_rows; ++r) gg[r * R + winner[r]] = gv[r];
    return Grads{grad_groups.permute(inverse_permutation(perm))};
  });
  return out;
}

Tensor max(const Tensor& x) {
  detail::require_float(x, "max", "input", detail::Runs::on_any_device);
  return x.dim() == 0 ? x.clone() : max(x, all_dims(x));
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  const ReductionPlan plan = plan_reduction(x, {dim}, keepdim, "argmax", detail::Runs::on_any_device);
  if (x.device() == Device::cuda) return position_of_max_on_device(plan, x.shape(), "argmax", nullptr);
  const std::vector<int64_t> winner = position_of_max(plan, x.shape(), "argmax");
  return from_indices(winner, plan.out_shape);
}

}  // namespace attend
