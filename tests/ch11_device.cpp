// Chapter 11, tensors on the device (docs/11-cuda.md, "Tensors on the
// device"): every op with a CUDA kernel against its CPU twin on awkward
// shapes (1, 7, 33, views, broadcasting), values and gradients; to() and
// cpu() bit-exact; host reads and mixed devices refused with clear messages;
// printing, safetensors and gradcheck through copies; the caching allocator.
// On the emulator in `make test`; on a GPU with make CUDA=1.
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "attend/attend.hpp"
#include "catch_compat.hpp"
#include "test_devices.hpp"

using attend::Device;
using attend::Shape;
using attend::Tensor;
namespace kernels = attend::kernels;

namespace {

constexpr Device cuda = Device::cuda;
using attend_test::compare_with_cpu;
using attend_test::cpu_leaf;
using attend_test::Match;
using attend_test::same_bits;

}  // namespace

TEST_CASE("devices are named as PyTorch names them", "[ch11]") {
  CHECK(attend::to_string(Device::cpu) == "cpu");
  CHECK(attend::to_string(Device::cuda) == "cuda");
  CHECK(attend::parse_device("cuda") == Device::cuda);
  CHECK(attend::parse_device("cpu") == Device::cpu);
  REQUIRE_THROWS_MENTIONING(attend::parse_device("gpu"), "unknown device 'gpu'", "cpu or cuda");
}

TEST_CASE("to(cuda) and cpu() round trips are bit-exact; factories make tensors on a device", "[ch11]") {
  const float nan = std::nanf(""), inf = INFINITY;
  const Tensor x = attend::from_vector({1.5f, -0.0f, nan, inf, -inf, 1e-40f, 3.0f, -7.25f}, {2, 4});
  const Tensor on_device = x.to(cuda);
  CHECK(on_device.device() == cuda);
  CHECK(x.device() == Device::cpu);
  CHECK(same_bits(on_device.cpu(), x));
  CHECK(on_device.to(cuda).shares_storage_with(on_device));  // already there: itself
  CHECK(x.cpu().shares_storage_with(x));

  // Views go as their elements in row-major order, both ways.
  const Tensor view = x.t().slice(0, 1, 4, 2);  // (2, 2), non-contiguous
  CHECK(same_bits(view.to(cuda), view.contiguous()));
  CHECK(same_bits(on_device.t().slice(0, 1, 4, 2).cpu(), view.contiguous()));

  const Tensor indices = attend::from_indices({3, -1, 7, 0, 5, 2}, {3, 2}, cuda);
  CHECK(indices.device() == cuda);
  CHECK(indices.cpu().to_index_vector() == std::vector<int64_t>{3, -1, 7, 0, 5, 2});
  CHECK(indices.t().cpu().to_index_vector() == std::vector<int64_t>{3, 7, 5, -1, 0, 2});
  CHECK(attend::zeros({2}, attend::DType::Int64, cuda).cpu().to_index_vector() ==
        std::vector<int64_t>{0, 0});

  CHECK(attend::zeros({33}, cuda).cpu().to_vector() == std::vector<float>(33, 0.0f));
  CHECK(attend::ones({3, 1}, cuda).cpu().to_vector() == std::vector<float>(3, 1.0f));
  CHECK(attend::full({7}, -2.5f, cuda).cpu().to_vector() == std::vector<float>(7, -2.5f));
  CHECK(attend::scalar_tensor(4.0f, cuda).cpu().item() == 4.0f);
  CHECK(attend::zeros_like(on_device).device() == cuda);
  CHECK(attend::ones_like(on_device).cpu().to_vector() == std::vector<float>(8, 1.0f));
  CHECK(attend::empty({0}, cuda).numel() == 0);
  attend::Generator a(5), b(5);
  CHECK(same_bits(attend::randn({4, 3}, a, cuda), attend::randn({4, 3}, b)));  // one seed, one set of numbers
}

TEST_CASE("host code cannot read a tensor on the device, even on the emulator", "[ch11]") {
  Tensor x = attend::ones({2, 3}, cuda);
  const char* advice = "is on cuda: copy it to the host with .cpu() first";
  REQUIRE_THROWS_MENTIONING(x.data(), "data: the tensor of shape (2, 3)", advice);
  REQUIRE_THROWS_MENTIONING(x.at({0, 1}), "at:", advice);
  REQUIRE_THROWS_MENTIONING(x.set({0, 1}, 2.0f), "set:", advice);
  REQUIRE_THROWS_MENTIONING(attend::sum(x).item(), "item:", advice);
  REQUIRE_THROWS_MENTIONING(x.to_vector(), "to_vector:", advice);
  const Tensor i = attend::from_indices({1, 2}, {2}, cuda);
  REQUIRE_THROWS_MENTIONING(i.index_data(), "index_data:", advice);
  REQUIRE_THROWS_MENTIONING(i.to_index_vector(), "to_index_vector:", advice);
  REQUIRE_THROWS_MENTIONING(attend::ones({2}).device_data(), "device_data", "is on the cpu");
  CHECK(x.cpu().at({0, 1}) == 1.0f);
}

TEST_CASE("an op whose inputs are on two devices names the op and both devices", "[ch11]") {
  const Tensor a = attend::ones({2, 3}), b = attend::ones({2, 3}, cuda);
  REQUIRE_THROWS_MENTIONING(attend::add(a, b), "add: the inputs are on two devices",
                            "first input (2, 3) on cpu", "second input (2, 3) on cuda");
  REQUIRE_THROWS_MENTIONING(attend::matmul(b, a.t()), "matmul: the inputs are on two devices",
                            "on cuda", "(3, 2) on cpu");
  REQUIRE_THROWS_MENTIONING(attend::linear(b, attend::ones({4, 3}), Tensor()), "linear", "input (2, 3) on cuda",
                            "weight (4, 3) on cpu");
  // backward's gradient must be where the output is.
  const Tensor x = attend::ones({2}, cuda).set_requires_grad();
  REQUIRE_THROWS_MENTIONING((x * x).backward(attend::ones({2})), "backward: the gradient is on cpu",
                            "output on cuda");
}

TEST_CASE("elementwise ops on the device equal the CPU's, through views and broadcasting", "[ch11]") {
  using Inputs = std::vector<Tensor>;
  struct Unary {
    const char* name;
    std::function<Tensor(const Tensor&)> f;
  };
  const std::vector<Unary> unary{
      {"neg", [](const Tensor& x) { return attend::neg(x); }},
      {"exp", [](const Tensor& x) { return attend::exp(x); }},
      {"log", [](const Tensor& x) { return attend::log(x * x + 0.5f); }},  // of positive numbers
      {"sqrt", [](const Tensor& x) { return attend::sqrt(x * x + 0.5f); }},
      {"tanh", [](const Tensor& x) { return attend::tanh(x); }},
      {"sigmoid", [](const Tensor& x) { return attend::sigmoid(x * 3.0f); }},  // both branches
      {"relu", [](const Tensor& x) { return attend::relu(x); }},
      {"gelu", [](const Tensor& x) { return attend::gelu(x); }},
      {"pow", [](const Tensor& x) { return attend::pow(x, 3.0f); }},
  };
  for (const Shape& shape : {Shape{1}, Shape{7}, Shape{33}, Shape{3, 33}}) {
    for (const Unary& op : unary) {
      compare_with_cpu(std::string(op.name) + " " + attend::to_string(shape), {cpu_leaf(shape)},
                       [&](const Inputs& in) { return op.f(in[0]); });
    }
  }
  // A transposed and a strided view, read in place by the kernel.
  compare_with_cpu("tanh of a transposed view", {cpu_leaf({7, 33})},
                   [](const Inputs& in) { return attend::tanh(in[0].t()); });
  compare_with_cpu("exp of a slice with step 3", {cpu_leaf({33, 7})},
                   [](const Inputs& in) { return attend::exp(in[0].slice(0, 1, 33, 3)); });

  // add, sub, mul and div are exact in IEEE arithmetic: the same bits on both devices.
  struct Binary {
    const char* name;
    std::function<Tensor(const Tensor&, const Tensor&)> f;
  };
  const std::vector<Binary> binary{
      {"add", [](const Tensor& a, const Tensor& b) { return a + b; }},
      {"sub", [](const Tensor& a, const Tensor& b) { return a - b; }},
      {"mul", [](const Tensor& a, const Tensor& b) { return a * b; }},
      {"div", [](const Tensor& a, const Tensor& b) { return a / (b * b + 1.0f); }},
  };
  struct Shapes {
    Shape a, b;
  };
  const std::vector<Shapes> shapes{
      {{1}, {1}}, {{7}, {7}}, {{33}, {1}}, {{7, 1, 3}, {5, 3}}, {{1, 33}, {7, 1}}, {{2, 3, 7}, {}},
  };
  for (const Binary& op : binary) {
    for (const Shapes& s : shapes) {
      compare_with_cpu(std::string(op.name) + " " + attend::to_string(s.a) + " and " +
                           attend::to_string(s.b),
                       {cpu_leaf(s.a), cpu_leaf(s.b)},
                       [&](const Inputs& in) { return op.f(in[0], in[1]); }, Match::bit_exact);
    }
    compare_with_cpu(std::string(op.name) + " of a transposed view and a row", {cpu_leaf({33, 7}), cpu_leaf({33})},
                     [&](const Inputs& in) { return op.f(in[0].t(), in[1]); }, Match::bit_exact);
  }
  // Scalars are made on the tensor's device.
  compare_with_cpu("scalar forms", {cpu_leaf({7})}, [](const Inputs& in) {
    return attend::add(attend::mul(in[0], 3.0f), -1.0f) / 2.0f - 0.5f + (4.0f - in[0]) * 0.25f + 1.0f / (in[0] * in[0] + 2.0f);
  }, Match::bit_exact);
  compare_with_cpu("masked_fill", {cpu_leaf({3, 7})}, [](const Inputs& in) {
    const Tensor mask = attend::from_vector({1, 0, 0, 1, 0, 0, 1}, {7}).to(in[0].device());
    return attend::masked_fill(in[0], mask, -1e9f);
  }, Match::bit_exact);
}

TEST_CASE("copies of views on the device: contiguous, clone, reshape", "[ch11]") {
  using Inputs = std::vector<Tensor>;
  compare_with_cpu("contiguous of a permuted view", {cpu_leaf({2, 7, 3})},
                   [](const Inputs& in) { return in[0].permute({2, 0, 1}).contiguous(); }, Match::bit_exact);
  compare_with_cpu("clone of a slice", {cpu_leaf({33, 2})},
                   [](const Inputs& in) { return in[0].slice(0, 2, 30, 4).clone(); }, Match::bit_exact);
  compare_with_cpu("reshape of a transposed view (a copy)", {cpu_leaf({7, 33})},
                   [](const Inputs& in) { return in[0].t().reshape({3, 77}); }, Match::bit_exact);
  compare_with_cpu("select and expand", {cpu_leaf({7, 1})},
                   [](const Inputs& in) { return in[0].select(0, 6).expand({33, 1}).contiguous() * 2.0f; }, Match::bit_exact);
  // copy_into across devices: what load_state_dict does for a model on the GPU.
  Tensor destination = attend::zeros({2, 3}, cuda);
  attend::copy_into(destination.slice(1, 1, 3), attend::from_vector({1, 2, 3, 4}, {2, 2}));
  CHECK(destination.cpu().to_vector() == std::vector<float>{0, 1, 2, 0, 3, 4});
  REQUIRE_THROWS_MENTIONING(attend::copy_into(attend::zeros({1}, cuda).expand({3}), attend::ones({3}, cuda)),
                            "copy_strided_device", "repeats an element");
}

TEST_CASE("sums on the device have the CPU's bits: sum, mean, sum_to_shape", "[ch11]") {
  using Inputs = std::vector<Tensor>;
  for (const std::vector<int64_t>& dims : std::vector<std::vector<int64_t>>{{0}, {1}, {2}, {0, 2}, {0, 1, 2}}) {
    compare_with_cpu("sum over " + attend::to_string(Shape(dims)), {cpu_leaf({7, 33, 3})},
                     [&](const Inputs& in) { return attend::sum(in[0], dims); }, Match::bit_exact);
    compare_with_cpu("mean over " + attend::to_string(Shape(dims)) + ", keepdim", {cpu_leaf({3, 7, 5})},
                     [&](const Inputs& in) { return attend::mean(in[0], dims, /*keepdim=*/true); }, Match::bit_exact);
  }
  compare_with_cpu("sum of a transposed view", {cpu_leaf({33, 7})},
                   [](const Inputs& in) { return attend::sum(in[0].t(), {1}); }, Match::bit_exact);
  compare_with_cpu("sum and mean of everything", {cpu_leaf({7, 33})},
                   [](const Inputs& in) { return attend::sum(in[0]) + attend::mean(in[0]); }, Match::bit_exact);

  // The gradient of broadcasting, directly: one thread per output element.
  attend::Generator gen(3);
  struct Case {
    Shape grad, target;
  };
  for (const Case& c : std::vector<Case>{{{4, 5, 3}, {5, 1}}, {{4, 5, 3}, {4, 1, 3}}, {{2, 7, 33}, {33}}, {{7, 33}, {7, 1}},
                                          {{1, 7}, {1, 1}}, {{3, 1, 5}, {1, 5}}, {{5}, {}}}) {
    const Tensor grad = attend::randn(c.grad, gen);
    INFO(attend::to_string(c.grad) << " -> " << attend::to_string(c.target));
    const Tensor on_device = attend::sum_to_shape(grad.to(cuda), c.target);
    CHECK(on_device.device() == cuda);
    CHECK(same_bits(on_device, attend::sum_to_shape(grad, c.target)));
  }
  const Tensor g = attend::randn({33, 7}, gen);  // a transposed gradient
  CHECK(same_bits(attend::sum_to_shape(g.to(cuda).t(), {7, 1}), attend::sum_to_shape(g.t(), {7, 1})));
}

TEST_CASE("matmul and linear on the device: batched, broadcast, transposed, with gradients", "[ch11]") {
  using Inputs = std::vector<Tensor>;
  struct Shapes {
    Shape a, b;
  };
  for (const Shapes& s : std::vector<Shapes>{{{1, 1}, {1, 1}},
                                             {{7, 33}, {33, 1}},
                                             {{33, 7}, {7, 33}},
                                             {{2, 7, 5}, {5, 33}},
                                             {{3, 1, 4, 6}, {2, 6, 5}}}) {
    compare_with_cpu("matmul " + attend::to_string(s.a) + " @ " + attend::to_string(s.b),
                     {cpu_leaf(s.a), cpu_leaf(s.b)},
                     [](const Inputs& in) { return attend::matmul(in[0], in[1]); }, Match::close_as_a_sum);
  }
  compare_with_cpu("matmul of transposed views", {cpu_leaf({33, 7}), cpu_leaf({5, 33})},
                   [](const Inputs& in) { return attend::matmul(in[0].t(), in[1].t()); }, Match::close_as_a_sum);
  compare_with_cpu("linear with a bias", {cpu_leaf({2, 7, 33}), cpu_leaf({5, 33}), cpu_leaf({5})},
                   [](const Inputs& in) { return attend::linear(in[0], in[1], in[2]); }, Match::close_as_a_sum);
  compare_with_cpu("linear without a bias", {cpu_leaf({7, 3}), cpu_leaf({33, 3})},
                   [](const Inputs& in) { return attend::linear(in[0], in[1], Tensor()); }, Match::close_as_a_sum);
  // K = 0: the product is zeros.
  CHECK(attend::matmul(attend::ones({3, 0}, cuda), attend::ones({0, 2}, cuda)).cpu().to_vector() ==
        std::vector<float>(6, 0.0f));
}

TEST_CASE("backward on the device: the seed, accumulation, leaves on the device", "[ch11]") {
  // y = x * x + x uses x twice: its gradient 2x + 1 is the sum of two.
  Tensor x = attend::from_vector({-1.0f, 0.5f, 2.0f}, {3}, cuda).set_requires_grad();
  attend::sum(x * x + x).backward();  // the seed, ones, is made on the device
  REQUIRE(x.grad().device() == cuda);
  CHECK(x.grad().cpu().to_vector() == std::vector<float>{-1.0f, 2.0f, 5.0f});
  attend::sum(x * 2.0f).backward();  // a second backward accumulates into .grad
  CHECK(x.grad().cpu().to_vector() == std::vector<float>{1.0f, 4.0f, 7.0f});
  // A bias broadcast over rows gets its gradient summed on the device.
  Tensor bias = attend::zeros({3}, cuda).set_requires_grad();
  attend::sum(attend::ones({4, 3}, cuda) * 2.0f + bias).backward();
  CHECK(bias.grad().cpu().to_vector() == std::vector<float>{4.0f, 4.0f, 4.0f});
}

TEST_CASE("gradcheck works on the device, and fails on a wrong backward there", "[ch11]") {
  attend::Generator gen(7);
  const Tensor a = attend::randn({3, 4}, gen, cuda).set_requires_grad();
  const Tensor b = attend::randn({4, 2}, gen, cuda).set_requires_grad();
  const auto f = [](const std::vector<Tensor>& in) {
    return attend::tanh(attend::matmul(in[0], in[1])) * attend::sum(in[1], {0});
  };
  const attend::GradcheckResult good = attend::gradcheck("matmul-tanh on cuda", f, {a, b});
  INFO(good.message);
  CHECK(good.ok);
  CHECK(good.checked == 20);
  // x^2 on the device with a backward that forgot the factor 2.
  const auto wrong = [](const std::vector<Tensor>& in) {
    Tensor out = (in[0] * in[0]).detach();
    attend::record_op("square_missing_2", out, {in[0]}, [x = in[0].detach()](const Tensor& g) {
      return std::vector<Tensor>{g * x};
    });
    return out;
  };
  const attend::GradcheckResult bad = attend::gradcheck("square_missing_2", wrong, {a});
  CHECK_FALSE(bad.ok);
  CHECK(bad.message.find("gradcheck failed for 'square_missing_2'") != std::string::npos);
}

TEST_CASE("printing and safetensors of a device tensor go through the host", "[ch11]") {
  const Tensor x = attend::from_vector({1.0f, -2.5f, 0.0f, 3.0f}, {2, 2});
  const std::string printed = x.to(cuda).to_string();
  CHECK(printed.find("[[ 1.0000, -2.5000],") != std::string::npos);
  CHECK(printed.find("shape=(2, 2), device=cuda)") != std::string::npos);
  CHECK(x.to_string().find("device") == std::string::npos);

  const std::string bytes = attend::io::encode_safetensors({{"w", x.to(cuda).t()}}, {});
  const attend::io::SafetensorsContents loaded = attend::io::decode_safetensors(bytes, "memory");
  CHECK(same_bits(loaded.tensors.at(0).second, x.t().contiguous()));
  // Loading into a parameter on the device: copy_into moves it there.
  const Tensor parameter = attend::zeros({2, 2}, cuda);
  attend::copy_into(parameter, loaded.tensors.at(0).second);
  CHECK(same_bits(parameter, x.t().contiguous()));
}

TEST_CASE("the caching allocator: a repeated step allocates no new device memory", "[ch11]") {
  attend::Generator gen(1);
  const Tensor w1 = attend::randn({5, 7}, gen, cuda).set_requires_grad();
  const Tensor b1 = attend::zeros({7}, cuda).set_requires_grad();
  const Tensor w2 = attend::randn({3, 7}, gen, cuda).set_requires_grad();
  const Tensor x = attend::randn({8, 5}, gen, cuda);
  const auto step = [&] {
    const Tensor hidden = attend::relu(attend::linear(x, w1.t(), b1));
    const Tensor loss = attend::mean(attend::pow(attend::linear(hidden, w2, Tensor()), 2.0f));
    loss.backward();
    for (Tensor p : {w1, b1, w2}) p.zero_grad();
  };
  step();  // the first step fills the cache
  const kernels::DeviceMemoryStats first = kernels::device_memory_stats();
  step();
  const kernels::DeviceMemoryStats second = kernels::device_memory_stats();
  CHECK(second.device_allocations == first.device_allocations);  // nothing new from the device
  CHECK(second.reuses > first.reuses);
  CHECK(second.bytes_in_use == first.bytes_in_use);  // every temporary went back
  CHECK(second.peak_bytes_in_use >= second.bytes_in_use);
  CHECK(second.bytes_cached > 0);
  CHECK(second.bytes_in_use % kernels::kDeviceBlockRounding == 0);

  // The parameters and x stay in use; the cache can be handed back.
  kernels::empty_device_cache();
  CHECK(kernels::device_memory_stats().bytes_cached == 0);
  CHECK(kernels::device_memory_stats().bytes_in_use == second.bytes_in_use);
  step();
  CHECK(kernels::device_memory_stats().device_allocations > second.device_allocations);
  kernels::reset_peak_device_memory();
  CHECK(kernels::device_memory_stats().peak_bytes_in_use == kernels::device_memory_stats().bytes_in_use);
}
