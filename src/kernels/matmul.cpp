// Matrix multiplication kernels. Chapter 3 (docs/03-operations.md) introduces
// the reference triple loop and a simple cache-blocked kernel; chapter 10
// (docs/10-speed.md) builds the fast one below them: packed panels, a 6x16
// register-blocked micro-kernel for AVX2 + FMA and a 14x32 one for AVX-512,
// picked at run time, OpenMP.
// tutorials/10-speed times all three side by side.
#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#include "attend/error.hpp"  // (for the exercises: a learner's copy throws attend::Error here)
#include "attend/kernels.hpp"
#include "attend/parallel.hpp"
#include "instruction_sets.hpp"

namespace attend::kernels {

using namespace detail;  // instruction_sets.hpp

// ===========================================================================
// Chapter 3: the reference loop and the simple blocked kernel
// ===========================================================================

void matmul_reference(const float* a, const float* b, float* c, int64_t M, int64_t K, int64_t N) {
  // c[i][j] = sum_k a[i][k] * b[k][j]
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      float s = 0.0f;
      for (int64_t k = 0; k < K; ++k) s += a[i * K + k] * b[k * N + j];
      c[i * N + j] = s;
    }
  }
}

namespace {
// Tile sizes of the simple kernel: a (kRowBlock x kInnerBlock) piece of a and
// a (kInnerBlock x N) band of b are reused while they sit in cache.
constexpr int64_t kRowBlock = 16;
constexpr int64_t kInnerBlock = 128;
}  // namespace

void matmul_blocked_simple(const float* a, const int64_t* a_offsets, const float* b,
                           const int64_t* b_offsets, float* c, int64_t batch, int64_t M, int64_t K,
                           int64_t N) {
  // Why this is faster than the reference loop:
  //  - loop order i, k, j: the innermost loop walks a row of b and a row of c
  //    with stride 1, so it reads whole cache lines and the compiler can use
  //    SIMD; the reference loop walks a column of b (stride N) instead.
  //  - blocking over k keeps a band of b in cache while a block of rows of a
  //    is multiplied with it.
  //  - the (batch, row block) pairs are independent and shared among threads.
  //    Each element of c is summed by one thread in a fixed order, so the
  //    result does not depend on the number of threads.
  // Why it is still far from the machine's peak: see "the fast kernel" below.
  const int64_t row_blocks = (M + kRowBlock - 1) / kRowBlock;
  const int64_t work = batch * M * N * K;
#pragma omp parallel for collapse(2) schedule(static) if (work >= 32768)
  for (int64_t p = 0; p < batch; ++p) {
    for (int64_t rb = 0; rb < row_blocks; ++rb) {
      const float* A = a + a_offsets[p];
      const float* B = b + b_offsets[p];
      float* C = c + p * M * N;
      const int64_t i0 = rb * kRowBlock, i1 = std::min(M, i0 + kRowBlock);
      for (int64_t i = i0; i < i1; ++i) std::fill(C + i * N, C + (i + 1) * N, 0.0f);
      for (int64_t k0 = 0; k0 < K; k0 += kInnerBlock) {
        const int64_t k1 = std::min(K, k0 + kInnerBlock);
        for (int64_t i = i0; i < i1; ++i) {
          float* c_row = C + i * N;
          for (int64_t k = k0; k < k1; ++k) {
            const float a_ik = A[i * K + k];
            const float* b_row = B + k * N;
#pragma omp simd
            for (int64_t j = 0; j < N; ++j) c_row[j] += a_ik * b_row[j];
          }
        }
      }
    }
  }
}

// ===========================================================================
// Chapter 10: the fast kernel
// ===========================================================================
//
// Why the simple kernel is slow. Its inner loop, c_row[j] += a_ik * b_row[j],
// loads a piece of c, does one multiply-add on it and stores it back. A core
// can start two 8-wide fused multiply-adds (FMA) per cycle but only about two
// loads and one store, so that loop is bound by moving c between the cache
// and the registers, at well under one FMA per cycle.
//
// The fast kernel follows the GotoBLAS / BLIS recipe, in four layers:
//
// 1. Register blocking (micro_kernel). A 6x16 tile of c is kept in 12 vector
//    registers (6 rows x 2 registers of 8 floats) for the whole k loop. Each
//    step k loads 16 floats of b (2 registers), broadcasts 6 floats of a and
//    does 12 vector FMAs: 96 multiply-adds for 8 loads, and c is read and
//    written once per tile instead of once per k. 12 accumulators + 2 for b +
//    1 for a broadcast = 15 of the 16 AVX2 registers.
//
// 2. Packing (pack_a, pack_b). The micro-kernel wants, at each step k, 6
//    consecutive floats of a and 16 consecutive floats of b. So blocks of a
//    and b are first copied into buffers laid out in exactly that order; the
//    micro-kernel then reads both strictly sequentially, which the hardware
//    prefetcher streams in with no TLB misses or cache-set conflicts from
//    large strides. The copy costs O(mk + kn) against the O(mkn) work that
//    reuses it. Packing also reads any layout: a transposed view is packed as
//    fast as a row-major matrix, so the backward pass's A^T and B^T need no
//    transposed copies. Edges are padded with zeros, so the micro-kernel
//    always runs a full 6x16 tile.
//
// 3. Cache blocking (gemm_serial). K is cut into blocks of at most kKC so that
//    one packed b micro-panel (kc x 16 floats, 16 KiB) stays in the 32 KiB L1
//    cache while every a micro-panel of the block streams past it; the packed
//    a block (mc x kc, up to 144 KiB) stays in the 512 KiB L2; the packed b
//    panel (kc x nc, up to 4 MiB) in L3.
//
// 4. Instruction set and threads (pick_kernel, matmul_strided). The build
//    targets plain x86-64, whose vectors are 4-wide SSE with no FMA; the hot
//    loop is therefore also compiled for AVX2 + FMA (8-wide vectors, a fused
//    multiply-add per instruction) and written a third time for AVX-512
//    (16-wide vectors, 32 registers: a 14x32 tile, see micro_kernel_avx512),
//    and the CPU is asked once, at run time, which ones it can run. Threads
//    take whole matrices of a batch, or slices of one big matrix, and never
//    wait for each other; or, for a long sum with a small result (a weight's
//    gradient), its k blocks, added together at the end (gemm_split_over_k).
//
// Determinism: element c[i][j] is the sum over the k blocks in order, each
// block's partial sum accumulated k by k in one register lane. That order
// depends on K alone, never on how rows or batches are shared among threads,
// so the result is bit-for-bit the same with any number of threads. It does
// not depend on the tile shape either: the AVX2 and AVX-512 kernels round
// exactly alike (one fused multiply-add per step) and give the same bits.

namespace {

// --- sizes -----------------------------------------------------------------

constexpr int64_t kMR = 6;     // rows of the portable and AVX2 register tile
constexpr int64_t kNR = 16;    // its columns (2 AVX2 vectors)
constexpr int64_t kKC = 256;   // k block: a b micro-panel is kKC x kNR floats = 16 KiB (L1)
constexpr int64_t kMC = 144;   // row block: a packed a block is kMC x kKC floats = 144 KiB (L2)
constexpr int64_t kNC = 4096;  // column block: a packed b panel is kKC x kNC floats = 4 MiB (L3)

// Products with fewer multiply-adds than this run on one thread: starting a
// parallel region and splitting the work costs a few microseconds.
constexpr int64_t kParallelWork = int64_t{1} << 18;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t multiple) { return ceil_div(a, multiple) * multiple; }

// Cuts n into the fewest blocks of at most max_block, of equal size rounded
// up to a multiple of `multiple` (K = 257 gives blocks of 129 and 128, not of
// 256 and 1). Returns the block size.
int64_t even_block(int64_t n, int64_t max_block, int64_t multiple) {
  const int64_t blocks = ceil_div(n, max_block);
  return round_up(ceil_div(n, blocks), multiple);
}

// --- one matrix read through strides ----------------------------------------

// Element (r, c) is data[r * row_stride + c * col_stride].
struct MatrixView {
  const float* data;
  int64_t row_stride, col_stride;
};

// --- packing buffers ----------------------------------------------------------

// A float buffer aligned to 64 bytes (a cache line), grown on demand and kept
// for the next call: one pair per thread (thread_local), so packing does not
// allocate once the sizes have been seen.
class PackBuffer {
 public:
  float* get(int64_t floats) {
    const auto n = static_cast<size_t>(floats);
    if (n > size_) {
      data_.reset(static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t{64})));
      size_ = n;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };
  std::unique_ptr<float[], Free> data_;
  size_t size_ = 0;
};

thread_local PackBuffer t_a_pack;
thread_local PackBuffer t_b_pack;
thread_local PackBuffer t_partial_sums;  // the k blocks' sums of a product split over k

// --- packing -----------------------------------------------------------------

// Copies rows [i0, i0 + mc) x columns [k0, k0 + kc) of A into a_pack, laid out
// as ceil(mc / MR) micro-panels of MR rows each (MR: the tile's rows):
//   a_pack: (ceil(mc / MR), kc, MR)
//   a_pack[(r / MR) * kc * MR + p * MR + r % MR] = A(i0 + r, k0 + p)
// Within a panel the MR values of one column sit side by side: exactly what
// the micro-kernel broadcasts at step p. Rows past the edge are zeros.
template <int64_t MR>
ATTEND_INLINE void pack_a(MatrixView A, int64_t i0, int64_t mc, int64_t k0, int64_t kc,
                          float* a_pack) {
  // exercise 10.1 begin: pack rows [i0, i0+mc) x cols [k0, k0+kc) of A into panels of MR rows, zero padded
  const int64_t rs = A.row_stride, cs = A.col_stride;
  for (int64_t q = 0; q < mc; q += MR) {
    const int64_t rows = std::min(MR, mc - q);
    const float* src = A.data + (i0 + q) * rs + k0 * cs;  // A(i0 + q, k0)
    float* panel = a_pack + q * kc;  // (kc, MR): after q / MR panels of kc * MR floats
    if (rows == MR) {
      // The common case: at each step p, one float from each of the MR rows
      // to MR consecutive places. The constant trip count lets the compiler
      // unroll it (the pragma asks for that at -O2).
      for (int64_t p = 0; p < kc; ++p) {
        const float* column = src + p * cs;  // A(i0 + q, k0 + p)
#pragma GCC unroll 16
        for (int64_t i = 0; i < MR; ++i) panel[p * MR + i] = column[i * rs];
      }
    } else {
      // The last, partial panel: zeros, then the rows that exist.
      std::fill(panel, panel + kc * MR, 0.0f);
      for (int64_t i = 0; i < rows; ++i) {
        for (int64_t p = 0; p < kc; ++p) panel[p * MR + i] = src[i * rs + p * cs];
      }
    }
  }
  // exercise 10.1 end
}

// Copies one micro-panel of B, rows [k0, k0 + kc) x columns [j0, j0 + cols)
// with cols <= NR (NR: the tile's columns), into
//   panel: (kc, NR)   panel[p * NR + j] = B(k0 + p, j0 + j), zero for j >= cols.
// A row-major B is copied row by row, any other layout column by column, so
// that the reads are consecutive floats whichever way B lies in memory.
template <int64_t NR>
ATTEND_INLINE void pack_b_panel(MatrixView B, int64_t k0, int64_t kc, int64_t j0, int64_t cols,
                                float* panel) {
  // exercise 10.2 begin: pack one (kc, NR) panel of B, zero padded past cols
  const int64_t rs = B.row_stride, cs = B.col_stride;
  const float* src = B.data + k0 * rs + j0 * cs;  // B(k0, j0)
  if (cs == 1 && cols == NR) {
    // Row-major B, a whole panel: row p is NR consecutive floats of row
    // k0 + p, copied with a few vector moves. (`omp simd` promises that
    // panel and src do not overlap; without it the compiler would not
    // vectorize at -O2.)
    for (int64_t p = 0; p < kc; ++p) {
#pragma omp simd
      for (int64_t j = 0; j < NR; ++j) panel[p * NR + j] = src[p * rs + j];
    }
  } else if (cs == 1) {
    // Row-major, the last, partial panel: the columns that exist, then zeros
    // (the pragma vectorizes a copy whose length the compiler cannot know).
    for (int64_t p = 0; p < kc; ++p) {
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) panel[p * NR + j] = src[p * rs + j];
      for (int64_t j = cols; j < NR; ++j) panel[p * NR + j] = 0.0f;
    }
  } else {
    // Any other layout, e.g. a transposed view (row stride 1): walk down each
    // column, which is contiguous there; the strided writes land in a panel
    // that sits in L1.
    if (cols < NR) std::fill(panel, panel + kc * NR, 0.0f);
    for (int64_t j = 0; j < cols; ++j) {
      for (int64_t p = 0; p < kc; ++p) panel[p * NR + j] = src[p * rs + j * cs];
    }
  }
  // exercise 10.2 end
}

// Copies rows [k0, k0 + kc) x columns [j0, j0 + nc) of B into b_pack, laid
// out as ceil(nc / NR) micro-panels of NR columns each:
//   b_pack: (ceil(nc / NR), kc, NR)
//   b_pack[(j / NR) * kc * NR + p * NR + j % NR] = B(k0 + p, j0 + j)
template <int64_t NR>
ATTEND_INLINE void pack_b(MatrixView B, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                          float* b_pack) {
  for (int64_t q = 0; q < nc; q += NR) {
    pack_b_panel<NR>(B, k0, kc, j0 + q, std::min(NR, nc - q), b_pack + q * kc);
  }
}

// --- the micro-kernel and the macro-kernel -----------------------------------

// The register tile: c (mr x nr of a kMR x kNR tile, row stride ldc)
//   = a_panel (kc, kMR) read as a column per step  @  b_panel (kc, kNR)
// plus the old c when `accumulate` (every k block after the first).
// acc[6][16] is small and indexed by constants only once the i loop is
// unrolled and the j loop vectorized (2 x 8 floats), so the compiler keeps it
// in 12 registers for the whole k loop: at -O2 that is what `#pragma GCC
// unroll` and `#pragma omp simd` ask for.
template <bool kFma>
ATTEND_INLINE void micro_kernel(int64_t kc, const float* __restrict a_panel,
                                const float* __restrict b_panel, float* __restrict c, int64_t ldc,
                                int64_t mr, int64_t nr, bool accumulate) {
  float acc[kMR][kNR] = {};
  // exercise 10.3 begin: the register tile: acc[i][j] += a_panel[p][i] * b_panel[p][j] for every p
  for (int64_t p = 0; p < kc; ++p) {
    const float* a = a_panel + p * kMR;  // column p of the a tile: kMR floats
    const float* b = b_panel + p * kNR;  // row p of the b tile: kNR floats
#pragma GCC unroll 6
    for (int64_t i = 0; i < kMR; ++i) {
#pragma omp simd
      for (int64_t j = 0; j < kNR; ++j) acc[i][j] = multiply_add<kFma>(a[i], b[j], acc[i][j]);
    }
  }
  // exercise 10.3 end
  // Write the tile back: whole rows of 16 in the common case, else only the
  // part inside c (the zero padding computed zeros there).
  if (mr == kMR && nr == kNR) {
    for (int64_t i = 0; i < kMR; ++i) {
      float* c_row = c + i * ldc;
      if (accumulate) {
#pragma omp simd
        for (int64_t j = 0; j < kNR; ++j) c_row[j] += acc[i][j];
      } else {
#pragma omp simd
        for (int64_t j = 0; j < kNR; ++j) c_row[j] = acc[i][j];
      }
    }
  } else {
    for (int64_t i = 0; i < mr; ++i) {
      float* c_row = c + i * ldc;
      if (accumulate) {
        for (int64_t j = 0; j < nr; ++j) c_row[j] += acc[i][j];
      } else {
        for (int64_t j = 0; j < nr; ++j) c_row[j] = acc[i][j];
      }
    }
  }
}

// c block (mc, nc), row stride ldc, (+)= packed a block (mc, kc) @ packed b
// panel (kc, nc), one register tile at a time. The j loop is outside: one b
// micro-panel (16 KiB) stays in L1 while all a micro-panels of the block
// (from L2) pass by it.
template <bool kFma>
ATTEND_INLINE void macro_kernel(const float* a_pack, const float* b_pack, float* c, int64_t ldc,
                                int64_t mc, int64_t kc, int64_t nc, bool accumulate) {
  for (int64_t j = 0; j < nc; j += kNR) {
    for (int64_t i = 0; i < mc; i += kMR) {
      micro_kernel<kFma>(kc, a_pack + i * kc, b_pack + j * kc, c + i * ldc + j, ldc,
                         std::min(kMR, mc - i), std::min(kNR, nc - j), accumulate);
    }
  }
}

// One instruction-set version of the kernel: its tile, its row block, and
// its packing and macro-kernel functions, each compiled for that instruction
// set. gemm_serial runs any of them.
using PackA = void (*)(MatrixView, int64_t, int64_t, int64_t, int64_t, float*);
using PackB = void (*)(MatrixView, int64_t, int64_t, int64_t, int64_t, float*);
using MacroKernel = void (*)(const float*, const float*, float*, int64_t, int64_t, int64_t, int64_t,
                             bool);
struct Kernel {
  const char* name;
  int64_t mr, nr;  // the register tile
  int64_t mc;      // the largest row block (a multiple of mr)
  PackA pack_a;
  PackB pack_b;
  MacroKernel macro;
};

// The portable version: compiled for the build's baseline instruction set
// (with FMA where the C library says fmaf is one fast instruction). On baseline
// x86-64 (SSE2: 16 registers of 4 floats) the 6x16 tile would need 24
// registers, so GCC keeps acc in memory instead: every step loads, multiplies,
// adds and stores it (seen in the disassembly), which is most of why this
// version is several times slower than the AVX2 one.

void pack_a_portable(MatrixView A, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* out) {
  pack_a<kMR>(A, i0, mc, k0, kc, out);
}
void pack_b_portable(MatrixView B, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* out) {
  pack_b<kNR>(B, k0, kc, j0, nc, out);
}
void macro_kernel_portable(const float* a_pack, const float* b_pack, float* c, int64_t ldc,
                           int64_t mc, int64_t kc, int64_t nc, bool accumulate) {
  macro_kernel<kBaselineHasFma>(a_pack, b_pack, c, ldc, mc, kc, nc, accumulate);
}

constexpr Kernel kPortableKernel{"portable",      kMR,           kNR, kMC, pack_a_portable,
                                 pack_b_portable, macro_kernel_portable};

// Function multiversioning by hand (instruction_sets.hpp): the same template,
// compiled a second time with AVX2 and FMA allowed, and chosen at run time
// only if the CPU has them.
#ifdef ATTEND_HAVE_AVX2_KERNEL
ATTEND_TARGET_AVX2 void pack_a_avx2(MatrixView A, int64_t i0, int64_t mc, int64_t k0, int64_t kc,
                                    float* out) {
  pack_a<kMR>(A, i0, mc, k0, kc, out);
}
ATTEND_TARGET_AVX2 void pack_b_avx2(MatrixView B, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                                    float* out) {
  pack_b<kNR>(B, k0, kc, j0, nc, out);
}
ATTEND_TARGET_AVX2 void macro_kernel_avx2(const float* a_pack, const float* b_pack, float* c,
                                          int64_t ldc, int64_t mc, int64_t kc, int64_t nc,
                                          bool accumulate) {
  macro_kernel<true>(a_pack, b_pack, c, ldc, mc, kc, nc, accumulate);
}

constexpr Kernel kAvx2Kernel{"avx2+fma", kMR, kNR, kMC, pack_a_avx2, pack_b_avx2, macro_kernel_avx2};

// --- AVX-512: a 14x32 tile in 32 registers ------------------------------------
//
// AVX-512 doubles both the vector width (16 floats) and the register count
// (32 zmm registers), so the tile grows in both directions. A tile of R rows
// and V vectors of 16 columns needs R * V accumulators, V registers for a
// row of b and (at most) one for a broadcast of a, and does R * V FMAs per
// step k for V loads of b and R broadcasts of a. The candidates that fit 32:
//   14 x 32 (V = 2): 28 + 2 + 1 = 31 registers, 28 FMAs per 16 loads
//    8 x 48 (V = 3): 24 + 3 + 1 = 28 registers, 24 FMAs per 11 loads
//   28 x 16 (V = 1): 28 + 1 + 1 = 30 registers, 28 FMAs per 29 loads
// A core runs two FMAs per cycle and each takes 4 cycles, so at least 8
// independent accumulators are needed to keep it busy; all three have
// enough. 28 x 16 needs more loads than FMAs (the load ports become the
// limit). 8 x 48 loads least, but pads a 15-wide attention block to 48
// columns. 14 x 32 keeps loads at about half the FMAs and pads less. Its
// b micro-panel is kc x 32 floats = 32 KiB at kc = 256, which fits Zen 5's
// 48 KiB L1. (kc stays 256 so that the sums, and the bits, are the same as
// the AVX2 kernel's.)
//
// Edges are cheaper than with AVX2: a partial tile runs a micro-kernel with
// only the rows and vectors it needs (micro_kernel_avx512<rows, vectors>,
// chosen from a table), and AVX-512's masked loads and stores write just
// the columns inside c. A 15 x 15 attention block then costs 14 x 16 + 1 x 16
// lanes per step, not two full 14 x 32 tiles.
//
// This one is written with intrinsics (_mm512_*: one per instruction), so
// that the registers are visible in the source: acc[i][v] is register
// zmm(2 i + v) in spirit, b_row[v] a row of b, _mm512_set1_ps a broadcast.
constexpr int64_t kMR512 = 14;
constexpr int64_t kNR512 = 32;
constexpr int64_t kVectors512 = kNR512 / 16;
constexpr int64_t kMC512 = 168;  // 12 panels of 14 rows: a 168 KiB packed a block (L2 is 1 MiB)

// Lanes [0, cols) of a 16-lane mask, for the columns of a partial vector.
__attribute__((target("avx512f"))) ATTEND_INLINE __mmask16 lanes_below(int64_t cols) {
  return cols >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << cols) - 1u);
}

// c (kRows x nr, row stride ldc) (+)= a_panel (kc, kMR512) @ b_panel (kc, kNR512),
// for the first kRows rows and kVecs vectors of the tile.
template <int kRows, int kVecs>
__attribute__((target("avx512f"))) ATTEND_INLINE void micro_kernel_avx512(
    int64_t kc, const float* __restrict a_panel, const float* __restrict b_panel,
    float* __restrict c, int64_t ldc, int64_t nr, bool accumulate) {
  __m512 acc[kRows][kVecs];
#pragma GCC unroll 16
  for (int i = 0; i < kRows; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < kVecs; ++v) acc[i][v] = _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < kc; ++p) {
    __m512 b_row[kVecs];  // row p of the b tile
#pragma GCC unroll 4
    for (int v = 0; v < kVecs; ++v) b_row[v] = _mm512_loadu_ps(b_panel + p * kNR512 + 16 * v);
    const float* a = a_panel + p * kMR512;  // column p of the a tile
#pragma GCC unroll 16
    for (int i = 0; i < kRows; ++i) {
      const __m512 a_i = _mm512_set1_ps(a[i]);  // a[i] in all 16 lanes
#pragma GCC unroll 4
      for (int v = 0; v < kVecs; ++v) acc[i][v] = _mm512_fmadd_ps(a_i, b_row[v], acc[i][v]);
    }
  }
  // Write back only the columns inside c: a masked load and store.
#pragma GCC unroll 4
  for (int v = 0; v < kVecs; ++v) {
    const __mmask16 mask = lanes_below(nr - 16 * v);
#pragma GCC unroll 16
    for (int i = 0; i < kRows; ++i) {
      float* c_row = c + i * ldc + 16 * v;
      __m512 out = acc[i][v];
      if (accumulate) out = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, c_row), out);
      _mm512_mask_storeu_ps(c_row, mask, out);
    }
  }
}

// The edge tiles: edge_kernels_avx512[rows - 1][vectors - 1] for a tile of
// 1..14 rows and 1..2 vectors (a function pointer per combination).
using MicroKernel512 = void (*)(int64_t, const float*, const float*, float*, int64_t, int64_t, bool);

template <int kRows, int kVecs>
__attribute__((target("avx512f"))) void edge_kernel_avx512(int64_t kc, const float* a_panel,
                                                           const float* b_panel, float* c,
                                                           int64_t ldc, int64_t nr,
                                                           bool accumulate) {
  micro_kernel_avx512<kRows, kVecs>(kc, a_panel, b_panel, c, ldc, nr, accumulate);
}

template <int... kRowsMinusOne>
constexpr auto make_edge_table(std::integer_sequence<int, kRowsMinusOne...>) {
  using Row = std::array<MicroKernel512, kVectors512>;
  return std::array<Row, sizeof...(kRowsMinusOne)>{
      Row{edge_kernel_avx512<kRowsMinusOne + 1, 1>, edge_kernel_avx512<kRowsMinusOne + 1, 2>}...};
}
constexpr auto edge_kernels_avx512 = make_edge_table(std::make_integer_sequence<int, kMR512>{});

// The same loops as macro_kernel: a b micro-panel (32 KiB) stays in L1 while
// the a micro-panels pass by it. Full tiles run the 14x32 kernel inlined here.
__attribute__((target("avx512f"))) void macro_kernel_avx512(const float* a_pack,
                                                             const float* b_pack, float* c,
                                                             int64_t ldc, int64_t mc, int64_t kc,
                                                             int64_t nc, bool accumulate) {
  for (int64_t j = 0; j < nc; j += kNR512) {
    const int64_t nr = std::min(kNR512, nc - j);
    for (int64_t i = 0; i < mc; i += kMR512) {
      const int64_t mr = std::min(kMR512, mc - i);
      const float* a_panel = a_pack + i * kc;
      const float* b_panel = b_pack + j * kc;
      float* c_tile = c + i * ldc + j;
      if (mr == kMR512 && nr > 16) {
        micro_kernel_avx512<kMR512, kVectors512>(kc, a_panel, b_panel, c_tile, ldc, nr,
                                                 accumulate);
      } else {
        edge_kernels_avx512[mr - 1][ceil_div(nr, 16) - 1](kc, a_panel, b_panel, c_tile, ldc, nr,
                                                          accumulate);
      }
    }
  }
}

__attribute__((target("avx512f"))) void pack_a_avx512(MatrixView A, int64_t i0, int64_t mc,
                                                       int64_t k0, int64_t kc, float* out) {
  pack_a<kMR512>(A, i0, mc, k0, kc, out);
}
__attribute__((target("avx512f"))) void pack_b_avx512(MatrixView B, int64_t k0, int64_t kc,
                                                       int64_t j0, int64_t nc, float* out) {
  pack_b<kNR512>(B, k0, kc, j0, nc, out);
}

constexpr Kernel kAvx512Kernel{"avx512",      kMR512,        kNR512,
                               kMC512,        pack_a_avx512, pack_b_avx512,
                               macro_kernel_avx512};
#endif

// The kernels this CPU can run, slowest first (asked once).
const std::vector<const Kernel*>& runnable_kernels() {
  static const std::vector<const Kernel*> kernels = [] {
    std::vector<const Kernel*> k{&kPortableKernel};
#ifdef ATTEND_HAVE_AVX2_KERNEL
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) k.push_back(&kAvx2Kernel);
    if (__builtin_cpu_supports("avx512f")) k.push_back(&kAvx512Kernel);
#endif
    return k;
  }();
  return kernels;
}

// The kernel forced by matmul_use_kernel, or null for the fastest.
std::atomic<const Kernel*> g_forced_kernel{nullptr};

const Kernel& pick_kernel() {
  const Kernel* forced = g_forced_kernel.load(std::memory_order_relaxed);
  return forced ? *forced : *runnable_kernels().back();
}

// --- the loops around the macro-kernel -----------------------------------------

// C (M, N), row stride ldc, = A (M, K) @ B (K, N), on the calling thread, with
// its own packing buffers. The block sizes: kc decides the order of the sums,
// so it depends on K alone; mc and nc only decide which tiles are computed
// together.
void gemm_serial(const Kernel& kernel, MatrixView A, MatrixView B, float* C, int64_t ldc,
                 int64_t M, int64_t K, int64_t N) {
  const int64_t kc_max = even_block(K, kKC, 1);
  const int64_t mc_max = even_block(M, kernel.mc, kernel.mr);
  const int64_t nc_max = even_block(N, kNC, kernel.nr);
  float* a_pack = t_a_pack.get(mc_max * kc_max);  // (mc / mr, kc, mr)
  float* b_pack = t_b_pack.get(nc_max * kc_max);  // (nc / nr, kc, nr)
  for (int64_t j0 = 0; j0 < N; j0 += nc_max) {
    const int64_t nc = std::min(nc_max, N - j0);
    for (int64_t k0 = 0; k0 < K; k0 += kc_max) {
      const int64_t kc = std::min(kc_max, K - k0);
      kernel.pack_b(B, k0, kc, j0, nc, b_pack);  // reused by every row block below
      for (int64_t i0 = 0; i0 < M; i0 += mc_max) {
        const int64_t mc = std::min(mc_max, M - i0);
        kernel.pack_a(A, i0, mc, k0, kc, a_pack);
        kernel.macro(a_pack, b_pack, C + i0 * ldc + j0, ldc, mc, kc, nc, /*accumulate=*/k0 > 0);
      }
    }
  }
}

// Rows [r0, r1) x columns [c0, c1) of C (row stride ldc) += bias[c0 .. c1).
void add_bias(float* C, int64_t ldc, const float* bias, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  for (int64_t r = r0; r < r1; ++r) {
    float* c_row = C + r * ldc;
#pragma omp simd
    for (int64_t j = c0; j < c1; ++j) c_row[j] += bias[j];
  }
}

// Greatest common divisor, for balancing tasks among threads.
int64_t gcd(int64_t a, int64_t b) { return b == 0 ? a : gcd(b, a % b); }

// C (M, N) = A (M, K) @ B (K, N) on `threads` threads, the sum over k split
// among them: each task computes one k block's partial product (of some of
// the columns), block 0 into C and block b into a buffer of its own; then
// C += block 1, += block 2 ... in that order. gemm_serial computes exactly
// those partial sums (a k block starts from zero in the registers, then is
// added to C), so the bits are the same as on one thread.
//
// Why: a weight's gradient, dW = dY^T X, is small (M x N: d_model x d_model)
// and its sum runs over all the batch's tokens (K: ~800). Cut by rows or
// columns of C, each thread packs all of X or all of dY, and half of what it
// reads was written by the other core in the op before (the ops before cut
// their work by tokens). Split over k, each thread reads the tokens it wrote
// itself. (128, 832) @ (832, 128) after a loop writing X and dY by halves,
// 2 threads, medians of 41 (a throwaway program): when a cache line takes
// ~450 ns between this machine's two CPUs, 160 us cut by columns against
// 109 us split over k (1 thread: 200 us); when it takes ~100 ns, 101 us
// against 98 us.
void gemm_split_over_k(const Kernel& kernel, MatrixView A, MatrixView B, float* C, int64_t M,
                       int64_t K, int64_t N, int64_t threads, const float* bias) {
  const int64_t kc = even_block(K, kKC, 1);  // gemm_serial's k blocks
  const int64_t blocks = ceil_div(K, kc);
  // Tasks: (k block, column part). With more blocks than threads and not a
  // multiple of them (3 blocks, 2 threads), the columns are cut too, so that
  // each thread gets as much work: (block 0), (block 1, left) | (block 1,
  // right), (block 2).
  const int64_t column_parts = threads / gcd(blocks, threads);
  const int64_t part_size = round_up(ceil_div(N, column_parts), kernel.nr);
  float* partial = t_partial_sums.get((blocks - 1) * M * N);  // block b at partial + (b - 1) M N
  parallel_for_ranges(blocks * column_parts, threads, [&](int64_t first, int64_t last) {
    // A piece's tasks of one block are one call over their columns, so that
    // the block's slice of A is packed once.
    for (int64_t t = first; t < last;) {
      const int64_t block = t / column_parts, k0 = block * kc, k = std::min(kc, K - k0);
      const int64_t end = std::min(last, (block + 1) * column_parts);  // this block's tasks here
      const int64_t c0 = std::min(N, t % column_parts * part_size);
      const int64_t c1 = std::min(N, ((end - 1) % column_parts + 1) * part_size);
      t = end;
      if (c1 <= c0) continue;
      float* out = block == 0 ? C : partial + (block - 1) * M * N;
      gemm_serial(kernel, {A.data + k0 * A.col_stride, A.row_stride, A.col_stride},
                  {B.data + k0 * B.row_stride + c0 * B.col_stride, B.row_stride, B.col_stride}, out + c0, N,
                  M, k, c1 - c0);
    }
  });
  parallel_for_ranges(M, threads, [&](int64_t r0, int64_t r1) {
    for (int64_t block = 1; block < blocks; ++block) {
      const float* p = partial + (block - 1) * M * N;
#pragma omp simd
      for (int64_t i = r0 * N; i < r1 * N; ++i) C[i] += p[i];
    }
    if (bias) add_bias(C, N, bias, r0, r1, 0, N);
  });
}

}  // namespace

void matmul_strided(StridedMatrices a, StridedMatrices b, float* c, int64_t batch, int64_t M,
                    int64_t K, int64_t N, const float* bias) {
  if (batch <= 0 || M <= 0 || N <= 0) return;
  if (K <= 0) {  // an empty sum
    std::fill(c, c + batch * M * N, 0.0f);
    if (bias) add_bias(c, N, bias, 0, batch * M, 0, N);
    return;
  }
  // Every matrix of b the same and those of a stacked one after another (as
  // for (B, T, D) @ (D, N)): that is one (batch * M, K) @ (K, N) product,
  // whose packed blocks of b serve all batch * M rows.
  const int64_t a0 = a.offsets[0], b0 = b.offsets[0];
  bool fold = batch > 1;
  for (int64_t p = 0; p < batch && fold; ++p) {
    fold = b.offsets[p] == b0 && a.offsets[p] == a0 + p * M * a.row_stride;
  }
  if (fold) {
    M *= batch;
    batch = 1;
  }

  // Threads. The work is cut into independent tasks, each a whole product
  // (or a slice of one) that one thread computes alone with gemm_serial, so
  // the threads never wait for each other until the end. A matrix is cut
  // into `slices` when there are fewer matrices than threads: the fewest
  // slices that make the number of tasks a multiple of the thread count (so
  // each thread gets as many), in rows or in columns of whole tiles (below).
  const Kernel& kernel = pick_kernel();
  const int64_t threads = thread_count();
  const int64_t work = M * K * N;  // multiply-adds per matrix
  // One product whose sum is much longer than its sides (weight gradients):
  // split over k (gemm_split_over_k says why), when the partial sums of its
  // k blocks fit in kMaxPartialSums floats (1 MiB, half an L2 cache here:
  // written and read back from there, they cost little). Not so for the
  // gradient of an output layer's input on a batch of short sentences,
  // (256, 4769) @ (4769, 256): 18 blocks of partial sums, 4.7 MB (seen as a
  // peak 4.5 MB higher for the d256 model), and its rows are already the
  // tokens each thread wrote.
  constexpr int64_t kMaxPartialSums = int64_t{1} << 18;
  const int64_t k_blocks = ceil_div(K, kKC);
  if (threads > 1 && batch == 1 && work >= kParallelWork && k_blocks > 1 && K >= 2 * std::max(M, N) &&
      (k_blocks - 1) * M * N <= kMaxPartialSums) {
    gemm_split_over_k(kernel, {a.data + a0, a.row_stride, a.col_stride}, {b.data + b0, b.row_stride, b.col_stride},
                      c, M, K, N, threads, bias);
    return;
  }
  int64_t slices = 1;
  if (threads > 1 && batch < 4 * threads && work >= kParallelWork) {
    slices = threads / gcd(batch, threads);
  }
  // Cut rows or columns, whichever makes the largest slice cheaper: the
  // thread with the largest slice sets the time. Slices are whole tiles, and
  // each slice packs its own copy of the operand it does not cut: all of b
  // when cutting rows, all of a when cutting columns. Packing a float costs
  // roughly kPackCost multiply-adds (the macro-kernel does ~32 a cycle, two
  // 16-wide FMAs; a pack moves a float or two a cycle). On 2 threads:
  // (832, 256) @ (256, 7000), a d_model 256 model's output layer, cuts
  // columns (each thread packs a, 0.2M floats, not b, 1.8M); (704, 128) @
  // (128, 128) cuts rows (26 + 25 tiles of 14: 3% uneven, but columns would
  // pack all of a row-major a, which gathers from 14 rows at a time: the toy
  // model's step took 32.3 and 32.6 ms that way against 31.0 and 30.9 ms,
  // runs alternated); (16, 512) @ (512, 1000) cuts columns (rows: 14 + 2).
  constexpr int64_t kPackCost = 16;
  const auto largest_slice_cost = [&](bool rows) {
    const int64_t n = rows ? M : N, tile = rows ? kernel.mr : kernel.nr;
    const int64_t largest = std::min(n, round_up(ceil_div(n, slices), tile));
    return largest * (rows ? N : M) * K + kPackCost * K * (rows ? N : M);
  };
  const bool by_rows = slices == 1 || largest_slice_cost(true) <= largest_slice_cost(false);
  const int64_t slice_size =
      round_up(ceil_div(by_rows ? M : N, slices), by_rows ? kernel.mr : kernel.nr);
  slices = ceil_div(by_rows ? M : N, slice_size);  // small sizes may give fewer

  const int64_t tasks = batch * slices;
  parallel_for(tasks, tasks > 1 && batch * work >= kParallelWork, [&](int64_t t) {
    const int64_t p = t / slices, s = t % slices;
    MatrixView A{a.data + a.offsets[p], a.row_stride, a.col_stride};
    MatrixView B{b.data + b.offsets[p], b.row_stride, b.col_stride};
    float* C = c + p * M * N;
    if (by_rows) {  // rows [r0, r0 + rows) of C: the same rows of A, all of B
      const int64_t r0 = s * slice_size, rows = std::min(slice_size, M - r0);
      A.data += r0 * a.row_stride;
      gemm_serial(kernel, A, B, C + r0 * N, N, rows, K, N);
      if (bias) add_bias(C, N, bias, r0, r0 + rows, 0, N);
    } else {  // columns [c0, c0 + cols) of C: all of A, the same columns of B
      const int64_t c0 = s * slice_size, cols = std::min(slice_size, N - c0);
      B.data += c0 * b.col_stride;
      gemm_serial(kernel, A, B, C + c0, N, M, K, cols);
      if (bias) add_bias(C, N, bias, 0, M, c0, c0 + cols);
    }
  });
}

void matmul_batched(const float* a, const int64_t* a_offsets, const float* b,
                    const int64_t* b_offsets, float* c, int64_t batch, int64_t M, int64_t K,
                    int64_t N) {
  matmul_strided({a, a_offsets, K, 1}, {b, b_offsets, N, 1}, c, batch, M, K, N);
}

const char* matmul_kernel_name() { return pick_kernel().name; }

// Chapter 12's attention kernels have a portable and an AVX2 build: they run
// the AVX2 one whenever the matmul runs anything but the portable kernel.
bool detail::use_avx2_kernels() { return &pick_kernel() != &kPortableKernel; }

std::vector<std::string> matmul_runnable_kernels() {
  std::vector<std::string> names;
  for (const Kernel* k : runnable_kernels()) names.emplace_back(k->name);
  return names;
}

bool matmul_use_kernel(const std::string& name) {
  if (name.empty()) {
    g_forced_kernel.store(nullptr, std::memory_order_relaxed);
    return true;
  }
  for (const Kernel* k : runnable_kernels()) {
    if (name == k->name) {
      g_forced_kernel.store(k, std::memory_order_relaxed);
      return true;
    }
  }
  return false;
}

void matmul_force_portable(bool force) { matmul_use_kernel(force ? "portable" : ""); }

}  // namespace attend::kernels
