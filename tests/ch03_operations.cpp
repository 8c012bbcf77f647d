// Chapter 3, Operations (docs/03-operations.md): every op's forward values are
// worked out by hand, every backward is checked against central differences
// (attend::gradcheck) on broadcast and non-contiguous inputs, the fast matmul is
// compared with the reference loop, softmax is checked for stability, and bad
// input must throw a message that names the op and the shapes.
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "attend/attend.hpp"
#include "catch_compat.hpp"
#include "test_tensors.hpp"
#include "test_kernels.hpp"

using namespace attend;
using attend_test::leaf;

namespace {

using Inputs = std::vector<Tensor>;
using Fn = std::function<Tensor(const Inputs&)>;

const float kInf = std::numeric_limits<float>::infinity();

// --- making inputs ---

Tensor randn_leaf(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  Tensor t = randn(shape, gen);
  t.set_requires_grad();
  return t;
}

// Uniform in [lo, hi): inputs of log, sqrt and denominators stay away from 0.
Tensor uniform_leaf(const Shape& shape, uint64_t seed, float lo, float hi) {
  Generator gen(seed);
  std::vector<float> v(static_cast<size_t>(numel(shape)));
  for (float& x : v) x = lo + (hi - lo) * gen.uniform();
  return leaf(v, shape);
}

// Normal values pushed at least 0.2 away from 0 (relu's kink).
Tensor away_from_zero_leaf(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  std::vector<float> v(static_cast<size_t>(numel(shape)));
  for (float& x : v) {
    const float n = gen.normal();
    x = n >= 0.0f ? n + 0.2f : n - 0.2f;
  }
  return leaf(v, shape);
}

// Distinct values 0.1 apart in shuffled order: max has no ties, and a nudge
// of gradcheck's eps (1e-3) never changes which element is the largest.
Tensor distinct_leaf(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  const int64_t n = numel(shape);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = 0.1f * static_cast<float>(i) - 0.05f * static_cast<float>(n);
  for (int64_t i = n - 1; i > 0; --i) std::swap(v[i], v[gen.randint(i + 1)]);  // Fisher-Yates
  return leaf(v, shape);
}

// --- checking values ---

// t has `shape` and, element by element in row-major order, the expected
// values: |got - expected| <= tol * (1 + |expected|); infinities must match exactly.
void check_values(const Tensor& t, const Shape& shape, const std::vector<double>& expected,
                  double tol = 1e-5) {
  REQUIRE(attend::to_string(t.shape()) == attend::to_string(shape));
  REQUIRE(t.dtype() == DType::Float32);
  const std::vector<float> got = t.to_vector();
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", expected " << expected[i]);
    if (std::isinf(expected[i])) {
      CHECK(static_cast<double>(got[i]) == expected[i]);
    } else {
      CHECK(std::fabs(got[i] - expected[i]) <= tol * (1.0 + std::fabs(expected[i])));
    }
  }
}

std::vector<double> as_doubles(const Tensor& t) {
  const std::vector<float> v = t.to_vector();
  return std::vector<double>(v.begin(), v.end());
}

void check_indices(const Tensor& t, const Shape& shape, const std::vector<int64_t>& expected) {
  REQUIRE(attend::to_string(t.shape()) == attend::to_string(shape));
  REQUIRE(t.dtype() == DType::Int64);
  CHECK(t.to_index_vector() == expected);
}

// gradcheck must pass and must have compared every element of every input
// that requires grad.
void check_grad(const std::string& name, const Fn& f, const Inputs& inputs,
                const GradcheckOptions& options = {}) {
  const GradcheckResult result = gradcheck(name, f, inputs, options);
  INFO(result.message);
  REQUIRE(result.ok);
  int64_t expected_checked = 0;
  for (const Tensor& t : inputs) {
    if (t.defined() && t.requires_grad()) expected_checked += t.numel();
  }
  REQUIRE(result.checked == expected_checked);
}

// sum(out * g).backward() for a given output gradient g; returns x.grad().
Tensor grad_of(const Tensor& x, const Tensor& out, const Tensor& g) {
  out.backward(g);
  REQUIRE(x.grad().defined());
  return x.grad();
}

}  // namespace

// ===================================================================
// Elementwise ops
// ===================================================================

TEST_CASE("add, sub, mul, div: forward values with broadcasting", "[ch03]") {
  const Tensor a = from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor b = from_vector({10, 20, 30}, {3});  // (3,) broadcasts over the rows of a
  check_values(add(a, b), {2, 3}, {11, 22, 33, 14, 25, 36});
  check_values(sub(a, b), {2, 3}, {-9, -18, -27, -6, -15, -24});
  check_values(mul(a, b), {2, 3}, {10, 40, 90, 40, 100, 180});
  // 1/10, 2/20, 3/30, 4/10, 5/20, 6/30
  check_values(div(a, b), {2, 3}, {0.1, 0.1, 0.1, 0.4, 0.25, 0.2});
  // (2, 1) + (3,) -> (2, 3): [1] + [10 20 30], [2] + [10 20 30]
  const Tensor column = from_vector({1, 2}, {2, 1});
  check_values(add(column, b), {2, 3}, {11, 21, 31, 12, 22, 32});
  // a 0-d tensor broadcasts against anything
  check_values(mul(a, scalar_tensor(2.0f)), {2, 3}, {2, 4, 6, 8, 10, 12});
  check_values(sub(scalar_tensor(1.0f), a), {2, 3}, {0, -1, -2, -3, -4, -5});
  // non-contiguous input: a^T is (3, 2) = [[1 4] [2 5] [3 6]]; + [100 200]
  check_values(add(a.t(), from_vector({100, 200}, {2})), {3, 2}, {101, 204, 102, 205, 103, 206});
}

TEST_CASE("scalar operator overloads", "[ch03]") {
  const Tensor x = from_vector({1, 2, 4}, {3});
  const Tensor y = from_vector({2, 2, 8}, {3});
  check_values(x + 2.0f, {3}, {3, 4, 6});
  check_values(2.0f + x, {3}, {3, 4, 6});
  check_values(x - 1.0f, {3}, {0, 1, 3});
  check_values(1.0f - x, {3}, {0, -1, -3});
  check_values(x * 3.0f, {3}, {3, 6, 12});
  check_values(3.0f * x, {3}, {3, 6, 12});
  check_values(x / 2.0f, {3}, {0.5, 1, 2});
  check_values(2.0f / x, {3}, {2, 1, 0.5});
  check_values(-x, {3}, {-1, -2, -4});
  check_values(add(x, 0.5f), {3}, {1.5, 2.5, 4.5});
  check_values(mul(x, -2.0f), {3}, {-2, -4, -8});
  check_values(x + y, {3}, {3, 4, 12});
  check_values(x - y, {3}, {-1, 0, -4});
  check_values(x * y, {3}, {2, 4, 32});
  check_values(x / y, {3}, {0.5, 1, 0.5});

  SECTION("their gradients") {
    // y = 3x - 2/x  =>  dy/dx = 3 + 2/x^2 = 3.5 at x = 2, 5 at x = 1
    Tensor v = leaf({2, 1}, {2});
    const Tensor out = 3.0f * v - 2.0f / v;
    check_values(grad_of(v, out, ones({2})), {2}, {3.5, 5});

    const Tensor p = uniform_leaf({2, 3}, 5, 0.5f, 1.5f);
    check_grad("scalar overloads",
               [](const Inputs& in) {
                 const Tensor& t = in[0];
                 return 1.0f + (2.0f - t * 3.0f) / 2.0f - 4.0f / (t + 3.0f) + (-t) * (t - 1.0f) +
                        add(mul(t, 0.5f), 2.0f) * (t / 4.0f);
               },
               {p});
  }
}

TEST_CASE("unary ops: forward values worked out by hand", "[ch03]") {
  check_values(neg(from_vector({-1, 0.5, 2}, {3})), {3}, {1, -0.5, -2});
  check_values(pow(from_vector({-1, 0.5, 2}, {3}), 2.0f), {3}, {1, 0.25, 4});
  check_values(pow(from_vector({-1, 0.5, 2}, {3}), 3.0f), {3}, {-1, 0.125, 8});
  check_values(pow(from_vector({4, 0.25, 9}, {3}), 0.5f), {3}, {2, 0.5, 3});
  check_values(pow(from_vector({4, 0.25, 2}, {3}), -1.0f), {3}, {0.25, 4, 0.5});
  // e^0 = 1, e^1 = 2.718281828, e^-1 = 0.367879441
  check_values(exp(from_vector({0, 1, -1}, {3})), {3}, {1, 2.718281828, 0.367879441});
  // ln 1 = 0, ln e = 1, ln 0.5 = -0.693147181
  check_values(log(from_vector({1, 2.718281828f, 0.5}, {3})), {3}, {0, 1, -0.693147181});
  check_values(sqrt(from_vector({0, 4, 2.25}, {3})), {3}, {0, 2, 1.5});
  // tanh 0.5 = (e - 1)/(e + 1) = 0.462117157, tanh(-1) = -0.761594156
  check_values(tanh(from_vector({0, 0.5, -1}, {3})), {3}, {0, 0.462117157, -0.761594156});
  // sigmoid 2 = 1/(1 + e^-2) = 1/1.135335283 = 0.880797078; sigmoid(-2) = 1 - that
  check_values(sigmoid(from_vector({0, 2, -2}, {3})), {3}, {0.5, 0.880797078, 0.119202922});
  check_values(relu(from_vector({-2, 0, 3, -0.5}, {4})), {4}, {0, 0, 3, 0});

  SECTION("sigmoid does not overflow for large inputs") {
    const std::vector<float> s = sigmoid(from_vector({100, -100, 1000, -1000}, {4})).to_vector();
    CHECK(s[0] == 1.0f);
    CHECK((s[1] >= 0.0f && s[1] < 1e-30f));  // e^-100 = 3.7e-44
    CHECK(s[2] == 1.0f);
    CHECK(s[3] == 0.0f);
  }
}

TEST_CASE("gelu is the tanh form 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))", "[ch03]") {
  // By hand at x = 1: u = 0.797884561 * (1 + 0.044715) = 0.833554; tanh u = 0.682384;
  // 0.5 * 1 * 1.682384 = 0.841192. The others the same way.
  const std::vector<float> xs{0, 1, -1, 2, -3, 0.5};
  const std::vector<double> by_hand{0, 0.841191991, -0.158808009, 1.954597694, -0.003637392, 0.345714010};
  check_values(gelu(from_vector(xs, {6})), {6}, by_hand);
  // And against the formula evaluated in double on many points.
  const Tensor grid = arange(-4.0f, 4.0f, 0.25f);
  const std::vector<float> out = gelu(grid).to_vector();
  const std::vector<float> in = grid.to_vector();
  const double k = std::sqrt(2.0 / 3.14159265358979323846);
  for (size_t i = 0; i < in.size(); ++i) {
    const double x = in[i];
    const double expected = 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
    INFO("x = " << x);
    CHECK(std::fabs(out[i] - expected) <= 1e-6);
  }
}

TEST_CASE("elementwise binary ops: gradient checks with broadcasting and views", "[ch03]") {
  using Binary = std::function<Tensor(const Tensor&, const Tensor&)>;
  struct Case {
    std::string name;
    Binary op;
    bool positive;  // div needs denominators away from 0
  };
  const std::vector<Case> cases{
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }, false},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }, false},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, false},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }, true},
  };
  for (const Case& c : cases) {
    INFO("op: " << c.name);
    auto make = [&c](const Shape& shape, uint64_t seed) {
      return c.positive ? uniform_leaf(shape, seed, 0.5f, 2.0f) : randn_leaf(shape, seed);
    };
    const Binary op = c.op;
    // (2, 3, 4) with (3, 1): b is broadcast over dims 0 and 2
    check_grad(c.name + " (2,3,4) with (3,1)", [op](const Inputs& v) { return op(v[0], v[1]); },
               {make({2, 3, 4}, 1), make({3, 1}, 2)});
    // with a 0-d tensor, on either side
    const Tensor s = make({}, 3);
    const Tensor m = make({2, 3}, 4);
    check_grad(c.name + " (2,3) with ()", [op](const Inputs& v) { return op(v[0], v[1]); }, {m, s});
    check_grad(c.name + " () with (2,3)", [op](const Inputs& v) { return op(v[1], v[0]); }, {m, s});
    // non-contiguous: a transposed (4,3) -> (3,4); every other element of (8,) -> (4,)
    check_grad(c.name + " transposed with strided",
               [op](const Inputs& v) { return op(v[0].transpose(0, 1), v[1].slice(0, 0, 8, 2)); },
               {make({4, 3}, 5), make({8}, 6)});
    // the same tensor on both sides: the two gradients add up
    check_grad(c.name + " x with itself", [op](const Inputs& v) { return op(v[0], v[0]); },
               {make({2, 3}, 7)});
  }
}

TEST_CASE("unary ops: gradient checks on contiguous and strided inputs", "[ch03]") {
  using Unary = std::function<Tensor(const Tensor&)>;
  struct Case {
    std::string name;
    Unary op;
    Tensor input;  // (3, 4), chosen away from each op's kinks and poles
  };
  const std::vector<Case> cases{
      {"neg", [](const Tensor& x) { return neg(x); }, randn_leaf({3, 4}, 11)},
      {"pow 2", [](const Tensor& x) { return pow(x, 2.0f); }, randn_leaf({3, 4}, 12)},
      {"pow 3", [](const Tensor& x) { return pow(x, 3.0f); }, randn_leaf({3, 4}, 13)},
      {"pow 0.5", [](const Tensor& x) { return pow(x, 0.5f); }, uniform_leaf({3, 4}, 14, 0.5f, 2.0f)},
      {"pow -1.5", [](const Tensor& x) { return pow(x, -1.5f); }, uniform_leaf({3, 4}, 15, 0.5f, 2.0f)},
      {"exp", [](const Tensor& x) { return exp(x); }, randn_leaf({3, 4}, 16)},
      {"log", [](const Tensor& x) { return log(x); }, uniform_leaf({3, 4}, 17, 0.5f, 3.0f)},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, uniform_leaf({3, 4}, 18, 0.5f, 3.0f)},
      {"tanh", [](const Tensor& x) { return tanh(x); }, randn_leaf({3, 4}, 19)},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, randn_leaf({3, 4}, 20)},
      {"relu", [](const Tensor& x) { return relu(x); }, away_from_zero_leaf({3, 4}, 21)},
      {"gelu", [](const Tensor& x) { return gelu(x); }, randn_leaf({3, 4}, 22)},
  };
  for (const Case& c : cases) {
    const Unary op = c.op;
    check_grad(c.name, [op](const Inputs& v) { return op(v[0]); }, {c.input});
    // transposed (3,4) -> (4,3), then rows 0 and 2 of that: a (2,3) strided view
    check_grad(c.name + " (transposed, strided)",
               [op](const Inputs& v) { return op(v[0].transpose(0, 1).slice(0, 0, 4, 2)); }, {c.input});
  }
}

TEST_CASE("relu lets NaN through instead of hiding it", "[ch03]") {
  const std::vector<float> y = relu(from_vector({std::nanf(""), -1.0f, 2.0f}, {3})).to_vector();
  CHECK(std::isnan(y[0]));
  CHECK(y[1] == 0.0f);
  CHECK(y[2] == 2.0f);
}

TEST_CASE("relu passes gradient only where the input is positive", "[ch03]") {
  Tensor x = leaf({-2, 3, -0.5, 1}, {4});
  check_values(grad_of(x, relu(x), from_vector({10, 20, 30, 40}, {4})), {4}, {0, 20, 0, 40});
}

// ===================================================================
// Reductions
// ===================================================================

TEST_CASE("sum, mean, max over dims with keepdim: forward values", "[ch03]") {
  // x[i][j][k] = 12 i + 4 j + k, shape (2, 3, 4)
  const Tensor x = arange(24).reshape({2, 3, 4});

  // over j: sum_j (12 i + 4 j + k) = 36 i + 12 + 3 k
  check_values(sum(x, {1}), {2, 4}, {12, 15, 18, 21, 48, 51, 54, 57});
  check_values(sum(x, {1}, true), {2, 1, 4}, {12, 15, 18, 21, 48, 51, 54, 57});
  // over i and k: sum_i sum_k (12 i + 4 j + k) = 48 + 32 j + 12 = 60 + 32 j
  check_values(sum(x, {0, 2}), {3}, {60, 92, 124});
  check_values(sum(x, {2, 0}, true), {1, 3, 1}, {60, 92, 124});
  // over the last dim (negative dim): 4 (12 i + 4 j) + 6
  check_values(sum(x, {-1}), {2, 3}, {6, 22, 38, 54, 70, 86});
  // everything: 0 + 1 + ... + 23 = 23 * 24 / 2 = 276, a 0-d tensor
  check_values(sum(x), {}, {276});

  check_values(mean(x, {-1}, true), {2, 3, 1}, {1.5, 5.5, 9.5, 13.5, 17.5, 21.5});
  // over i and j: mean of 12 i + 4 j + k = 6 + 4 + k
  check_values(mean(x, {0, 1}), {4}, {10, 11, 12, 13});
  check_values(mean(x), {}, {11.5});

  // on a non-contiguous view: x^T over (0, 2) is (4, 3, 2); summing its dim 0 sums x's dim 2
  check_values(sum(x.transpose(0, 2), {0}), {3, 2}, {6, 54, 22, 70, 38, 86});

  const Tensor y = from_vector({1, 7, 3, 9, -2, 4}, {2, 3});
  check_values(max(y, {1}), {2}, {7, 9});
  check_values(max(y, {0}, true), {1, 3}, {9, 7, 4});
  check_values(max(y, {0, 1}), {}, {9});
  check_values(max(y), {}, {9});
  // 0-d inputs reduce to themselves
  check_values(sum(scalar_tensor(2.5f)), {}, {2.5});
  check_values(mean(scalar_tensor(2.5f)), {}, {2.5});
  check_values(max(scalar_tensor(2.5f)), {}, {2.5});
}

TEST_CASE("argmax: index of the first maximum, as int64", "[ch03]") {
  const Tensor y = from_vector({1, 7, 3, 9, -2, 9}, {2, 3});
  check_indices(argmax(y, 1), {2}, {1, 0});  // row 1 has 9 twice: the first wins
  check_indices(argmax(y, -1, true), {2, 1}, {1, 0});
  check_indices(argmax(y, 0), {3}, {1, 0, 1});
  check_indices(argmax(y.t(), 0), {2}, {1, 0});  // transposed view
}

TEST_CASE("reductions: gradient checks", "[ch03]") {
  const Tensor x = distinct_leaf({2, 3, 4}, 31);
  check_grad("sum dim 1 keepdim", [](const Inputs& v) { return sum(v[0], {1}, true); }, {x});
  check_grad("sum dims 0,2", [](const Inputs& v) { return sum(v[0], {0, 2}); }, {x});
  check_grad("sum all", [](const Inputs& v) { return sum(v[0]); }, {x});
  check_grad("sum of transposed", [](const Inputs& v) { return sum(v[0].transpose(0, 2), {0, 2}, true); }, {x});
  check_grad("mean dim -1", [](const Inputs& v) { return mean(v[0], {-1}); }, {x});
  check_grad("mean dims 0,1 keepdim", [](const Inputs& v) { return mean(v[0], {0, 1}, true); }, {x});
  check_grad("mean all", [](const Inputs& v) { return mean(v[0]); }, {x});
  check_grad("mean of strided", [](const Inputs& v) { return mean(v[0].slice(2, 1, 4, 2), {1}); }, {x});
  check_grad("max dim -1", [](const Inputs& v) { return max(v[0], {-1}); }, {x});
  check_grad("max dims 0,1 keepdim", [](const Inputs& v) { return max(v[0], {0, 1}, true); }, {x});
  check_grad("max all", [](const Inputs& v) { return max(v[0]); }, {x});
  check_grad("max of transposed", [](const Inputs& v) { return max(v[0].transpose(1, 2), {1}); }, {x});
  // keepdim makes the result broadcast back: x - mean(x)
  check_grad("x - mean(x, keepdim)", [](const Inputs& v) { return v[0] - mean(v[0], {-1}, true); }, {x});
  const Tensor s = leaf({1.5}, {});
  check_grad("sum of 0-d", [](const Inputs& v) { return sum(v[0]) * 3.0f; }, {s});
}

TEST_CASE("max: on ties the gradient goes to the first maximum only", "[ch03]") {
  Tensor x = leaf({2, 5, 5, 1, 1, 0}, {2, 3});
  // row 0: 5 at positions 1 and 2 -> position 1; row 1: 1 at 0 and 1 -> position 0
  check_values(grad_of(x, max(x, {1}), from_vector({10, 20}, {2})), {2, 3}, {0, 10, 0, 20, 0, 0});
}

// ===================================================================
// Matmul
// ===================================================================

TEST_CASE("matmul: small products by hand", "[ch03]") {
  // [[1 2] [3 4]] @ [[5 6] [7 8]] = [[1*5 + 2*7, 1*6 + 2*8], [3*5 + 4*7, 3*6 + 4*8]]
  const Tensor a = from_vector({1, 2, 3, 4}, {2, 2});
  const Tensor b = from_vector({5, 6, 7, 8}, {2, 2});
  check_values(matmul(a, b), {2, 2}, {19, 22, 43, 50});
  // a^T @ b = [[1 3] [2 4]] @ [[5 6] [7 8]] = [[26 30] [38 44]] (a non-contiguous input)
  check_values(matmul(a.t(), b), {2, 2}, {26, 30, 38, 44});
  // (2, 3) @ (3, 1): [1 2 3].[1 0 -1] = -2, [4 5 6].[1 0 -1] = -2
  check_values(matmul(from_vector({1, 2, 3, 4, 5, 6}, {2, 3}), from_vector({1, 0, -1}, {3, 1})),
               {2, 1}, {-2, -2});
  // batched, with the 2-D right side broadcast over the batch:
  // (2, 1, 2) @ (2, 1): [1 2].[1 10] = 21, [3 4].[1 10] = 43
  check_values(matmul(from_vector({1, 2, 3, 4}, {2, 1, 2}), from_vector({1, 10}, {2, 1})),
               {2, 1, 1}, {21, 43});
  // (2, 1, 1, 2) @ (3, 2, 1) -> (2, 3, 1, 1): [p q].[r s] for p q in {[1 2], [3 4]},
  // r s in {[1 0], [0 1], [1 1]}
  check_values(matmul(from_vector({1, 2, 3, 4}, {2, 1, 1, 2}), from_vector({1, 0, 0, 1, 1, 1}, {3, 2, 1})),
               {2, 3, 1, 1}, {1, 2, 3, 3, 4, 7});
}

namespace {

// The largest |got - want| in units of the tolerance 1e-5 (1 + |want|):
// at most 1 means every element agrees.
double scaled_error(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  double worst = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double error = std::fabs(static_cast<double>(got[i]) - want[i]) / (1e-5 * (1.0 + std::fabs(want[i])));
    if (!(error <= worst)) worst = error;  // also catches NaN
  }
  return worst;
}

// The reference product of two 2-D tensors (any layout), as a row-major vector.
std::vector<float> reference_product(const Tensor& a, const Tensor& b) {
  const Tensor ac = a.contiguous(), bc = b.contiguous();
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  std::vector<float> c(static_cast<size_t>(M * N));
  kernels::matmul_reference(ac.data(), bc.data(), c.data(), M, K, N);
  return c;
}

}  // namespace

TEST_CASE("matmul: the fast kernels and attend::matmul agree with the reference loop on odd sizes", "[ch03]") {
  // Sizes that are not multiples of any tile (1, 3, 17, 65) in every combination,
  // e.g. (17, 65) @ (65, 3); the largest are big enough to run on several threads.
  const std::vector<int64_t> sizes{1, 3, 17, 65};
  Generator gen(41);
  for (const std::string& kernel : kernels::matmul_runnable_kernels()) {
    const attend_test::UseKernel use(kernel);
    INFO("micro-kernel: " << kernels::matmul_kernel_name());
    for (int64_t M : sizes) {
      for (int64_t K : sizes) {
        for (int64_t N : sizes) {
          INFO("(" << M << ", " << K << ") @ (" << K << ", " << N << ")");
          Tensor a = randn({M, K}, gen);
          Tensor b = randn({K, N}, gen);
          Tensor a_stored_transposed = randn({K, M}, gen);  // a2 = its .t(): strides (1, M)
          const std::vector<float> reference = reference_product(a, b);
          const int64_t zero = 0;

          std::vector<float> fast(static_cast<size_t>(M * N), -1.0f);
          kernels::matmul_batched(a.data(), &zero, b.data(), &zero, fast.data(), 1, M, K, N);
          CHECK(scaled_error(fast, reference) <= 1.0);

          std::vector<float> simple(static_cast<size_t>(M * N), -1.0f);
          kernels::matmul_blocked_simple(a.data(), &zero, b.data(), &zero, simple.data(), 1, M, K, N);
          CHECK(scaled_error(simple, reference) <= 1.0);

          CHECK(scaled_error(matmul(a, b).to_vector(), reference) <= 1.0);

          // a read through transposed strides, by the kernel and by the op
          const Tensor a2 = a_stored_transposed.t();
          const std::vector<float> reference2 = reference_product(a2, b);
          std::vector<float> strided(static_cast<size_t>(M * N), -1.0f);
          kernels::matmul_strided({a_stored_transposed.data(), &zero, 1, M}, {b.data(), &zero, N, 1},
                                  strided.data(), 1, M, K, N);
          CHECK(scaled_error(strided, reference2) <= 1.0);
          CHECK(scaled_error(matmul(a2, b).to_vector(), reference2) <= 1.0);
        }
      }
    }
  }
  // by hand: 1x1 @ 1x1
  const float one_a = 3.0f, one_b = -2.0f;
  float one_c = 0.0f;
  kernels::matmul_reference(&one_a, &one_b, &one_c, 1, 1, 1);
  CHECK(one_c == -6.0f);
}

TEST_CASE("matmul: strided, offset, expanded and permuted inputs give the reference product", "[ch03]") {
  Generator gen(42);
  const Tensor big = randn({9, 7}, gen);
  const Tensor right = randn({7, 5}, gen);
  // rows 1, 3, 5, 7 (an offset and a row stride of 14) and columns 0, 2, 4 (stride 2)
  const Tensor rows = big.slice(0, 1, 9, 2);
  CHECK(scaled_error(matmul(rows, right).to_vector(), reference_product(rows, right)) <= 1.0);
  const Tensor cols = big.slice(1, 0, 7, 2);  // (9, 4)
  const Tensor right4 = randn({4, 3}, gen);
  CHECK(scaled_error(matmul(cols, right4).to_vector(), reference_product(cols, right4)) <= 1.0);
  // an expanded operand: a column of b repeated (column stride 0), a row of a repeated (row stride 0)
  const Tensor column = randn({7, 1}, gen).expand({7, 5});
  CHECK(scaled_error(matmul(big, column).to_vector(), reference_product(big, column)) <= 1.0);
  const Tensor row = randn({1, 7}, gen).expand({4, 7});
  CHECK(scaled_error(matmul(row, right).to_vector(), reference_product(row, right)) <= 1.0);
  // a permuted batch: (3, 4, 2) -> (2, 3, 4), then @ (2, 4, 3)
  const Tensor p = randn({3, 4, 2}, gen).permute({2, 0, 1});
  const Tensor q = randn({2, 4, 3}, gen);
  const Tensor pq = matmul(p, q);
  REQUIRE(attend::to_string(pq.shape()) == "(2, 3, 3)");
  for (int64_t i = 0; i < 2; ++i) {
    INFO("batch " << i);
    CHECK(scaled_error(pq.select(0, i).to_vector(), reference_product(p.select(0, i), q.select(0, i))) <= 1.0);
  }
  // the same results as multiplying contiguous copies
  CHECK(max_abs_diff(matmul(p, q), matmul(p.contiguous(), q.contiguous())) <= 1e-5f);
}

TEST_CASE("matmul: batched with broadcast batch dims matches per-batch reference products", "[ch03]") {
  Generator gen(43);
  const Tensor a = randn({2, 1, 5, 7}, gen);
  const Tensor b = randn({3, 7, 4}, gen);
  const Tensor c = matmul(a, b);  // batch dims (2, 1) and (3,) broadcast to (2, 3)
  REQUIRE(attend::to_string(c.shape()) == "(2, 3, 5, 4)");

  // The kernel directly: matrix (i, j) reads a[i, 0] and b[j] (repeated offsets).
  std::vector<int64_t> a_offsets, b_offsets;
  for (int64_t i = 0; i < 2; ++i) {
    for (int64_t j = 0; j < 3; ++j) {
      a_offsets.push_back(i * 5 * 7);
      b_offsets.push_back(j * 7 * 4);
    }
  }
  std::vector<float> batched(6 * 5 * 4);
  kernels::matmul_batched(a.data(), a_offsets.data(), b.data(), b_offsets.data(), batched.data(), 6, 5,
                          7, 4);

  for (int64_t i = 0; i < 2; ++i) {
    for (int64_t j = 0; j < 3; ++j) {
      const Tensor ai = a.select(0, i).select(0, 0).contiguous();
      const Tensor bj = b.select(0, j).contiguous();
      std::vector<float> reference(5 * 4);
      kernels::matmul_reference(ai.data(), bj.data(), reference.data(), 5, 7, 4);
      const std::vector<float> got = c.select(0, i).select(0, j).to_vector();
      INFO("batch (" << i << ", " << j << ")");
      for (size_t k = 0; k < reference.size(); ++k) {
        CHECK(std::fabs(got[k] - reference[k]) <= 1e-5 * (1.0 + std::fabs(reference[k])));
        CHECK(std::fabs(batched[(i * 3 + j) * 20 + k] - reference[k]) <= 1e-5 * (1.0 + std::fabs(reference[k])));
      }
    }
  }

  // 3-D @ 2-D, with the left side a transposed (non-contiguous) view.
  const Tensor left = randn({4, 7, 5}, gen).transpose(1, 2);  // (4, 5, 7)
  const Tensor right = randn({7, 3}, gen);
  const Tensor prod = matmul(left, right);
  REQUIRE(attend::to_string(prod.shape()) == "(4, 5, 3)");
  for (int64_t p = 0; p < 4; ++p) {
    const Tensor lp = left.select(0, p).contiguous();
    std::vector<float> reference(5 * 3);
    kernels::matmul_reference(lp.data(), right.data(), reference.data(), 5, 7, 3);
    const std::vector<float> got = prod.select(0, p).to_vector();
    for (size_t k = 0; k < reference.size(); ++k) {
      CHECK(std::fabs(got[k] - reference[k]) <= 1e-5 * (1.0 + std::fabs(reference[k])));
    }
  }
}

TEST_CASE("matmul: gradient checks, 2-D, batched with broadcast, non-contiguous", "[ch03]") {
  check_grad("matmul (3,4) @ (4,2)", [](const Inputs& v) { return matmul(v[0], v[1]); },
             {randn_leaf({3, 4}, 51), randn_leaf({4, 2}, 52)});
  // batch dims (2, 1) and (3,) broadcast to (2, 3): a's gradient is summed over the 3, b's over the 2
  check_grad("matmul (2,1,2,3) @ (3,3,2)", [](const Inputs& v) { return matmul(v[0], v[1]); },
             {randn_leaf({2, 1, 2, 3}, 53), randn_leaf({3, 3, 2}, 54)});
  check_grad("matmul (2,2,3) @ (3,2)", [](const Inputs& v) { return matmul(v[0], v[1]); },
             {randn_leaf({2, 2, 3}, 55), randn_leaf({3, 2}, 56)});
  // a transposed (3,2) -> (2,3); rows 0, 2, 4 of a (6,4) -> (3,4)
  check_grad("matmul transposed @ strided",
             [](const Inputs& v) { return matmul(v[0].transpose(0, 1), v[1].slice(0, 0, 6, 2)); },
             {randn_leaf({3, 2}, 57), randn_leaf({6, 4}, 58)});
  // 3-D @ 2-D with a transposed or expanded left side (the shared-b gradient path)
  check_grad("matmul transposed (2,2,3) @ (3,2)",
             [](const Inputs& v) { return matmul(v[0].transpose(1, 2), v[1]); },
             {randn_leaf({2, 3, 2}, 60), randn_leaf({3, 2}, 61)});
  check_grad("matmul expanded (1,3,4) -> (2,3,4) @ (4,2)",
             [](const Inputs& v) { return matmul(v[0].expand({2, 3, 4}), v[1]); },
             {randn_leaf({1, 3, 4}, 62), randn_leaf({4, 2}, 63)});
  // x @ x^T: one tensor on both sides
  check_grad("matmul x @ x^T", [](const Inputs& v) { return matmul(v[0], v[0].t()); }, {randn_leaf({3, 2}, 59)});
}

// ===================================================================
// Softmax
// ===================================================================

TEST_CASE("softmax and log_softmax: values by hand", "[ch03]") {
  // e^1 = 2.718281828, e^2 = 7.389056099, e^3 = 20.085536923; total 30.192874850
  // softmax = (0.090030573, 0.244728471, 0.665240956)
  // log_softmax = x - ln 30.192874850 = x - 3.407605964
  const Tensor x = from_vector({1, 2, 3}, {3});
  check_values(softmax(x, 0), {3}, {0.090030573, 0.244728471, 0.665240956});
  check_values(log_softmax(x, -1), {3}, {-2.407605964, -1.407605964, -0.407605964});
  // Along dim 0 of a (3, 2): column 0 is [1 2 3], column 1 is constant -> 1/3 each.
  const Tensor m = from_vector({1, 0, 2, 0, 3, 0}, {3, 2});
  check_values(softmax(m, 0), {3, 2},
               {0.090030573, 1.0 / 3, 0.244728471, 1.0 / 3, 0.665240956, 1.0 / 3});
  check_values(log_softmax(m, 0), {3, 2},
               {-2.407605964, -1.098612289, -1.407605964, -1.098612289, -0.407605964, -1.098612289});
  // The same along dim 1 of the transposed (non-contiguous) view.
  check_values(softmax(m.t(), 1), {2, 3},
               {0.090030573, 0.244728471, 0.665240956, 1.0 / 3, 1.0 / 3, 1.0 / 3});
  // Each row sums to 1.
  Generator gen(61);
  const Tensor r = randn({4, 5}, gen);
  check_values(sum(softmax(r, 1), {1}), {4}, {1, 1, 1, 1});
  check_values(exp(log_softmax(r, 1)), {4, 5}, as_doubles(softmax(r, 1)));
}

TEST_CASE("softmax and log_softmax are stable for inputs of magnitude 1000", "[ch03]") {
  // softmax(x) = softmax(x - max): [1000 1001 1002] gives the same as [1 2 3].
  const Tensor big = from_vector({1000, 1001, 1002}, {3});
  check_values(softmax(big, 0), {3}, {0.090030573, 0.244728471, 0.665240956});
  // log_softmax = x - (1002 + ln(e^-2 + e^-1 + 1)); floats near 1000 are 6e-5 apart
  check_values(log_softmax(big, 0), {3}, {-2.407605964, -1.407605964, -0.407605964}, 1e-4);
  // [-1000 0 1000]: e^-2000 and e^-1000 vanish next to e^0, so softmax = [0 0 1] and
  // log_softmax = x - 1000 - ln(1 + e^-1000 + e^-2000) = [-2000 -1000 0].
  const Tensor wide = from_vector({-1000, 0, 1000}, {3});
  check_values(softmax(wide, 0), {3}, {0, 0, 1});
  check_values(log_softmax(wide, 0), {3}, {-2000, -1000, 0});
  // Negative magnitudes too: [-1000 -1001 -1002] is [0 -1 -2] shifted.
  check_values(softmax(from_vector({-1000, -1001, -1002}, {3}), 0), {3},
               {0.665240956, 0.244728471, 0.090030573});
  // The gradients stay finite.
  Tensor x = leaf({1000, 1001, 1002, -1000, 0, 1000}, {2, 3});
  const Tensor y = add(softmax(x, 1), log_softmax(x, 1));
  y.backward(from_vector({1, 0, 0, 0, 1, 0}, {2, 3}));
  for (float g : x.grad().to_vector()) CHECK(std::isfinite(g));
}

TEST_CASE("softmax of a row that is entirely -inf is zeros (a design choice)", "[ch03]") {
  // A fully masked attention row has no distribution; src/ops/softmax.cpp returns
  // zeros there instead of 0/0 = NaN. A partly masked row ignores its -inf entries:
  // [0 -inf 0] -> [1/2 0 1/2].
  Tensor x = leaf({-kInf, -kInf, -kInf, 0, -kInf, 0}, {2, 3});
  const Tensor y = softmax(x, 1);
  check_values(y, {2, 3}, {0, 0, 0, 0.5, 0, 0.5});
  // Its gradient is zero where the output is zero: y_i (g_i - sum_j g_j y_j)
  // row 1 with g = [4 5 6]: sum g y = 5, so dx = [0.5 (4 - 5), 0, 0.5 (6 - 5)]
  check_values(grad_of(x, y, from_vector({1, 2, 3, 4, 5, 6}, {2, 3})), {2, 3}, {0, 0, 0, -0.5, 0, 0.5});
  // log_softmax of a partly masked row: log(1/2) where finite, -inf where masked.
  check_values(log_softmax(from_vector({0, -kInf, 0}, {3}), 0), {3}, {-0.693147181, -kInf, -0.693147181});
}

TEST_CASE("softmax and log_softmax: gradient checks along each dim", "[ch03]") {
  const Tensor x = randn_leaf({2, 3, 4}, 71);
  for (int64_t dim : {0, 1, 2, -1}) {
    INFO("dim " << dim);
    check_grad("softmax", [dim](const Inputs& v) { return softmax(v[0], dim); }, {x});
    check_grad("log_softmax", [dim](const Inputs& v) { return log_softmax(v[0], dim); }, {x});
  }
  // non-contiguous: along dim 1 of the (4, 3, 2) transposed view, and of a strided one
  check_grad("softmax of transposed", [](const Inputs& v) { return softmax(v[0].transpose(0, 2), 1); }, {x});
  check_grad("log_softmax of strided",
             [](const Inputs& v) { return log_softmax(v[0].slice(2, 0, 4, 2), -1); }, {x});
  // after a broadcasting op: softmax(x + bias) with bias (4,)
  check_grad("softmax(x + bias)", [](const Inputs& v) { return softmax(v[0] + v[1], -1); },
             {x, randn_leaf({4}, 72)});
}

// ===================================================================
// gradcheck catches a wrong backward
// ===================================================================

namespace {

// softmax with its correct backward, y_i (g_i - sum_j g_j y_j), built with record_op...
Tensor softmax_custom(const Tensor& x) {
  Tensor out = softmax(x.detach(), -1);
  record_op("softmax_custom", out, {x}, [y = out.detach()](const Tensor& g) {
    return std::vector<Tensor>{y * (g - sum(g * y, {-1}, true))};
  });
  return out;
}

// ...and with the subtracted sum forgotten: y_i g_i.
Tensor softmax_missing_sum(const Tensor& x) {
  Tensor out = softmax(x.detach(), -1);
  record_op("softmax_missing_sum", out, {x}, [y = out.detach()](const Tensor& g) {
    return std::vector<Tensor>{y * g};
  });
  return out;
}

// matmul whose backward forgets the transposes: dA = g B, dB = A g (square
// matrices, so the shapes still fit and only the values are wrong).
Tensor matmul_no_transpose(const Tensor& a, const Tensor& b) {
  Tensor out = matmul(a.detach(), b.detach());
  record_op("matmul_no_transpose", out, {a, b}, [a, b](const Tensor& g) {
    return std::vector<Tensor>{matmul(g, b), matmul(a, g)};
  });
  return out;
}

// sqrt whose backward forgets the 2: g / sqrt(x) instead of g / (2 sqrt(x)).
Tensor sqrt_missing_half(const Tensor& x) {
  Tensor out = sqrt(x.detach());
  record_op("sqrt_missing_half", out, {x}, [y = out.detach()](const Tensor& g) {
    return std::vector<Tensor>{g / y};
  });
  return out;
}

}  // namespace

TEST_CASE("gradcheck rejects a wrong backward", "[ch03]") {
  const Tensor x = randn_leaf({2, 4}, 81);

  // The control: the same construction with the right formula passes.
  check_grad("softmax_custom", [](const Inputs& v) { return softmax_custom(v[0]); }, {x});

  const GradcheckResult bad_softmax =
      gradcheck("softmax_missing_sum", [](const Inputs& v) { return softmax_missing_sum(v[0]); }, {x});
  INFO(bad_softmax.message);
  CHECK_FALSE(bad_softmax.ok);
  CHECK(bad_softmax.message.find("softmax_missing_sum") != std::string::npos);
  CHECK(bad_softmax.message.find("(2, 4)") != std::string::npos);
  CHECK(bad_softmax.worst_error > 1e-2);

  const Tensor a = randn_leaf({3, 3}, 82), b = randn_leaf({3, 3}, 83);
  const GradcheckResult bad_matmul = gradcheck(
      "matmul_no_transpose", [](const Inputs& v) { return matmul_no_transpose(v[0], v[1]); }, {a, b});
  INFO(bad_matmul.message);
  CHECK_FALSE(bad_matmul.ok);
  CHECK(bad_matmul.message.find("matmul_no_transpose") != std::string::npos);

  const Tensor p = uniform_leaf({5}, 84, 0.5f, 2.0f);
  const GradcheckResult bad_sqrt =
      gradcheck("sqrt_missing_half", [](const Inputs& v) { return sqrt_missing_half(v[0]); }, {p});
  INFO(bad_sqrt.message);
  CHECK_FALSE(bad_sqrt.ok);
}

// ===================================================================
// masked_fill, where
// ===================================================================

TEST_CASE("masked_fill and where: forward values with broadcasting masks", "[ch03]") {
  const Tensor x = from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  // int64 mask (3,) broadcast over rows: column 1 is filled
  check_values(masked_fill(x, from_indices({0, 1, 0}, {3}), -9.0f), {2, 3}, {1, -9, 3, 4, -9, 6});
  // float32 mask (2, 1): row 0 is filled
  check_values(masked_fill(x, from_vector({1, 0}, {2, 1}), 0.5f), {2, 3}, {0.5, 0.5, 0.5, 4, 5, 6});
  // the attention pattern: fill with -inf, then softmax ignores those entries
  const Tensor causal = from_indices({0, 1, 1, 0, 0, 1}, {2, 3});
  const Tensor filled = masked_fill(from_vector({0, 0, 0, 0, 0, 0}, {2, 3}), causal, -kInf);
  check_values(softmax(filled, -1), {2, 3}, {1, 0, 0, 0.5, 0.5, 0});
  // on a transposed view
  check_values(masked_fill(x.t(), from_indices({1, 0}, {2}), 0.0f), {3, 2}, {0, 4, 0, 5, 0, 6});

  // where(cond, a, b): cond (1, 3) int64, a (2, 3), b 0-d
  check_values(where(from_indices({1, 0, 1}, {1, 3}), x, scalar_tensor(0.0f)), {2, 3}, {1, 0, 3, 4, 0, 6});
  // cond (2, 1) float32, a (3,), b (2, 3): row 0 takes a, row 1 takes b
  check_values(where(from_vector({2.5, 0}, {2, 1}), from_vector({7, 8, 9}, {3}), x), {2, 3},
               {7, 8, 9, 4, 5, 6});
}

TEST_CASE("masked_fill and where: gradients", "[ch03]") {
  // The filled positions get no gradient.
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  check_values(grad_of(x, masked_fill(x, from_indices({0, 1, 0}, {3}), 7.0f), ones({2, 3})), {2, 3},
               {1, 0, 1, 1, 0, 1});

  const Tensor mask = from_indices({1, 0, 1}, {3, 1});
  check_grad("masked_fill (2,3,4) with mask (3,1)",
             [mask](const Inputs& v) { return masked_fill(v[0], mask, 5.0f); }, {randn_leaf({2, 3, 4}, 91)});
  check_grad("masked_fill of transposed",
             [mask](const Inputs& v) { return masked_fill(v[0].transpose(0, 2), mask, -1.0f); },
             {randn_leaf({4, 3, 2}, 92)});

  const Tensor cond = from_indices({1, 0, 0, 1, 0, 1, 1, 0}, {2, 1, 4});
  check_grad("where (2,1,4) cond, (2,3,4) a, (3,1) b",
             [cond](const Inputs& v) { return where(cond, v[0], v[1]); },
             {randn_leaf({2, 3, 4}, 93), randn_leaf({3, 1}, 94)});
  check_grad("where with a 0-d b and a transposed a",
             [cond](const Inputs& v) { return where(cond, v[0].transpose(0, 2), v[1]); },
             {randn_leaf({4, 3, 2}, 95), leaf({0.5}, {})});
}

// ===================================================================
// cat, stack, split
// ===================================================================

TEST_CASE("cat, stack, split: forward values", "[ch03]") {
  const Tensor a = from_vector({1, 2, 3, 4}, {2, 2});
  const Tensor b = from_vector({5, 6}, {2, 1});
  const Tensor c = from_vector({7, 8}, {1, 2});
  check_values(cat({a, b}, 1), {2, 3}, {1, 2, 5, 3, 4, 6});
  check_values(cat({a, b}, -1), {2, 3}, {1, 2, 5, 3, 4, 6});
  check_values(cat({a, c}, 0), {3, 2}, {1, 2, 3, 4, 7, 8});
  check_values(cat({a.t(), c, a}, 0), {5, 2}, {1, 3, 2, 4, 7, 8, 1, 2, 3, 4});  // a view in the mix
  check_indices(cat({from_indices({1, 2}, {2}), from_indices({3}, {1})}, 0), {3}, {1, 2, 3});

  const Tensor p = from_vector({1, 2}, {2});
  const Tensor q = from_vector({3, 4}, {2});
  check_values(stack({p, q}, 0), {2, 2}, {1, 2, 3, 4});
  check_values(stack({p, q}, 1), {2, 2}, {1, 3, 2, 4});
  check_values(stack({p, q, p}, -1), {2, 3}, {1, 3, 1, 2, 4, 2});

  // x = [[0 1 2 3 4] [5 6 7 8 9]]
  const Tensor x = arange(10).reshape({2, 5});
  const std::vector<Tensor> pieces = split(x, 2, 1);
  REQUIRE(pieces.size() == 3);
  check_values(pieces[0], {2, 2}, {0, 1, 5, 6});
  check_values(pieces[1], {2, 2}, {2, 3, 7, 8});
  check_values(pieces[2], {2, 1}, {4, 9});  // the last piece is shorter
  CHECK(pieces[1].shares_storage_with(x));  // views, not copies
  const std::vector<Tensor> sized = split(x, std::vector<int64_t>{1, 4}, -1);
  REQUIRE(sized.size() == 2);
  check_values(sized[0], {2, 1}, {0, 5});
  check_values(sized[1], {2, 4}, {1, 2, 3, 4, 6, 7, 8, 9});
  const std::vector<Tensor> rows = split(x, 1, 0);
  REQUIRE(rows.size() == 2);
  check_values(rows[1], {1, 5}, {5, 6, 7, 8, 9});
}

TEST_CASE("cat, stack, split: gradients", "[ch03]") {
  // cat's backward hands each input its own stretch of the gradient
  Tensor a = leaf({1, 2, 3, 4}, {2, 2});
  Tensor b = leaf({5, 6}, {2, 1});
  const Tensor g = from_vector({10, 20, 30, 40, 50, 60}, {2, 3});
  cat({a, b}, 1).backward(g);
  check_values(a.grad(), {2, 2}, {10, 20, 40, 50});
  check_values(b.grad(), {2, 1}, {30, 60});

  check_grad("cat dim 1", [](const Inputs& v) { return cat({v[0], v[1], v[2]}, 1); },
             {randn_leaf({2, 3}, 101), randn_leaf({2, 1}, 102), randn_leaf({2, 2}, 103)});
  // transposed (3,2) -> (2,3) and rows 0, 2 of (4,3) -> (2,3), joined along dim 0; the same
  // tensor twice
  check_grad("cat of views",
             [](const Inputs& v) { return cat({v[0].t(), v[1].slice(0, 0, 4, 2), v[0].t()}, 0); },
             {randn_leaf({3, 2}, 104), randn_leaf({4, 3}, 105)});
  check_grad("stack dim 1", [](const Inputs& v) { return stack({v[0], v[1].t()}, 1); },
             {randn_leaf({2, 3}, 106), randn_leaf({3, 2}, 107)});
  // split into views and recombine nonlinearly
  check_grad("split sizes",
             [](const Inputs& v) {
               const std::vector<Tensor> p = split(v[0], std::vector<int64_t>{2, 3}, 1);
               return cat({p[1] * 2.0f, p[0] * p[0]}, 1);
             },
             {randn_leaf({2, 5}, 108)});
  check_grad("split size of transposed",
             [](const Inputs& v) {
               const std::vector<Tensor> p = split(v[0].t(), 2, 0);  // (5,2) -> (2,2) (2,2) (1,2)
               return p[0] * p[1] + p[2];
             },
             {randn_leaf({2, 5}, 109)});
}

// ===================================================================
// index_select, embedding
// ===================================================================

TEST_CASE("index_select: gather, and a scatter-add backward", "[ch03]") {
  const Tensor x = from_vector({1, 2, 3, 4, 5, 6}, {3, 2});  // rows [1 2] [3 4] [5 6]
  check_values(index_select(x, 0, from_indices({2, 0, 2}, {3})), {3, 2}, {5, 6, 1, 2, 5, 6});
  check_values(index_select(x, 1, from_indices({1, 1, 0}, {3})), {3, 3}, {2, 2, 1, 4, 4, 3, 6, 6, 5});
  check_values(index_select(x, -1, from_indices({0}, {1})), {3, 1}, {1, 3, 5});
  check_values(index_select(x.t(), 0, from_indices({1}, {1})), {1, 3}, {2, 4, 6});

  // Row 2 is picked twice, so it receives both gradients: [1 2] + [5 6].
  Tensor w = leaf({1, 2, 3, 4, 5, 6}, {3, 2});
  const Tensor out = index_select(w, 0, from_indices({2, 0, 2}, {3}));
  check_values(grad_of(w, out, from_vector({1, 2, 3, 4, 5, 6}, {3, 2})), {3, 2}, {3, 4, 0, 0, 6, 8});

  const Tensor idx = from_indices({2, 0, 2, 3}, {4});
  check_grad("index_select dim 0", [idx](const Inputs& v) { return index_select(v[0], 0, idx); },
             {randn_leaf({4, 3}, 111)});
  const Tensor idx1 = from_indices({1, 1, 0}, {3});
  check_grad("index_select dim 1 of transposed",
             [idx1](const Inputs& v) { return index_select(v[0].t(), 1, idx1); }, {randn_leaf({3, 4}, 112)});
  check_grad("index_select dim 1 of (2,3,2)",
             [idx1](const Inputs& v) { return index_select(v[0], 1, idx1) * v[0].select(1, 2).unsqueeze(1); },
             {randn_leaf({2, 3, 2}, 113)});
}

TEST_CASE("embedding: lookup, repeated ids accumulate, padding_idx gets no gradient", "[ch03]") {
  // weight row r = [r, 10 r]
  const std::vector<float> rows{0, 0, 1, 10, 2, 20, 3, 30};
  const Tensor ids = from_indices({1, 3, 3, 0}, {2, 2});
  check_values(embedding(from_vector(rows, {4, 2}), ids), {2, 2, 2}, {1, 10, 3, 30, 3, 30, 0, 0});
  check_values(embedding(from_vector(rows, {4, 2}), from_indices({2}, {1})), {1, 2}, {2, 20});

  // gradient g = [[[0 1] [2 3]] [[4 5] [6 7]]]: row 1 gets [0 1], row 3 gets [2 3] + [4 5],
  // row 0 gets [6 7], row 2 nothing
  const Tensor g = arange(8).reshape({2, 2, 2});
  {
    Tensor w = leaf(rows, {4, 2});
    check_values(grad_of(w, embedding(w, ids), g), {4, 2}, {6, 7, 0, 1, 0, 0, 6, 8});
  }
  {
    Tensor w = leaf(rows, {4, 2});
    const Tensor out = embedding(w, ids, 3);  // id 3 is padding
    check_values(out, {2, 2, 2}, {1, 10, 3, 30, 3, 30, 0, 0});  // the forward still looks it up
    check_values(grad_of(w, out, g), {4, 2}, {6, 7, 0, 1, 0, 0, 0, 0});
  }
  {
    Tensor w = leaf(rows, {4, 2});
    check_values(grad_of(w, embedding(w, ids, 0), g), {4, 2}, {0, 0, 0, 1, 0, 0, 6, 8});
  }

  const Tensor many = from_indices({1, 4, 1, 0, 1, 3}, {2, 3});
  check_grad("embedding", [many](const Inputs& v) { return embedding(v[0], many); }, {randn_leaf({5, 3}, 121)});
  check_grad("embedding of a transposed weight",
             [many](const Inputs& v) { return embedding(v[0].t(), many); }, {randn_leaf({3, 5}, 122)});
}

// ===================================================================
// layer_norm, dropout, cross_entropy
// ===================================================================

TEST_CASE("layer_norm: a known row, with and without the affine part", "[ch03]") {
  // Row [1 2 3 4]: mean 2.5, deviations [-1.5 -0.5 0.5 1.5], biased variance
  // (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25; 1/sqrt(1.25 + 1e-5) = 0.894423613
  // x_hat = [-1.341635420 -0.447211807 0.447211807 1.341635420]
  const Tensor x = from_vector({1, 2, 3, 4}, {1, 4});
  const std::vector<double> x_hat{-1.341635420, -0.447211807, 0.447211807, 1.341635420};
  check_values(layer_norm(x, Tensor(), Tensor()), {1, 4}, x_hat);
  // eps = 0: exactly (x - 2.5) / sqrt(1.25)
  check_values(layer_norm(x, Tensor(), Tensor(), 0.0f), {1, 4},
               {-1.341640786, -0.447213595, 0.447213595, 1.341640786});
  // weight [1 2 0.5 -1], bias [0 1 -1 0.5]: x_hat * weight + bias
  // = [-1.341635 + 0, -0.894424 + 1, 0.223606 - 1, -1.341635 + 0.5]
  const Tensor w = from_vector({1, 2, 0.5, -1}, {4});
  const Tensor b = from_vector({0, 1, -1, 0.5}, {4});
  check_values(layer_norm(x, w, b), {1, 4}, {-1.341635420, 0.105576387, -0.776394097, -0.841635420});
  // weight only
  check_values(layer_norm(x, w, Tensor()), {1, 4}, {-1.341635420, -0.894423613, 0.223605903, -1.341635420});
  // each row separately; a constant row normalises to 0 (eps keeps 0/0 away);
  // a shifted and scaled row gives the same x_hat
  const Tensor rows = from_vector({1, 2, 3, 4, 5, 5, 5, 5, 10, 20, 30, 40}, {3, 4});
  const Tensor y = layer_norm(rows, Tensor(), Tensor());
  check_values(y.select(0, 0), {4}, x_hat);
  check_values(y.select(0, 1), {4}, {0, 0, 0, 0});
  check_values(y.select(0, 2), {4}, {-1.341640786, -0.447213595, 0.447213595, 1.341640786}, 1e-5);
  // on a transposed view: the columns of the (4, 1) x^T... as rows of a (1, 4)
  check_values(layer_norm(x.t().t(), Tensor(), Tensor()), {1, 4}, x_hat);
  check_values(layer_norm(from_vector({1, 3, 2, 4, 3, 5, 4, 6}, {4, 2}).t(), Tensor(), Tensor()).select(0, 0),
               {4}, x_hat);
}

TEST_CASE("layer_norm: gradient checks", "[ch03]") {
  const Tensor x = randn_leaf({2, 3, 4}, 131);
  const Tensor w = randn_leaf({4}, 132);
  const Tensor b = randn_leaf({4}, 133);
  check_grad("layer_norm affine", [](const Inputs& v) { return layer_norm(v[0], v[1], v[2]); }, {x, w, b});
  check_grad("layer_norm plain", [](const Inputs& v) { return layer_norm(v[0], Tensor(), Tensor()); }, {x});
  check_grad("layer_norm 1-D", [](const Inputs& v) { return layer_norm(v[0], v[1], v[2]); },
             {randn_leaf({4}, 134), w, b});
  // non-contiguous input (4,3,2) -> (2,3,4), and a strided weight: every other element of (8,)
  check_grad("layer_norm of views",
             [](const Inputs& v) { return layer_norm(v[0].transpose(0, 2), v[1].slice(0, 0, 8, 2), v[2]); },
             {randn_leaf({4, 3, 2}, 135), randn_leaf({8}, 136), b});
}

TEST_CASE("dropout: seeded masks, eval mode, expected value, p = 0 and p = 1", "[ch03]") {
  const Tensor x = ones({100, 100});
  SECTION("the same seed gives the same mask; another seed another") {
    Generator g1(42), g2(42), g3(43);
    const std::vector<float> first = dropout(x, 0.25f, true, g1).to_vector();
    CHECK(first == dropout(x, 0.25f, true, g2).to_vector());
    CHECK(first != dropout(x, 0.25f, true, g3).to_vector());
    // and the generator moved on: a second call differs from the first
    CHECK(first != dropout(x, 0.25f, true, g1).to_vector());
  }
  SECTION("kept elements are scaled by 1/(1-p), so the expected value is unchanged") {
    Generator gen(7);
    const std::vector<float> out = dropout(x, 0.25f, true, gen).to_vector();
    int64_t zeros_seen = 0;
    double total = 0.0;
    for (float v : out) {
      if (v == 0.0f) {
        ++zeros_seen;
      } else {
        CHECK(std::fabs(v - 1.0f / 0.75f) <= 1e-6);
      }
      total += v;
    }
    // 10,000 draws: the fraction dropped has standard deviation sqrt(0.25 * 0.75 / 1e4) = 0.0043,
    // the mean sqrt((1/3) / 1e4) = 0.0058; these bounds are about 5 standard deviations.
    CHECK(std::fabs(static_cast<double>(zeros_seen) / 1e4 - 0.25) <= 0.02);
    CHECK(std::fabs(total / 1e4 - 1.0) <= 0.03);
  }
  SECTION("eval mode and p = 0 are the identity; eval draws no random numbers") {
    Generator gen(9);
    const uint64_t before = gen.state();
    const Tensor e = dropout(x, 0.5f, false, gen);
    CHECK(e.shares_storage_with(x));
    check_values(e.slice(0, 0, 1), {1, 100}, std::vector<double>(100, 1.0));
    CHECK(gen.state() == before);
    const Tensor z = dropout(x, 0.0f, true, gen);
    CHECK(z.to_vector() == x.to_vector());
  }
  SECTION("p = 1 drops everything") {
    Generator gen(10);
    Tensor v = leaf({1, 2, 3, 4}, {4});
    const Tensor out = dropout(v, 1.0f, true, gen);
    check_values(out, {4}, {0, 0, 0, 0});
    check_values(grad_of(v, out, ones({4})), {4}, {0, 0, 0, 0});
  }
  SECTION("the gradient is the mask") {
    Generator gen(11);
    Tensor v = leaf(std::vector<float>(20, 1.0f), {4, 5});
    const Tensor out = dropout(v, 0.5f, true, gen);
    // with x = 1, out is the mask itself (0 or 2), and so is d(out)/dx
    check_values(grad_of(v, out, ones({4, 5})), {4, 5}, as_doubles(out));
    check_grad("dropout",
               [](const Inputs& in) {
                 Generator g(12);  // a fresh generator: every evaluation draws the same mask
                 return dropout(in[0], 0.4f, true, g);
               },
               {randn_leaf({3, 4}, 141)});
    check_grad("dropout of transposed",
               [](const Inputs& in) {
                 Generator g(13);
                 return dropout(in[0].t(), 0.4f, true, g) * in[0].t();
               },
               {randn_leaf({3, 4}, 142)});
  }
}

TEST_CASE("cross_entropy: by hand, with ignore_index and label smoothing", "[ch03]") {
  // logits row 0 [1 2 3], target 2: log_softmax = [-2.407606 -1.407606 -0.407606] -> loss 0.407606
  // logits row 1 [1 1 1], target 0: log_softmax = -ln 3 each              -> loss 1.098612
  // mean = (0.407606 + 1.098612) / 2 = 0.753109
  const Tensor logits = from_vector({1, 2, 3, 1, 1, 1}, {2, 3});
  const Tensor targets = from_indices({2, 0}, {2});
  check_values(cross_entropy(logits, targets), {}, {0.753109128});

  // label smoothing e = 0.1: loss = -(1 - e) log p_target - e * mean_c log p_c
  // row 0: 0.9 * 0.407606 + 0.1 * (2.407606 + 1.407606 + 0.407606) / 3 = 0.366845 + 0.140761 = 0.507606
  // row 1: 0.9 * 1.098612 + 0.1 * 1.098612 = 1.098612
  // mean = (0.507606 + 1.098612) / 2 = 0.803109
  check_values(cross_entropy(logits, targets, -100, 0.1f), {}, {0.803109128});

  // row 1 ignored: the mean is over row 0 only
  check_values(cross_entropy(logits, from_indices({2, -100}, {2})), {}, {0.407605964});
  check_values(cross_entropy(logits, from_indices({2, 1}, {2}), 1), {}, {0.407605964});  // custom ignore_index
  check_values(cross_entropy(logits, from_indices({2, -100}, {2}), -100, 0.1f), {}, {0.507605964});
  // every target ignored: the loss is 0 (a design choice; PyTorch gives NaN)
  check_values(cross_entropy(logits, from_indices({-100, -100}, {2})), {}, {0});
  // (2, 1, 3) logits with (2, 1) targets: the same rows
  check_values(cross_entropy(logits.reshape({2, 1, 3}), from_indices({2, 0}, {2, 1})), {}, {0.753109128});
  // large logits stay finite: [1000 1001 1002] is [1 2 3] shifted
  check_values(cross_entropy(from_vector({1000, 1001, 1002}, {1, 3}), from_indices({2}, {1})), {},
               {0.407605964}, 1e-4);

  SECTION("gradient by hand: (softmax - target distribution) / counted rows") {
    Tensor x = leaf({1, 2, 3, 1, 1, 1}, {2, 3});
    // row 0: ([0.090031 0.244728 0.665241] - [0 0 1]) / 2; row 1: ([1/3 1/3 1/3] - [1 0 0]) / 2
    check_values(grad_of(x, cross_entropy(x, targets), scalar_tensor(1.0f)), {2, 3},
                 {0.045015287, 0.122364236, -0.167379522, -1.0 / 3, 1.0 / 6, 1.0 / 6});
    Tensor y = leaf({1, 2, 3, 1, 1, 1}, {2, 3});
    // row 1 ignored: it gets no gradient, and row 0 is divided by 1
    check_values(grad_of(y, cross_entropy(y, from_indices({2, -100}, {2})), scalar_tensor(1.0f)), {2, 3},
                 {0.090030573, 0.244728471, -0.334759044, 0, 0, 0});
  }

  SECTION("gradient checks") {
    const Tensor t4 = from_indices({0, 2, -100, 1}, {4});
    check_grad("cross_entropy", [t4](const Inputs& v) { return cross_entropy(v[0], t4); },
               {randn_leaf({4, 3}, 151)});
    check_grad("cross_entropy smoothed", [t4](const Inputs& v) { return cross_entropy(v[0], t4, -100, 0.1f); },
               {randn_leaf({4, 3}, 152)});
    const Tensor t22 = from_indices({2, 0, 1, 1}, {2, 2});
    check_grad("cross_entropy (2,2,3)", [t22](const Inputs& v) { return cross_entropy(v[0], t22, 1, 0.2f); },
               {randn_leaf({2, 2, 3}, 153)});
    check_grad("cross_entropy of transposed",
               [t4](const Inputs& v) { return cross_entropy(v[0].t(), t4, -100, 0.1f); }, {randn_leaf({3, 4}, 154)});
  }
}

// ===================================================================
// Views: differentiable
// ===================================================================

TEST_CASE("views: forward values", "[ch03]") {
  // x = [[0 1 2] [3 4 5]]
  const Tensor x = arange(6).reshape({2, 3});
  check_values(x.transpose(0, 1), {3, 2}, {0, 3, 1, 4, 2, 5});
  check_values(x.t(), {3, 2}, {0, 3, 1, 4, 2, 5});
  check_values(x.slice(1, 0, 3, 2), {2, 2}, {0, 2, 3, 5});
  check_values(x.slice(1, -2, 3), {2, 2}, {1, 2, 4, 5});
  check_values(x.narrow(1, 1, 2), {2, 2}, {1, 2, 4, 5});
  check_values(x.select(1, 2), {2}, {2, 5});
  check_values(x.select(0, -1), {3}, {3, 4, 5});
  check_values(x.unsqueeze(0), {1, 2, 3}, {0, 1, 2, 3, 4, 5});
  check_values(x.unsqueeze(-1), {2, 3, 1}, {0, 1, 2, 3, 4, 5});
  check_values(x.unsqueeze(1).squeeze(1), {2, 3}, {0, 1, 2, 3, 4, 5});
  check_values(x.reshape({1, 3, 1, 2}).squeeze(), {3, 2}, {0, 1, 2, 3, 4, 5});
  check_values(x.squeeze(0), {2, 3}, {0, 1, 2, 3, 4, 5});  // size 2: unchanged
  check_values(x.t().reshape({6}), {6}, {0, 3, 1, 4, 2, 5});  // a copy: the view is impossible
  check_values(x.flatten(), {6}, {0, 1, 2, 3, 4, 5});
  check_values(from_vector({1, 2}, {2, 1}).expand({2, 3}), {2, 3}, {1, 1, 1, 2, 2, 2});
  check_values(from_vector({1, 2}, {2, 1}).expand({2, 2, -1}), {2, 2, 1}, {1, 2, 1, 2});
  check_values(scalar_tensor(4.0f).expand({2, 2}), {2, 2}, {4, 4, 4, 4});
  // permute (2, 3, 4) -> (4, 2, 3): y[k][i][j] = x[i][j][k] = 12 i + 4 j + k
  const Tensor p = arange(24).reshape({2, 3, 4}).permute({2, 0, 1});
  REQUIRE(attend::to_string(p.shape()) == "(4, 2, 3)");
  CHECK(p.at({3, 1, 2}) == 12 + 8 + 3);
  CHECK(p.at({1, 0, 1}) == 4 + 1);
  // contiguous / clone
  const Tensor xt = x.t();
  CHECK_FALSE(xt.is_contiguous());
  const Tensor xc = xt.contiguous();
  CHECK(xc.is_contiguous());
  CHECK_FALSE(xc.shares_storage_with(x));
  check_values(xc, {3, 2}, {0, 3, 1, 4, 2, 5});
  CHECK(x.contiguous().shares_storage_with(x));  // already contiguous: itself
  const Tensor cl = x.clone();
  CHECK_FALSE(cl.shares_storage_with(x));
  check_values(cl, {2, 3}, {0, 1, 2, 3, 4, 5});
}

TEST_CASE("views: gradients by hand", "[ch03]") {
  {
    // slice with step 2 of the columns: columns 0 and 2 get the gradient, column 1 nothing
    Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
    check_values(grad_of(x, x.slice(1, 0, 3, 2), from_vector({1, 2, 3, 4}, {2, 2})), {2, 3},
                 {1, 0, 2, 3, 0, 4});
  }
  {
    // expand (3, 1) -> (3, 4): each element is used 4 times, the gradient sums them
    Tensor x = leaf({1, 2, 3}, {3, 1});
    check_values(grad_of(x, x.expand({3, 4}), arange(12).reshape({3, 4})), {3, 1}, {6, 22, 38});
  }
  {
    // transpose: the gradient is transposed back
    Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
    check_values(grad_of(x, x.t(), from_vector({10, 40, 20, 50, 30, 60}, {3, 2})), {2, 3},
                 {10, 20, 30, 40, 50, 60});
  }
  {
    // select row 1
    Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
    check_values(grad_of(x, x.select(0, 1), from_vector({7, 8, 9}, {3})), {2, 3}, {0, 0, 0, 7, 8, 9});
  }
}

TEST_CASE("views: gradient checks", "[ch03]") {
  const Tensor x = randn_leaf({2, 3, 4}, 161);
  check_grad("reshape", [](const Inputs& v) { return v[0].reshape({4, 6}); }, {x});
  check_grad("reshape of transposed (a copy)", [](const Inputs& v) { return v[0].transpose(0, 2).reshape({-1, 6}); },
             {x});
  check_grad("view", [](const Inputs& v) { return v[0].view({6, 4}); }, {x});
  check_grad("flatten of permuted", [](const Inputs& v) { return v[0].permute({1, 2, 0}).flatten(); }, {x});
  check_grad("transpose", [](const Inputs& v) { return v[0].transpose(0, 2); }, {x});
  check_grad("permute", [](const Inputs& v) { return v[0].permute({2, 0, 1}); }, {x});
  check_grad("slice with step", [](const Inputs& v) { return v[0].slice(2, 1, 4, 2); }, {x});
  check_grad("slice of transposed", [](const Inputs& v) { return v[0].transpose(1, 2).slice(1, 0, 4, 3); }, {x});
  check_grad("narrow", [](const Inputs& v) { return v[0].narrow(1, 1, 2); }, {x});
  check_grad("select", [](const Inputs& v) { return v[0].select(1, 2); }, {x});
  check_grad("select negative", [](const Inputs& v) { return v[0].select(0, -1).select(-1, 0); }, {x});
  check_grad("unsqueeze, expand", [](const Inputs& v) { return v[0].unsqueeze(0).expand({2, 3, 1}); },
             {randn_leaf({3, 1}, 162)});
  check_grad("expand (3,1) -> (2,3,4)", [](const Inputs& v) { return v[0].expand({2, 3, 4}); },
             {randn_leaf({3, 1}, 163)});
  check_grad("expand 0-d", [](const Inputs& v) { return v[0].expand({2, 2}); }, {leaf({0.3}, {})});
  check_grad("squeeze dim", [](const Inputs& v) { return v[0].squeeze(1); }, {randn_leaf({3, 1, 2}, 164)});
  check_grad("squeeze all", [](const Inputs& v) { return v[0].squeeze(); }, {randn_leaf({1, 3, 1}, 165)});
  check_grad("contiguous of transposed", [](const Inputs& v) { return v[0].transpose(0, 1).contiguous(); }, {x});
  check_grad("clone", [](const Inputs& v) { return v[0].clone() * v[0]; }, {x});
}

// ===================================================================
// Errors name the op and the shapes
// ===================================================================

TEST_CASE("errors: matmul and broadcasting name the op and both shapes", "[ch03]") {
  const Tensor a = zeros({2, 3});
  REQUIRE_THROWS_MENTIONING(matmul(a, zeros({4, 5})), "matmul", "(2, 3)", "(4, 5)");
  REQUIRE_THROWS_MENTIONING(matmul(zeros({2, 2, 3}), zeros({3, 3, 4})), "matmul", "(2,)", "(3,)");
  REQUIRE_THROWS_MENTIONING(matmul(zeros({3}), a), "matmul", "(3,)", "(2, 3)");
  REQUIRE_THROWS_MENTIONING(add(a, zeros({4})), "add", "(2, 3)", "(4,)");
  REQUIRE_THROWS_MENTIONING(sub(a, zeros({4})), "sub", "(2, 3)", "(4,)");
  REQUIRE_THROWS_MENTIONING(mul(zeros({3, 2}), a), "mul", "(3, 2)", "(2, 3)");
  REQUIRE_THROWS_MENTIONING(div(a, zeros({2, 2})), "div", "(2, 3)", "(2, 2)");
  REQUIRE_THROWS_MENTIONING(where(zeros({4}), a, a), "where", "(4,)", "(2, 3)");
}

TEST_CASE("errors: out-of-range dims name the op, the dim and the shape", "[ch03]") {
  const Tensor a = zeros({2, 3});
  REQUIRE_THROWS_MENTIONING(sum(a, {5}), "sum", "dim 5", "(2, 3)");
  REQUIRE_THROWS_MENTIONING(mean(a, {-3}), "mean", "dim -3", "(2, 3)");
  REQUIRE_THROWS_MENTIONING(max(a, {2}), "max", "dim 2", "(2, 3)");
  REQUIRE_THROWS_MENTIONING(argmax(a, 4), "argmax", "dim 4", "(2, 3)");
  REQUIRE_THROWS_MENTIONING(softmax(a, 2), "softmax", "dim 2", "(2, 3)");
  REQUIRE_THROWS_MENTIONING(log_softmax(a, -4), "log_softmax", "dim -4", "(2, 3)");
  REQUIRE_THROWS_MENTIONING(cat({a, a}, 3), "cat", "dim 3", "(2, 3)");
  REQUIRE_THROWS_MENTIONING(split(a, 1, 2), "split", "dim 2", "(2, 3)");
  REQUIRE_THROWS_MENTIONING(index_select(a, 2, from_indices({0}, {1})), "index_select", "dim 2", "(2, 3)");
  REQUIRE_THROWS_MENTIONING(sum(a, {1, -1}), "sum", "dim 1", "twice");
}

TEST_CASE("errors: out-of-range indices and index tensors of the wrong dtype", "[ch03]") {
  const Tensor x = zeros({3, 2});
  REQUIRE_THROWS_MENTIONING(index_select(x, 0, from_indices({0, 3}, {2})), "index_select", "index 3", "(3, 2)");
  REQUIRE_THROWS_MENTIONING(index_select(x, 1, from_indices({-1}, {1})), "index_select", "index -1", "(3, 2)");
  REQUIRE_THROWS_MENTIONING(embedding(zeros({4, 2}), from_indices({1, 4}, {1, 2})), "embedding", "index 4",
                            "(4, 2)");
  REQUIRE_THROWS_MENTIONING(cross_entropy(zeros({2, 3}), from_indices({0, 3}, {2})), "cross_entropy",
                            "target 3", "(2, 3)");
  REQUIRE_THROWS_MENTIONING(cross_entropy(zeros({2, 3}), from_indices({-1, 0}, {2})), "cross_entropy",
                            "target -1", "(2, 3)");

  const Tensor float_index = from_vector({0, 1}, {2});
  REQUIRE_THROWS_MENTIONING(index_select(x, 0, float_index), "index_select", "int64", "float32", "(2,)");
  REQUIRE_THROWS_MENTIONING(embedding(zeros({4, 2}), float_index), "embedding", "int64", "float32", "(2,)");
  REQUIRE_THROWS_MENTIONING(cross_entropy(zeros({2, 3}), float_index), "cross_entropy", "int64", "float32",
                            "(2,)");
  REQUIRE_THROWS_MENTIONING(index_select(x, 0, from_indices({0, 1}, {1, 2})), "index_select", "1-D", "(1, 2)");
  REQUIRE_THROWS_MENTIONING(cross_entropy(zeros({2, 3}), from_indices({0, 1, 2}, {3})), "cross_entropy",
                            "(2, 3)", "(3,)");
}

TEST_CASE("errors: backward, layer_norm, cat, stack, split, masked_fill, dropout", "[ch03]") {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  REQUIRE_THROWS_MENTIONING((x * 2.0f).backward(), "backward", "(2, 3)", "not a scalar");

  REQUIRE_THROWS_MENTIONING(layer_norm(zeros({2, 4}), zeros({3}), Tensor()), "layer_norm", "weight", "(3,)",
                            "(2, 4)");
  REQUIRE_THROWS_MENTIONING(layer_norm(zeros({2, 4}), zeros({4}), zeros({4, 1})), "layer_norm", "bias",
                            "(4, 1)", "(2, 4)");

  REQUIRE_THROWS_MENTIONING(cat({zeros({2, 3}), zeros({3, 3})}, 1), "cat", "(2, 3)", "(3, 3)");
  REQUIRE_THROWS_MENTIONING(cat({zeros({2, 3}), zeros({2, 3, 1})}, 0), "cat", "(2, 3)", "(2, 3, 1)");
  REQUIRE_THROWS_MENTIONING(stack({zeros({2, 3}), zeros({3, 2})}, 0), "stack", "(2, 3)", "(3, 2)");

  REQUIRE_THROWS_MENTIONING(split(zeros({2, 5}), std::vector<int64_t>{2, 2}, 1), "split", "(2, 5)", "4");
  REQUIRE_THROWS_MENTIONING(split(zeros({2, 5}), 0, 1), "split", "split_size");

  REQUIRE_THROWS_MENTIONING(masked_fill(zeros({2, 3}), from_indices({1, 0, 1, 0}, {4}), 0.0f), "masked_fill",
                            "(2, 3)", "(4,)");
  REQUIRE_THROWS_MENTIONING(masked_fill(zeros({2, 3}), zeros({2, 1, 3}), 0.0f), "masked_fill", "(2, 3)",
                            "(2, 1, 3)");

  Generator gen(1);
  REQUIRE_THROWS_MENTIONING(dropout(zeros({2}), 1.5f, true, gen), "dropout", "1.5");
  REQUIRE_THROWS_MENTIONING(cross_entropy(zeros({2, 3}), from_indices({0, 1}, {2}), -100, 2.0f), "cross_entropy",
                            "label_smoothing");
}

TEST_CASE("linear: x weight^T + bias as one op, the same bits as matmul and add", "[ch03]") {
  Generator gen(90);
  const Tensor x0 = randn({3, 5, 7}, gen), w0 = randn({4, 7}, gen), b0 = randn({4}, gen);
  const Tensor g = randn({3, 5, 4}, gen);
  // Chapter 10 made it one op (the graph keeps one tensor per layer, not
  // two); the numbers must be those of the two ops it replaces.
  Tensor x1 = x0.clone().set_requires_grad(), w1 = w0.clone().set_requires_grad(),
         b1 = b0.clone().set_requires_grad();
  Tensor x2 = x0.clone().set_requires_grad(), w2 = w0.clone().set_requires_grad(),
         b2 = b0.clone().set_requires_grad();
  const Tensor fused = linear(x1, w1, b1);
  const Tensor two_ops = matmul(x2, w2.t()) + b2;
  CHECK(fused.shape() == Shape{3, 5, 4});
  CHECK(fused.to_vector() == two_ops.to_vector());
  fused.backward(g);
  two_ops.backward(g);
  CHECK(x1.grad().to_vector() == x2.grad().to_vector());
  CHECK(w1.grad().to_vector() == w2.grad().to_vector());
  CHECK(b1.grad().to_vector() == b2.grad().to_vector());
  // Without a bias, and on a transposed (non-contiguous) input.
  CHECK(linear(x0.transpose(0, 1), w0, Tensor()).to_vector() ==
        matmul(x0.transpose(0, 1), w0.t()).to_vector());

  const GradcheckResult result = gradcheck(
      "linear (3, 5, 7) (4, 7) (4)",
      [](const std::vector<Tensor>& v) { return linear(v[0], v[1], v[2]); },
      {x0.clone().set_requires_grad(), w0.clone().set_requires_grad(), b0.clone().set_requires_grad()});
  INFO(result.message);
  CHECK(result.ok);
  CHECK(result.checked == 3 * 5 * 7 + 4 * 7 + 4);

  REQUIRE_THROWS_MENTIONING(linear(x0, zeros({4, 6}), b0), "linear", "(3, 5, 7)", "(4, 6)");
  REQUIRE_THROWS_MENTIONING(linear(x0, w0, zeros({5})), "linear", "(5,)", "(4, 7)");
}
