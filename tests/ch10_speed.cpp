// Chapter 10, Speed on the CPU (docs/10-speed.md): the fast matmul kernel
// (packing, 6x16 micro-kernel, AVX2 at run time, OpenMP) must equal the
// reference loop up to float rounding on every size, including ones that are
// not multiples of any block; it must read transposed and broadcast operands
// through strides; and its result must not depend on the number of threads.
#include <algorithm>
#include <atomic>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "attend/attend.hpp"
#include "catch_compat.hpp"
#include "test_files.hpp"
#include "test_kernels.hpp"
#include "test_matmul.hpp"
#include "test_threads.hpp"

using namespace attend;
using attend_test::UseKernel;
using attend_test::KeepThreads;
using attend_test::set_threads;
using attend_test::check_close;
using attend_test::Dense;
using attend_test::Floats;
using attend_test::random_dense;
using attend_test::random_floats;
using attend_test::Reference;
using attend_test::reference_of;

namespace {

// c = a @ b with the fast kernel, both contiguous.
Floats fast_matmul(const Dense& a, const Dense& b) {
  Floats c(static_cast<size_t>(a.rows * b.cols), -7.0f);  // garbage that must be overwritten
  const int64_t zero = 0;
  kernels::matmul_batched(a.v.data(), &zero, b.v.data(), &zero, c.data(), 1, a.rows, a.cols,
                          b.cols);
  return c;
}

// `batch` random products (M, K) @ (K, N), stored one after another.
struct RandomProducts {
  int64_t batch, M, K, N;
  Floats a, b;
  std::vector<int64_t> a_offsets, b_offsets;  // where matrix p of each starts

  RandomProducts(int64_t batch_, int64_t M_, int64_t K_, int64_t N_, uint32_t seed)
      : batch(batch_), M(M_), K(K_), N(N_),
        a(random_floats(std::max<int64_t>(1, batch * M * K), seed)),
        b(random_floats(std::max<int64_t>(1, batch * K * N), seed + 1000)) {
    for (int64_t p = 0; p < batch; ++p) {
      a_offsets.push_back(p * M * K);
      b_offsets.push_back(p * K * N);
    }
  }
  // c = a @ b, optionally + bias, by matmul_strided.
  Floats multiply(const float* bias = nullptr) const {
    Floats c(static_cast<size_t>(batch * M * N), -7.0f);
    kernels::matmul_strided({a.data(), a_offsets.data(), K, 1}, {b.data(), b_offsets.data(), N, 1}, c.data(), batch,
                            M, K, N, bias);
    return c;
  }
};

}  // namespace

TEST_CASE("every micro-kernel equals the reference loop on every combination of awkward sizes", "[ch10]") {
  // 1 and 3: smaller than any register tile (6 x 16, 14 x 32); 17: one more
  // than a 16-wide tile; 65, 127, 129: around powers of two; 257: one more
  // than a k block. Each kernel this CPU can run (portable, avx2+fma,
  // avx512) is forced in turn.
  const std::vector<int64_t> sizes{1, 3, 17, 65, 127, 129, 257};
  const std::vector<std::string> names = kernels::matmul_runnable_kernels();
  uint32_t seed = 1;
  for (int64_t M : sizes) {
    for (int64_t K : sizes) {
      for (int64_t N : sizes) {
        const Dense a = random_dense(M, K, seed++);
        const Dense b = random_dense(K, N, seed++);
        const Reference reference = reference_of(a, b);
        for (const std::string& name : names) {
          const UseKernel use(name);
          check_close(fast_matmul(a, b), reference, a, b, "sizes");
        }
      }
    }
  }
}

TEST_CASE("the AVX2 and AVX-512 kernels give the same bits", "[ch10]") {
  // Both sum each element k by k with one fused multiply-add per step, in
  // blocks of the same kc, so only the tile shape differs: the bits must not.
  const std::vector<std::string> names = kernels::matmul_runnable_kernels();
  const bool both = std::find(names.begin(), names.end(), "avx512") != names.end();
  if (!both) {
    WARN("this CPU has no AVX-512: only the AVX2 kernel was checked");
    return;
  }
  struct Case {
    int64_t M, K, N;
  };
  uint32_t seed = 500;
  for (const Case& cs : {Case{1, 1, 1}, Case{15, 32, 15}, Case{15, 15, 32}, Case{14, 300, 32},
                         Case{29, 257, 33}, Case{170, 600, 100}, Case{832, 128, 512}}) {
    const Dense a = random_dense(cs.M, cs.K, seed++);
    const Dense b = random_dense(cs.K, cs.N, seed++);
    Floats by_avx2, by_avx512;
    {
      const UseKernel use("avx2+fma");
      REQUIRE(use.ok());
      by_avx2 = fast_matmul(a, b);
    }
    {
      const UseKernel use("avx512");
      by_avx512 = fast_matmul(a, b);
    }
    INFO("(" << cs.M << ", " << cs.K << ") @ (" << cs.K << ", " << cs.N << ")");
    CHECK(std::memcmp(by_avx2.data(), by_avx512.data(), by_avx2.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("fast matmul on both sides of every block size", "[ch10]") {
  // Tile rows 6 and 14, tile columns 16 and 32, k block 256, row blocks 144
  // and 168, column block 4096: one less, equal, one more, and several
  // blocks with a remainder.
  struct Case {
    int64_t M, K, N;
  };
  const std::vector<Case> cases{{5, 8, 15},     {6, 8, 16},      {7, 9, 17},     {12, 31, 32},
                                {13, 33, 48},   {143, 255, 47},  {144, 256, 64}, {145, 257, 65},
                                {289, 513, 33}, {200, 700, 100}, {2, 3, 4097},   {7, 5, 8200},
                                {290, 20, 290}, {1, 1000, 1},    {1, 1, 1000},   {1000, 1, 1},
                                {832, 128, 40}, {13, 40, 31},   {14, 40, 32},   {15, 40, 33},
                                {167, 64, 64},  {168, 64, 64},  {169, 257, 64}, {28, 16, 48}};
  uint32_t seed = 100;
  for (const Case& cs : cases) {
    const Dense a = random_dense(cs.M, cs.K, seed++);
    const Dense b = random_dense(cs.K, cs.N, seed++);
    const Reference reference = reference_of(a, b);
    for (const std::string& name : kernels::matmul_runnable_kernels()) {
      const UseKernel use(name);
      check_close(fast_matmul(a, b), reference, a, b, "block edges");
    }
  }
}

TEST_CASE("fast matmul reads transposed, padded and broadcast operands through strides", "[ch10]") {
  const int64_t M = 37, K = 300, N = 45;
  const Dense a = random_dense(M, K, 7);
  const Dense b = random_dense(K, N, 8);
  // Lay a out as its transpose (column-major: stride 1 down a column) and b
  // inside a wider matrix (row stride 50 > N), then read them through strides.
  const Floats a_t = a.column_major();
  const int64_t ldb = 50;
  Floats b_wide(static_cast<size_t>(K * ldb), 99.0f);
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t j = 0; j < N; ++j) b_wide[static_cast<size_t>(k * ldb + j)] = b.at(k, j);
  }
  const Floats b_t = b.column_major();  // b column-major too
  const int64_t zero = 0;
  const Floats contiguous = fast_matmul(a, b);
  for (int variant = 0; variant < 3; ++variant) {
    const kernels::StridedMatrices av = variant == 1
                                            ? kernels::StridedMatrices{a.v.data(), &zero, K, 1}
                                            : kernels::StridedMatrices{a_t.data(), &zero, 1, M};
    const kernels::StridedMatrices bv = variant == 0
                                            ? kernels::StridedMatrices{b_wide.data(), &zero, ldb, 1}
                                            : kernels::StridedMatrices{b_t.data(), &zero, 1, K};
    Floats c(static_cast<size_t>(M * N), -7.0f);
    kernels::matmul_strided(av, bv, c.data(), 1, M, K, N);
    INFO("variant " << variant);
    check_close(c, a, b, "strided");
    // Packing copies the same numbers whatever the layout, so the sums are
    // the very same ones.
    CHECK(c == contiguous);
  }

  // Row stride 0: every row of a is the same row (a broadcast view).
  const Dense row = random_dense(1, K, 9);
  Dense repeated{M, K, {}};
  for (int64_t i = 0; i < M; ++i) repeated.v.insert(repeated.v.end(), row.v.begin(), row.v.end());
  Floats c(static_cast<size_t>(M * N));
  kernels::matmul_strided({row.v.data(), &zero, 0, 1}, {b.v.data(), &zero, N, 1}, c.data(), 1, M, K,
                          N);
  check_close(c, repeated, b, "row stride 0");
}

TEST_CASE("fast batched matmul with broadcast (repeated) offsets", "[ch10]") {
  // (2, 1, M, K) @ (3, K, N): matrix (i, j) of the batch multiplies a[i] by b[j].
  // Small sizes run one matrix per thread; big ones share each matrix.
  struct Case {
    int64_t M, K, N;
  };
  for (const Case& cs : {Case{5, 7, 4}, Case{15, 32, 15}, Case{97, 300, 70}}) {
    const int64_t M = cs.M, K = cs.K, N = cs.N;
    std::vector<Dense> as, bs;
    for (int i = 0; i < 2; ++i) as.push_back(random_dense(M, K, 20 + i));
    for (int j = 0; j < 3; ++j) bs.push_back(random_dense(K, N, 30 + j));
    Floats a_all, b_all;
    for (const Dense& d : as) a_all.insert(a_all.end(), d.v.begin(), d.v.end());
    for (const Dense& d : bs) b_all.insert(b_all.end(), d.v.begin(), d.v.end());
    std::vector<int64_t> a_offsets, b_offsets;
    for (int64_t i = 0; i < 2; ++i) {
      for (int64_t j = 0; j < 3; ++j) {
        a_offsets.push_back(i * M * K);
        b_offsets.push_back(j * K * N);
      }
    }
    Floats c(static_cast<size_t>(6 * M * N));
    kernels::matmul_batched(a_all.data(), a_offsets.data(), b_all.data(), b_offsets.data(),
                            c.data(), 6, M, K, N);
    for (int64_t i = 0; i < 2; ++i) {
      for (int64_t j = 0; j < 3; ++j) {
        const auto first = c.begin() + (i * 3 + j) * M * N;
        check_close(Floats(first, first + M * N), as[static_cast<size_t>(i)],
                    bs[static_cast<size_t>(j)],
                    "batch (" + std::to_string(i) + ", " + std::to_string(j) + ")");
      }
    }
  }

  // Many matrices (attention's (batch * heads, T, D) @ (batch * heads, D, T))
  // and a stack of a's against one shared b, which the kernel folds into one
  // tall product.
  const int64_t batch = 40, M = 15, K = 32, N = 15;
  const Floats a_all = random_floats(batch * M * K, 40);
  const Floats b_all = random_floats(batch * K * N, 41);
  std::vector<int64_t> a_offsets, b_offsets, shared(static_cast<size_t>(batch), K * N);
  for (int64_t p = 0; p < batch; ++p) {
    a_offsets.push_back(p * M * K);
    b_offsets.push_back(p * K * N);
  }
  Floats c(static_cast<size_t>(batch * M * N)), c_shared(c.size());
  kernels::matmul_batched(a_all.data(), a_offsets.data(), b_all.data(), b_offsets.data(), c.data(),
                          batch, M, K, N);
  kernels::matmul_batched(a_all.data(), a_offsets.data(), b_all.data(), shared.data(),
                          c_shared.data(), batch, M, K, N);
  const Dense b1{K, N, Floats(b_all.begin() + K * N, b_all.begin() + 2 * K * N)};
  for (int64_t p = 0; p < batch; ++p) {
    const Dense ap{M, K, Floats(a_all.begin() + p * M * K, a_all.begin() + (p + 1) * M * K)};
    const Dense bp{K, N, Floats(b_all.begin() + p * K * N, b_all.begin() + (p + 1) * K * N)};
    check_close(Floats(c.begin() + p * M * N, c.begin() + (p + 1) * M * N), ap, bp, "many");
    check_close(Floats(c_shared.begin() + p * M * N, c_shared.begin() + (p + 1) * M * N), ap, b1,
                "shared b");
  }
}

TEST_CASE("fast matmul gives the same bits with 1, 2 and 3 threads", "[ch10]") {
  KeepThreads keep;
  // One big matrix shared by the threads (the Transformer's (B*T, d) @ (d, 4d)),
  // a few row blocks and columns split, a batch of small ones, a tiny one.
  uint32_t seed = 60;
  for (const RandomProducts& products :
       {RandomProducts(1, 832, 128, 512, seed++), RandomProducts(1, 832, 512, 128, seed++),
        RandomProducts(1, 5, 300, 700, seed++), RandomProducts(3, 100, 300, 90, seed++),
        RandomProducts(64, 15, 32, 15, seed++), RandomProducts(1, 3, 4, 5, seed++)}) {
    for (const std::string& name : kernels::matmul_runnable_kernels()) {
      const UseKernel use(name);
      std::vector<Floats> results;
      for (int threads : {1, 2, 3}) {
        set_threads(threads);
        results.push_back(products.multiply());
      }
      INFO(name << ": batch " << products.batch << ", (" << products.M << ", " << products.K << ") @ ("
                << products.K << ", " << products.N << ")");
      CHECK(std::memcmp(results[0].data(), results[1].data(), results[0].size() * sizeof(float)) == 0);
      CHECK(std::memcmp(results[0].data(), results[2].data(), results[0].size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("a weight gradient's product, its sum split among threads, gives the same bits", "[ch10]") {
  KeepThreads keep;
  // dW = dY^T X: a small (M, N) summed over many rows K, with a = dY^T read
  // through strides, as the backward pass reads it. On 2 or more threads its
  // k blocks (of at most 256) are computed side by side and added in order:
  // 4 blocks (2 + 2 on 2 threads), 3 and 5 (columns cut too), and 2.
  struct Case {
    int64_t M, K, N;
  };
  const std::vector<Case> cases{{128, 832, 128}, {64, 700, 48}, {40, 1100, 40}, {96, 500, 100}};
  uint32_t seed = 80;
  const int64_t zero = 0;
  for (const Case& cs : cases) {
    const Dense a = random_dense(cs.M, cs.K, seed++);
    const Dense b = random_dense(cs.K, cs.N, seed++);
    const Floats a_t = a.column_major();  // dY: a stored column-major
    for (const std::string& name : kernels::matmul_runnable_kernels()) {
      const UseKernel use(name);
      std::vector<Floats> results;
      for (int threads : {1, 2, 3, 4}) {
        set_threads(threads);
        Floats c(static_cast<size_t>(cs.M * cs.N), -7.0f);
        kernels::matmul_strided({a_t.data(), &zero, 1, cs.M}, {b.v.data(), &zero, cs.N, 1}, c.data(), 1,
                                cs.M, cs.K, cs.N);
        results.push_back(c);
      }
      INFO(name << ": (" << cs.M << ", " << cs.K << ") @ (" << cs.K << ", " << cs.N << ")");
      check_close(results[0], a, b, "one thread");
      for (size_t t = 1; t < results.size(); ++t) {
        INFO(t + 1 << " threads");
        CHECK(std::memcmp(results[0].data(), results[t].data(), results[0].size() * sizeof(float)) == 0);
      }
    }
  }
}

TEST_CASE("matmul_strided's bias: the bits of the product, then an add, however the work is cut", "[ch10]") {
  KeepThreads keep;
  // Rows cut (832 x 128 @ 128 x 128), columns cut (448 x 128 @ 128 x 512),
  // split over k (128 x 832 @ 832 x 128), a batch, a small one on one
  // thread, and an empty sum (K = 0: the bias alone).
  uint32_t seed = 90;
  for (const RandomProducts& products :
       {RandomProducts(1, 832, 128, 128, seed++), RandomProducts(1, 448, 128, 512, seed++),
        RandomProducts(1, 128, 832, 128, seed++), RandomProducts(3, 100, 300, 90, seed++),
        RandomProducts(1, 5, 7, 3, seed++), RandomProducts(1, 4, 0, 6, seed++)}) {
    const Floats bias = random_floats(products.N, seed++);
    for (const std::string& name : kernels::matmul_runnable_kernels()) {
      const UseKernel use(name);
      for (int threads : {1, 2, 3}) {
        set_threads(threads);
        INFO(name << ", " << threads << " threads: batch " << products.batch << ", (" << products.M << ", "
                  << products.K << ") @ (" << products.K << ", " << products.N << ")");
        Floats expected = products.multiply();
        for (size_t i = 0; i < expected.size(); ++i) expected[i] += bias[i % static_cast<size_t>(products.N)];
        const Floats c = products.multiply(bias.data());
        CHECK(std::memcmp(c.data(), expected.data(), c.size() * sizeof(float)) == 0);
      }
    }
  }
}

TEST_CASE("choosing the micro-kernel", "[ch10]") {
  const std::vector<std::string> names = kernels::matmul_runnable_kernels();
  REQUIRE(!names.empty());
  CHECK(names.front() == "portable");  // every CPU runs the plain C++ one
  const std::string fastest = names.back();
  CHECK(std::string(kernels::matmul_kernel_name()) == fastest);  // the default
  {
    const UseKernel use("portable");
    CHECK(use.ok());
    CHECK(std::string(kernels::matmul_kernel_name()) == "portable");
    const UseKernel unknown("avx9000");  // not a kernel: nothing changes
    CHECK_FALSE(unknown.ok());
    CHECK(std::string(kernels::matmul_kernel_name()) == "portable");
  }
  CHECK(std::string(kernels::matmul_kernel_name()) == fastest);
  kernels::matmul_force_portable(true);
  CHECK(std::string(kernels::matmul_kernel_name()) == "portable");
  kernels::matmul_force_portable(false);
  CHECK(std::string(kernels::matmul_kernel_name()) == fastest);
}

TEST_CASE("fast matmul: empty sizes", "[ch10]") {
  const int64_t zero = 0;
  const float a = 1.0f, b = 2.0f;
  Floats c(6, -1.0f);
  kernels::matmul_batched(&a, &zero, &b, &zero, c.data(), 1, 2, 0, 3);  // K = 0: an empty sum
  CHECK(c == Floats(6, 0.0f));
  kernels::matmul_batched(&a, &zero, &b, &zero, c.data(), 1, 0, 5, 3);  // M = 0: nothing to do
  kernels::matmul_batched(&a, &zero, &b, &zero, c.data(), 0, 2, 5, 3);  // no matrices
  CHECK(c == Floats(6, 0.0f));
}

TEST_CASE("matmul on transposed views equals matmul on contiguous copies, bit for bit", "[ch10]") {
  Generator gen(10);
  const Tensor x = randn({4, 13, 32}, gen);
  const Tensor w = randn({48, 32}, gen);
  // x @ w^T without a copy of w, and the same against a contiguous w^T.
  const Tensor viewed = matmul(x, w.t());
  const Tensor copied = matmul(x, w.t().contiguous());
  CHECK(viewed.to_vector() == copied.to_vector());
  // (B, H, T, D) @ (B, H, D, T) with the right side a transposed view, as in attention.
  const Tensor q = randn({2, 3, 15, 8}, gen);
  const Tensor k = randn({2, 3, 15, 8}, gen);
  CHECK(matmul(q, k.transpose(-1, -2)).to_vector() ==
        matmul(q, k.transpose(-1, -2).contiguous()).to_vector());
  // A permuted left side: (T, B, D) viewed as (B, T, D).
  const Tensor y = randn({13, 4, 32}, gen).transpose(0, 1);
  CHECK(matmul(y, w.t()).to_vector() == matmul(y.contiguous(), w.t()).to_vector());
}

TEST_CASE("matmul backward with one 2-D b shared by a batched a", "[ch10]") {
  // dB = sum over the batch of A_i^T dC_i is computed as one (K, B*M) @ (B*M, N)
  // product: it must match the per-batch sum, and the gradient check.
  Generator gen(11);
  Tensor a = randn({3, 5, 4}, gen);
  Tensor b = randn({4, 6}, gen);
  a.set_requires_grad();
  b.set_requires_grad();
  const Tensor g = randn({3, 5, 6}, gen);
  matmul(a, b).backward(g);
  Tensor expected = zeros({4, 6});
  for (int64_t i = 0; i < 3; ++i) {
    const Tensor ai = a.detach().select(0, i);
    expected = expected + matmul(ai.t(), g.select(0, i));
  }
  CHECK(max_abs_diff(b.grad(), expected) < 1e-5);

  const GradcheckResult result = gradcheck(
      "matmul (3, 5, 4) @ (4, 6)", [](const std::vector<Tensor>& v) { return matmul(v[0], v[1]); },
      {a.detach().set_requires_grad(), b.detach().set_requires_grad()});
  INFO(result.message);
  CHECK(result.ok);
  CHECK(result.checked == 3 * 5 * 4 + 4 * 6);
}

// ---------------------------------------------------------------------------
// Sharing loops among threads (parallel.hpp)
// ---------------------------------------------------------------------------

namespace {

// How often parallel_for visited each index of [0, n), with `threads` threads,
// outside a thread team or inside one.
std::vector<int> visits(int64_t n, int threads, bool in_team) {
  KeepThreads keep;
  set_threads(threads);
  std::vector<int> count(static_cast<size_t>(n), 0);
  const auto loop = [&] { parallel_for(n, true, [&](int64_t i) { ++count[static_cast<size_t>(i)]; }); };
  if (in_team) {
    run_as_thread_team(loop);
  } else {
    loop();
  }
  return count;
}

}  // namespace

TEST_CASE("parallel_for visits every index once, in a thread team or not", "[ch10]") {
  for (int threads : {1, 2, 3}) {
    for (bool in_team : {false, true}) {
      for (int64_t n : {0, 1, 2, 5, 1000}) {
        INFO(threads << " threads, " << (in_team ? "in a team" : "no team") << ", n = " << n);
        CHECK(visits(n, threads, in_team) == std::vector<int>(static_cast<size_t>(n), 1));
      }
    }
  }
}

TEST_CASE("parallel_for_ranges cuts [0, n) into the pieces asked for, whatever the threads", "[ch10]") {
  KeepThreads keep;
  for (int threads : {1, 2}) {
    set_threads(threads);
    for (bool in_team : {false, true}) {
      std::vector<std::pair<int64_t, int64_t>> pieces;
      std::mutex mutex;
      const auto loop = [&] {
        parallel_for_ranges(10, 4, [&](int64_t begin, int64_t end) {
          const std::lock_guard<std::mutex> lock(mutex);
          pieces.emplace_back(begin, end);
        });
      };
      if (in_team) {
        // A team, even if an earlier test's team step counted as preempted
        // (under a sanitizer the serving thread, spinning, is preempted more).
        detail::team_schedule().start_over();
        run_as_thread_team(loop);
      } else {
        loop();
      }
      std::sort(pieces.begin(), pieces.end());
      INFO(threads << " threads, " << (in_team ? "in a team" : "no team"));
      CHECK(pieces == std::vector<std::pair<int64_t, int64_t>>{{0, 2}, {2, 5}, {5, 7}, {7, 10}});
    }
  }
}

namespace {

// Whether the two pieces of a loop ran on two threads at the same time:
// each piece waits (up to 10 s) for the other to start, which can only
// happen if two threads run them. thread_of_piece: the OpenMP thread of each.
bool two_pieces_met(std::vector<int>& thread_of_piece) {
  std::atomic<int> started{0}, saw_the_other{0};
  parallel_for_ranges(2, 2, [&](int64_t begin, int64_t) {
    thread_of_piece[static_cast<size_t>(begin)] = omp_get_thread_num();
    ++started;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (started.load() < 2 && std::chrono::steady_clock::now() < give_up) {
    }
    if (started.load() == 2) ++saw_the_other;  // (run one after the other, only the second does)
  });
  return saw_the_other.load() == 2;
}

}  // namespace

TEST_CASE("inside a thread team, a loop's pieces run on the team's threads at the same time", "[ch10]") {
  KeepThreads keep;
  set_threads(2);
  detail::team_schedule().start_over();  // a team, even if the machine was busy in an earlier test
  int64_t team_size = 0;
  bool met = false, met_after_a_nap = false;
  std::vector<int> thread_of_piece(2, -1), after_a_nap(2, -1);
  run_as_thread_team([&] {
    team_size = thread_count();
    met = two_pieces_met(thread_of_piece);
    // 20 ms without a loop: the other thread stops spinning and sleeps, and
    // the next loop must wake it.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    met_after_a_nap = two_pieces_met(after_a_nap);
  });
  CHECK(team_size == 2);
  CHECK(met);
  CHECK(thread_of_piece[0] != thread_of_piece[1]);
  CHECK(met_after_a_nap);
  CHECK(after_a_nap[0] != after_a_nap[1]);
}

namespace {

// The machine a TeamSchedule under test sees: 2 CPUs whose ticks the test
// advances by hand.
detail::MachineTimes g_machine;
detail::MachineTimes look_at_test_machine() { return g_machine; }
void advance_test_machine(int64_t idle_ticks, int64_t ticks, int64_t waiting_ticks = 0) {
  g_machine.idle += idle_ticks;
  g_machine.total += ticks;
  g_machine.waiting += waiting_ticks;  // our own threads, waiting for the next team
}

}  // namespace

TEST_CASE("/proc/stat's first line gives the machine's idle and total ticks", "[ch10]") {
  const std::string text =
      "cpu  100 5 40 800 20 3 2 30 0 0\n"
      "cpu0 50 2 20 400 10 1 1 15 0 0\n"
      "cpu1 50 3 20 400 10 2 1 15 0 0\n"
      "intr 12345 0 0\n";
  const detail::MachineTimes t = detail::parse_proc_stat(text);
  CHECK(t.known);
  CHECK(t.idle == 820);          // idle + iowait
  CHECK(t.total == 1000);        // the first 8 fields (guest time is inside user time)
  CHECK(t.cpus == 2);
  CHECK_FALSE(detail::parse_proc_stat("").known);
  CHECK_FALSE(detail::parse_proc_stat("cpu  100 5 40\ncpu0 1 2 3 4 5 6 7 8\n").known);  // too few fields
  CHECK_FALSE(detail::parse_proc_stat("cpu  1 2 3 x 5 6 7 8\ncpu0 1 2 3 4 5 6 7 8\n").known);
  CHECK_FALSE(detail::parse_proc_stat("cpu  1 2 3 4 5 6 7 8\n").known);  // no cpuN line
  // 2 CPUs, 100 ticks in all since the last reading, 60 of them idle: 1.2 cores stood idle.
  detail::MachineTimes later = t;
  later.idle += 60;
  later.total += 100;
  CHECK(detail::idle_cores(t, later) == Approx(1.2));
  CHECK(detail::idle_cores(t, t) == 0);  // no time has passed
  // 30 of the 40 busy ticks were this process's other threads, waiting
  // (spinning, with OMP_WAIT_POLICY=active): that core is ours, 1.8 free.
  later.waiting += 30;
  CHECK(detail::idle_cores(t, later) == Approx(1.8));
#ifdef __linux__
  const detail::MachineTimes now = detail::read_machine_times();
  CHECK(now.known);
  CHECK(now.cpus >= 1);
  CHECK(now.idle <= now.total);
#endif
}

TEST_CASE("after a step whose team was preempted, steps run alone until a core stands idle", "[ch10]") {
  g_machine = {true, 0, 0, 2};
  detail::TeamSchedule schedule(look_at_test_machine);
  CHECK(schedule.use_team(2));
  schedule.after_team_step(1, 0.001);  // one preemption proves nothing
  CHECK(schedule.use_team(2));
  schedule.after_team_step(5, 1.0);  // 5 a second: a quiet machine
  CHECK(schedule.use_team(2));
  // Steps of 2 ticks of each CPU (4 in all), each with idle_ticks_per_step
  // idle ones; returns how many ran alone before a team.
  const auto steps_until_a_team = [&](int64_t idle_ticks_per_step, int64_t most) {
    int64_t alone = 0;
    while (alone < most) {
      advance_test_machine(idle_ticks_per_step, 4);
      if (schedule.use_team(2)) break;
      ++alone;
    }
    return alone;
  };
  // Each run below starts from a busy team step (its look at the machine
  // taken then). A look needs 5 ticks of each CPU, 10 in all: the third
  // step of 4 ticks.
  const auto busy_team_step = [&] {
    schedule.start_over();
    schedule.after_team_step(/*preemptions=*/30, /*seconds=*/0.05);  // 600 a second: busy
    return schedule.runs_alone();
  };
  // The other core stays busy (another program): no team, however long.
  CHECK(busy_team_step());
  CHECK(steps_until_a_team(0, 200) == 200);
  // Half a core idle is not enough for a second thread.
  CHECK(busy_team_step());
  CHECK(steps_until_a_team(1, 200) == 200);
  // A whole core idle: a team at the first look (2 steps alone).
  CHECK(busy_team_step());
  CHECK(steps_until_a_team(2, 200) == 2);
  // A core busy with our own waiting thread only (OMP_WAIT_POLICY=active:
  // it spins while the steps run alone) is as good as an idle one.
  CHECK(busy_team_step());
  int64_t alone_beside_our_spinning_thread = 0;
  while (alone_beside_our_spinning_thread < 200) {
    advance_test_machine(0, 4, 2);
    if (schedule.use_team(2)) break;
    ++alone_beside_our_spinning_thread;
  }
  CHECK(alone_beside_our_spinning_thread == 2);
  CHECK_FALSE(schedule.runs_alone());
  // Preempted again: the next look waits twice as long (20 ticks: the fifth
  // step), then 4 times (40: the tenth) ...
  schedule.after_team_step(30, 0.05);
  CHECK(steps_until_a_team(2, 200) == 4);
  schedule.after_team_step(30, 0.05);
  CHECK(steps_until_a_team(2, 200) == 9);
  // ... and a quiet team step starts over.
  schedule.after_team_step(0, 0.05);
  schedule.after_team_step(30, 0.05);
  CHECK(steps_until_a_team(2, 200) == 2);
  // A team of 3 threads wants 1.5 idle cores: on 2 CPUs with one of them ours, never.
  schedule.after_team_step(30, 0.05);
  int64_t teams_of_3 = 0;
  for (int i = 0; i < 100; ++i) {
    advance_test_machine(2, 4);
    teams_of_3 += schedule.use_team(3);
  }
  CHECK(teams_of_3 == 0);
}

TEST_CASE("where the idle time is unknown, steps run alone 1, 2, 4 ... 64 at a time", "[ch10]") {
  detail::TeamSchedule schedule([] { return detail::MachineTimes{}; });
  const auto steps_alone_after_a_busy_step = [&] {
    schedule.after_team_step(/*preemptions=*/30, /*seconds=*/0.05);
    int64_t alone = 0;
    while (!schedule.use_team(2)) ++alone;
    return alone;
  };
  std::vector<int64_t> runs;
  for (int i = 0; i < 9; ++i) runs.push_back(steps_alone_after_a_busy_step());
  CHECK(runs == std::vector<int64_t>{1, 2, 4, 8, 16, 32, 64, 64, 64});
  schedule.after_team_step(0, 0.05);  // a quiet team step: the count starts over
  CHECK(steps_alone_after_a_busy_step() == 1);
}

TEST_CASE("a step run alone runs its loops on the calling thread", "[ch10]") {
  KeepThreads keep;
  set_threads(2);
  detail::team_schedule().start_over();
  detail::team_schedule().after_team_step(1000, 1.0);
  REQUIRE(detail::team_schedule().runs_alone());
  const std::thread::id caller = std::this_thread::get_id();
  std::vector<int> count(1000, 0);
  int elsewhere = 0;
  run_as_thread_team([&] {
    parallel_for(1000, true, [&](int64_t i) {
      ++count[static_cast<size_t>(i)];
      if (std::this_thread::get_id() != caller) ++elsewhere;
    });
  });
  CHECK(elsewhere == 0);
  CHECK(count == std::vector<int>(1000, 1));
  detail::team_schedule().start_over();  // the next step has a team, whatever the machine shows
  std::vector<int> thread_of_piece(2, -1);
  bool met = false;
  run_as_thread_team([&] { met = two_pieces_met(thread_of_piece); });
  CHECK(met);
  // An exception in a step run alone reaches the caller, and the loops
  // after it are shared again.
  detail::team_schedule().start_over();
  detail::team_schedule().after_team_step(1000, 1.0);
  REQUIRE_THROWS_MENTIONING(run_as_thread_team([] { throw Error("the step failed"); }), "the step failed");
  CHECK_FALSE(detail::step_runs_alone);
  CHECK(two_pieces_met(thread_of_piece));  // (outside a team: an OpenMP region)
  detail::team_schedule().start_over();
}

TEST_CASE("a thread team runs its task on the calling thread", "[ch10]") {
  // The step allocates its tensors and reads thread-local state (the
  // no-gradient switch) on the thread that called it: no other thread may
  // take it (with `#pragma omp single` the first to arrive did).
  KeepThreads keep;
  set_threads(2);
  const std::thread::id caller = std::this_thread::get_id();
  int elsewhere = 0;
  for (int i = 0; i < 200; ++i) {
    run_as_thread_team([&] {
      if (std::this_thread::get_id() != caller) ++elsewhere;
    });
  }
  CHECK(elsewhere == 0);
}

TEST_CASE("an exception in a loop's piece or in a team's task reaches the caller", "[ch10]") {
  KeepThreads keep;
  for (int threads : {1, 2}) {
    set_threads(threads);
    const auto failing_loop = [] {
      parallel_for(100, true, [](int64_t i) {
        if (i == 77) throw Error("element 77 is bad");
      });
    };
    INFO(threads << " threads");
    REQUIRE_THROWS_MENTIONING(failing_loop(), "element 77 is bad");
    REQUIRE_THROWS_MENTIONING(run_as_thread_team(failing_loop), "element 77 is bad");
    REQUIRE_THROWS_MENTIONING(run_as_thread_team([] { throw Error("the step failed"); }), "the step failed");
    // and the team still works after an exception
    CHECK(visits(1000, threads, true) == std::vector<int>(1000, 1));
  }
}

namespace {

// The lines of `text` (a source file) that open an OpenMP region or share a
// loop by themselves, as "path:line: text".
std::vector<std::string> openmp_regions(const std::string& path, const std::string& text) {
  std::vector<std::string> found;
  std::istringstream lines(text);
  std::string line;
  for (int number = 1; std::getline(lines, line); ++number) {
    const size_t start = line.find_first_not_of(' ');
    if (start == std::string::npos) continue;
    const std::string code = line.substr(start);
    if (code.rfind("#pragma omp parallel", 0) == 0 || code.rfind("#pragma omp for", 0) == 0 ||
        code.rfind("#pragma omp taskloop", 0) == 0) {
      found.push_back(path + ":" + std::to_string(number) + ": " + code);
    }
  }
  return found;
}

}  // namespace

TEST_CASE("every parallel loop of the library goes through parallel.hpp", "[ch10]") {
  // A `#pragma omp parallel for` of its own would run on one thread inside a
  // training step's thread team (OpenMP does not nest regions by default):
  // correct, but slow. parallel_for works in both places. The exception: chapter
  // 3's blocked matmul, a step of the matmul ladder that is never part of a
  // training step.
  namespace fs = std::filesystem;
  const fs::path root = ATTEND_SOURCE_DIR;
  std::vector<std::string> problems;
  for (const char* dir : {"src", "include"}) {
    for (const auto& entry : fs::recursive_directory_iterator(root / dir)) {
      const std::string path = fs::relative(entry.path(), root).string();
      if (!entry.is_regular_file() || path == "include/attend/parallel.hpp") continue;
      const std::string ext = entry.path().extension().string();
      if (ext != ".cpp" && ext != ".hpp") continue;
      for (const std::string& line : openmp_regions(path, attend_test::read_file(entry.path().string()))) {
        const bool ladder = path == "src/kernels/matmul.cpp" && line.find("collapse(2)") != std::string::npos;
        if (!ladder) problems.push_back(line + "  (use parallel_for from include/attend/parallel.hpp)");
      }
    }
  }
  for (const std::string& p : problems) INFO(p);
  CHECK(problems.empty());
  // and the check itself finds one
  CHECK(openmp_regions("x.cpp", "int a;\n  #pragma omp parallel for if (n > 1)\n").size() == 1);
  CHECK(openmp_regions("x.cpp", "#pragma omp simd\n").empty());
}

// ---------------------------------------------------------------------------
// Every op of the training step on all threads, with the same bits
// ---------------------------------------------------------------------------

namespace {

// Runs f on 1 thread, on 2 threads, and on 2 threads inside a thread team
// (where the loops are handed out as tasks, as in a training step), each
// time from the same inputs, and requires the same bytes in every tensor it
// returns: its outputs and gradients.
void check_same_bits_on_1_and_2_threads(const std::string& what,
                                        const std::function<std::vector<Tensor>()>& f) {
  KeepThreads keep;
  const char* runs[3] = {"1 thread", "2 threads", "2 threads in a team"};
  std::vector<std::vector<float>> by_run[3];
  for (int run = 0; run < 3; ++run) {
    set_threads(run == 0 ? 1 : 2);
    detail::team_schedule().start_over();  // (a team, however busy the machine was in the last one)
    std::vector<Tensor> results;
    if (run == 2) {
      run_as_thread_team([&] { results = f(); });
    } else {
      results = f();
    }
    for (const Tensor& t : results) by_run[run].push_back(t.to_vector());
  }
  for (int run = 1; run < 3; ++run) {
    REQUIRE(by_run[0].size() == by_run[run].size());
    for (size_t i = 0; i < by_run[0].size(); ++i) {
      INFO(what << ", result " << i << ": 1 thread against " << runs[run]);
      REQUIRE(by_run[0][i].size() == by_run[run][i].size());
      CHECK(std::memcmp(by_run[0][i].data(), by_run[run][i].data(),
                        by_run[0][i].size() * sizeof(float)) == 0);
    }
  }
}

// A fresh leaf that requires grad: N(0, 1) values from `seed`.
Tensor random_leaf(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  return randn(shape, gen).set_requires_grad();
}

}  // namespace

// Sizes above the threshold at which the loops are shared among threads
// (kParallelThreshold = 32768 elements): a batch of 64 sentences of 13 tokens.
TEST_CASE("elementwise ops with broadcasts and strided inputs: same bits on 1 and 2 threads", "[ch10]") {
  check_same_bits_on_1_and_2_threads("x + bias, x * row, relu(x^T), x^T.contiguous()", [] {
    Tensor x = random_leaf({64, 13, 128}, 1);
    Tensor bias = random_leaf({128}, 2);
    Tensor row = random_leaf({64, 1, 128}, 3);
    const Tensor y = relu((x + bias) * row) + relu(x.transpose(0, 2)).transpose(0, 2);
    sum(y * y).backward();
    return std::vector<Tensor>{y, x.grad(), bias.grad(), row.grad(),
                               x.detach().transpose(0, 1).contiguous()};
  });
}

TEST_CASE("softmax and log_softmax, forward and backward: same bits on 1 and 2 threads", "[ch10]") {
  for (int64_t dim : {-1, 1}) {
    check_same_bits_on_1_and_2_threads("softmax along " + std::to_string(dim), [dim] {
      Tensor x = random_leaf({64, 20, 40}, 4);
      const Tensor g = random_leaf({64, 20, 40}, 5).detach();
      const Tensor s = softmax(x, dim), l = log_softmax(x, dim);
      sum(s * g + l * g).backward();
      return std::vector<Tensor>{s, l, x.grad()};
    });
  }
}

TEST_CASE("the fused softmax backward equals the one written with ops", "[ch10]") {
  // y (g - sum(g y)) and g - exp(y) sum(g), as chapter 3 wrote them with ops,
  // give the very same bits as the one-pass backward.
  for (int64_t dim : {-1, 0, 1}) {
    Tensor x = random_leaf({6, 7, 9}, 6);
    const Tensor g = random_leaf({6, 7, 9}, 7).detach();
    const Tensor y = softmax(x, dim);
    y.backward(g);
    const Tensor yd = y.detach();
    CHECK(x.grad().to_vector() == (yd * (g - sum(g * yd, {dim}, true))).to_vector());
    Tensor x2 = x.detach().set_requires_grad();
    const Tensor l = log_softmax(x2, dim);
    l.backward(g);
    CHECK(x2.grad().to_vector() == (g - exp(l.detach()) * sum(g, {dim}, true)).to_vector());
  }
}

TEST_CASE("layer norm, forward and backward: same bits on 1 and 2 threads", "[ch10]") {
  check_same_bits_on_1_and_2_threads("layer_norm", [] {
    Tensor x = random_leaf({64, 13, 128}, 8);
    Tensor w = random_leaf({128}, 9);
    Tensor b = random_leaf({128}, 10);
    const Tensor y = layer_norm(x, w, b, 1e-5f);
    y.backward(random_leaf({64, 13, 128}, 11).detach());
    return std::vector<Tensor>{y, x.grad(), w.grad(), b.grad()};
  });
}

TEST_CASE("the AVX-512 dropout loop gives the portable loop's bytes", "[ch10]") {
  if (!kernels::dropout_forward_avx512_runs()) {
    WARN("this CPU has no AVX-512 (F, DQ, VL): only the portable dropout loop runs here");
    return;
  }
  std::vector<float> in(1001);  // one more than the largest end below
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i) * 0.37f - 100.0f;
  in[3] = -0.0f;
  in[4] = std::numeric_limits<float>::infinity();
  for (float p : {0.0f, 0.1f, 0.5f, 0.9f}) {
    for (int64_t begin : {0, 1, 13}) {
      for (int64_t end : {int64_t{14}, int64_t{17}, int64_t{1000}}) {
        std::vector<float> out_a(in.size(), -1.0f), out_b(in.size(), -1.0f);
        std::vector<uint8_t> keep_a(in.size(), 7), keep_b(in.size(), 7);
        const float scale = 1.0f / (1.0f - p);
        kernels::dropout_forward_portable(0x1234567u, p, scale, in.data(), out_a.data(), keep_a.data(), begin, end);
        kernels::dropout_forward_avx512(0x1234567u, p, scale, in.data(), out_b.data(), keep_b.data(), begin, end);
        INFO("p " << p << ", elements [" << begin << ", " << end << ")");
        CHECK(std::memcmp(out_a.data(), out_b.data(), out_a.size() * sizeof(float)) == 0);
        CHECK(keep_a == keep_b);
        CHECK(keep_a[static_cast<size_t>(end)] == 7);  // nothing written past end
        CHECK(keep_a[0] == (begin == 0 ? keep_b[0] : 7));  // nor before begin
      }
    }
  }
}

TEST_CASE("dropout: a counter-based mask, the same on 1 and 2 threads and as drawn one by one", "[ch10]") {
  check_same_bits_on_1_and_2_threads("dropout", [] {
    Tensor x = random_leaf({64, 13, 128}, 12);
    Generator gen(13);
    const Tensor y = dropout(x, 0.1f, true, gen);
    const Tensor y2 = dropout(x, 0.3f, true, gen);  // the stream goes on: another mask
    (y + y2).backward(random_leaf({64, 13, 128}, 14).detach());
    return std::vector<Tensor>{y, y2, x.grad(), scalar_tensor(static_cast<float>(gen.uniform()))};
  });
  // The definition: element i is kept (and scaled by 1/(1-p)) when the i-th
  // uniform() of the generator is >= p; after the call the generator has
  // moved past those numbers.
  const Tensor x = ones({3, 5, 7});
  Generator gen(15), sequential(15);
  const float p = 0.4f;
  const std::vector<float> got = dropout(x, p, true, gen).to_vector();
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i] == (sequential.uniform() >= p ? 1.0f / (1.0f - p) : 0.0f));
  }
  CHECK(gen.state() == sequential.state());
  // uniform_at(i) is the (i+1)-th next uniform(), without drawing it.
  Generator a(16), b(16);
  CHECK(a.uniform_at(0) == b.uniform());
  CHECK(a.uniform_at(1) == b.uniform());
  a.skip(2);
  CHECK(a.state() == b.state());
}

TEST_CASE("cross-entropy and embedding backward: same bits on 1 and 2 threads", "[ch10]") {
  check_same_bits_on_1_and_2_threads("cross_entropy with ignored targets and label smoothing", [] {
    Tensor logits = random_leaf({832, 99}, 17);
    std::vector<int64_t> t;
    for (int64_t i = 0; i < 832; ++i) t.push_back(i % 7 == 0 ? -100 : (i * 37) % 99);
    const Tensor loss = cross_entropy(logits, from_indices(t, {832}), -100, 0.1f);
    loss.backward();
    return std::vector<Tensor>{loss, logits.grad()};
  });
  check_same_bits_on_1_and_2_threads("embedding with repeated ids", [] {
    Tensor weight = random_leaf({64, 128}, 18);
    std::vector<int64_t> ids;
    for (int64_t i = 0; i < 832; ++i) ids.push_back((i * i) % 64);  // many repeats
    const Tensor out = embedding(weight, from_indices(ids, {64, 13}), 0);
    out.backward(random_leaf({64, 13, 128}, 19).detach());
    return std::vector<Tensor>{out, weight.grad()};
  });
}

TEST_CASE("Adam and gradient clipping: same bits on 1 and 2 threads", "[ch10]") {
  check_same_bits_on_1_and_2_threads("3 steps of AdamW with clipping", [] {
    std::vector<Tensor> params{random_leaf({512, 128}, 20), random_leaf({128}, 21),
                               random_leaf({99, 128}, 22)};
    optim::AdamW adam({{"w", params[0]}, {"b", params[1]}, {"e", params[2]}}, 1e-2f);
    std::vector<Tensor> out;
    for (int step = 0; step < 3; ++step) {
      adam.zero_grad();
      Tensor loss;
      for (size_t i = 0; i < params.size(); ++i) {
        const Tensor term = sum(params[i] * params[i] * static_cast<float>(i + 1));
        loss = loss.defined() ? loss + term : term;
      }
      loss.backward();
      out.push_back(scalar_tensor(optim::clip_grad_norm(params, 1.0f)));
      adam.step();
    }
    for (const Tensor& p : params) out.push_back(p.detach());
    return out;
  });
}


