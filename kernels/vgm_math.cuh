// Per-element math shared by the CUDA kernels and their host builds.
// NumPy twins: gpuvgm/_rng.py (philox4x32_10, uniform), gpuvgm/_backends/_numpy.py
// (_working, _log_prob_block, _transform_block). Every function here is __host__ __device__ so the
// host (tests/emulation) compiles and checks the very code the GPU runs.
//
// Compiles under nvcc, NVRTC (CuPy; no standard headers there, hence no <cstdint>/<cmath>) and g++
// with cuda_emulation.h (GPUVGM_HOST_EMULATION).
#ifndef GPUVGM_VGM_MATH_CUH
#define GPUVGM_VGM_MATH_CUH

#if !defined(__CUDACC__) && !defined(__CUDACC_RTC__) && !defined(GPUVGM_HOST_EMULATION)
// A plain host compile of this header (no kernels): the CUDA qualifiers mean nothing.
#include <cmath>
#define __host__
#define __device__
#define __forceinline__ inline
#endif

#define GPUVGM_HD __host__ __device__ __forceinline__

namespace gpuvgm {

constexpr double kLog2e = 1.4426950408889634074;  // 1 / ln 2
constexpr double kLn2 = 0.69314718055994530942;
constexpr double kTwoPowMinus32 = 2.3283064365386962890625e-10;
// gpuvgm._model.SAMPLE_PROB_FLOOR and STD_MULTIPLIER (the launchers pass 4 * std precomputed).
constexpr double kSampleProbFloor = 1e-6;

// Threads per block of every kernel and the largest K a kernel is instantiated for. The CUDA
// backend passes both from Python (-DGPUVGM_THREADS from gpuvgm/_backends/_cuda.py::THREADS,
// -DGPUVGM_MAX_K from gpuvgm/_validation.py::MAX_COMPONENTS); these defaults serve a file compiled
// on its own and equal them (tests/test_kernels_compile.py checks).
#ifndef GPUVGM_THREADS
#define GPUVGM_THREADS 256
#endif
#ifndef GPUVGM_MAX_K
#define GPUVGM_MAX_K 32
#endif
constexpr int kMaxThreads = GPUVGM_THREADS;
constexpr int kMaxComponents = GPUVGM_MAX_K;
static_assert(kMaxThreads % 32 == 0 && kMaxThreads <= 1024, "whole warps, at most 1024 threads");
// The valid components travel as a 32-bit mask.
static_assert(kMaxComponents >= 1 && kMaxComponents <= 32, "1 <= K <= 32");

// ---------------------------------------------------------------------------------------------
// IEEE-exact double arithmetic. nvcc contracts a * b + c into one FMA by default, which rounds once
// instead of twice; NumPy rounds twice. The transform's argmax and sampled component must equal
// the NumPy backend's, so the paths that decide them use these (never contracted) operations.
// ---------------------------------------------------------------------------------------------
GPUVGM_HD double dadd(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
GPUVGM_HD double dsub(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
GPUVGM_HD double dmul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
GPUVGM_HD double ddiv(double a, double b) {
#ifdef __CUDA_ARCH__
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}

template <typename F>
GPUVGM_HD bool is_nan(F v) {
  return v != v;  // valid without -ffast-math / --use_fast_math, which no build here uses
}

template <typename F>
GPUVGM_HD F vmax(F a, F b) {
  return a < b ? b : a;
}
template <typename F>
GPUVGM_HD F vmin(F a, F b) {
  return b < a ? b : a;
}

GPUVGM_HD double quiet_nan() {
#ifdef __CUDA_ARCH__
  return __longlong_as_double(0x7ff8000000000000LL);
#else
  return __builtin_nan("");
#endif
}
GPUVGM_HD double infinity() {
#ifdef __CUDA_ARCH__
  return __longlong_as_double(0x7ff0000000000000LL);
#else
  return __builtin_inf();
#endif
}

// 2**v with the hardware's MUFU.EX2 (ex2.approx.ftz.f32: <= 2 ulp, denormal results flushed to 0).
// The E-step's float compute path spends most of its time here (DESIGN.md §5: K exps per value).
GPUVGM_HD float fast_exp2(float v) {
#ifdef __CUDA_ARCH__
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
  return r;
#elif defined(GPUVGM_HOST_EMULATION)
  // Model the hardware's error so the host tests check tolerances with it: flush denormals, and
  // move the correctly rounded result by up to 2 ulp, deterministically from the argument's bits.
  float r = exp2f(v);
  if (r < 1.17549435e-38f) return 0.0f;
  unsigned int bits = __float_as_uint(v);
  int ulps = static_cast<int>((bits ^ (bits >> 7) ^ (bits >> 13)) % 5u) - 2;  // -2 .. 2
  return __uint_as_float(__float_as_uint(r) + ulps);
#else
  return exp2f(v);
#endif
}

// ---------------------------------------------------------------------------------------------
// Working frame and per-component log-density (DESIGN.md §2), double, in NumPy's operation order.
// ---------------------------------------------------------------------------------------------

// |x'| beyond this only happens at transform time, far outside the fitted data: (x' - m)**2 would
// overflow, every l_k be -inf and the posterior NaN; clamped, it keeps its limit exactly.
// gpuvgm._backends._api.WORKING_MAX.
constexpr double kWorkingMax = 1e100;

// x' = (x - shift) * (1 / scale) clamped to +-kWorkingMax (NaN stays NaN, as np.clip); NumPy twin
// `_working` (inv_scale = 1.0 / scale, computed once).
GPUVGM_HD double working(double x, double shift, double inv_scale) {
  const double w = dmul(dsub(x, shift), inv_scale);
  return w > kWorkingMax ? kWorkingMax : (w < -kWorkingMax ? -kWorkingMax : w);
}

// l_k(x') = C_k + (-0.5 prec_k) (x' - m_k)**2; NumPy twin `_log_prob_block`, which computes
// ((x' - m) * (x' - m)) * nhp + C with two roundings per product.
GPUVGM_HD double log_prob_component(double xw, double mean, double neg_half_prec, double log_const) {
  double d = dsub(xw, mean);
  return dadd(dmul(dmul(d, d), neg_half_prec), log_const);
}

// ---------------------------------------------------------------------------------------------
// Philox4x32-10 (Salmon et al., SC'11); NumPy twin gpuvgm/_rng.py::philox4x32_10.
// ---------------------------------------------------------------------------------------------
struct PhiloxWords {
  unsigned int w0, w1, w2, w3;
};

GPUVGM_HD PhiloxWords philox4x32_10(unsigned int c0, unsigned int c1, unsigned int c2,
                                    unsigned int c3, unsigned int k0, unsigned int k1) {
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    // A 32x32 -> 64-bit product: nvcc emits one IMAD.WIDE; the high half is mulhi.
    unsigned long long p0 = static_cast<unsigned long long>(c0) * 0xD2511F53u;
    unsigned long long p1 = static_cast<unsigned long long>(c2) * 0xCD9E8D57u;
    unsigned int n0 = static_cast<unsigned int>(p1 >> 32) ^ c1 ^ k0;
    unsigned int n2 = static_cast<unsigned int>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<unsigned int>(p1);
    c3 = static_cast<unsigned int>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return PhiloxWords{c0, c1, c2, c3};
}

// The word of global row `row` of `column`: word row % 4 of the block counter row / 4
// (gpuvgm._rng.random_words; equal to cuRAND's curand() after curand_init(seed, column, row) for
// stream 0).
GPUVGM_HD unsigned int philox_row_word(unsigned long long seed, unsigned long long column,
                                       unsigned int stream, unsigned long long row) {
  unsigned long long q = row >> 2;
  PhiloxWords w = philox4x32_10(static_cast<unsigned int>(q), static_cast<unsigned int>(q >> 32),
                                static_cast<unsigned int>(column), stream,
                                static_cast<unsigned int>(seed),
                                static_cast<unsigned int>(seed >> 32));
  // Selects, not an indexed array: an array indexed at run time would live in local memory.
  unsigned int lane = static_cast<unsigned int>(row & 3u);
  return lane == 0 ? w.w0 : lane == 1 ? w.w1 : lane == 2 ? w.w2 : w.w3;
}

// u in the open interval (0, 1): (word + 0.5) * 2**-32, exactly as gpuvgm._rng.uniform.
GPUVGM_HD double uniform_from_word(unsigned int word) {
  return (static_cast<double>(word) + 0.5) * kTwoPowMinus32;
}

// ---------------------------------------------------------------------------------------------
// Component choice (NumPy twin `_transform_block`). `l` holds l_k for all K components; `valid` is
// the column's mask of valid components (bit k), `n_valid` its popcount. Valid components are
// numbered in increasing k, as `l[:, valid]` orders them.
// ---------------------------------------------------------------------------------------------

// First maximum of l over the valid components, as np.argmax(l[:, valid]).
template <int K>
GPUVGM_HD int argmax_valid(const double (&l)[K], unsigned int valid) {
  int comp = 0, j = 0;
  double best = 0.0;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    if ((valid >> k) & 1u) {
      if (j == 0 || l[k] > best) {  // strict: ties keep the first
        best = l[k];
        comp = j;
      }
      ++j;
    }
  }
  return comp;
}

template <int K>
GPUVGM_HD double max_all(const double (&l)[K]) {
  double mx = l[0];
#pragma unroll
  for (int k = 1; k < K; ++k) mx = vmax(mx, l[k]);
  return mx;
}

// Inverse-CDF draw in double, operation for operation as NumPy: r = exp(l - max) * (1 / sum),
// w = r[valid] + 1e-6, cdf = cumsum(w), target = u * cdf[-1],
// component = min(count(cdf <= target), n_valid - 1). Only the exponentials (<= 1 ulp apart from
// NumPy's) and the order of the K-term sum can differ, which moves a cdf boundary by a few ulp.
template <int K>
GPUVGM_HD int sample_valid_double(const double (&l)[K], unsigned int valid, int n_valid, double u) {
  double mx = max_all(l);
  double e[K];
  double s = 0.0;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    e[k] = exp(dsub(l[k], mx));
    s = dadd(s, e[k]);
  }
  double inv = ddiv(1.0, s);
  double cdf = 0.0;
#pragma unroll
  for (int k = 0; k < K; ++k)
    if ((valid >> k) & 1u) cdf = dadd(cdf, dadd(dmul(e[k], inv), kSampleProbFloor));
  double target = dmul(u, cdf);
  int count = 0;
  cdf = 0.0;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    if ((valid >> k) & 1u) {
      cdf = dadd(cdf, dadd(dmul(e[k], inv), kSampleProbFloor));
      count += cdf <= target ? 1 : 0;
    }
  }
  return vmin(count, n_valid - 1);
}

// The same draw in float with MUFU exponentials: returns the component, or -1 when the target lies
// within `margin` (relative to the cdf's total) of a decisive cdf boundary, where float rounding
// (a few 1e-6 at most) could disagree with the double draw. The caller then redoes the draw with
// sample_valid_double, so the result always equals the double (NumPy) draw while the common case
// costs float exponentials. The last boundary is never decisive: the clamp to n_valid - 1 hides it.
template <int K>
GPUVGM_HD int sample_valid_fast(const double (&l)[K], unsigned int valid, int n_valid, double u,
                                float margin) {
  double mx = max_all(l);
  float e[K];
  float s = 0.0f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    e[k] = fast_exp2(static_cast<float>((l[k] - mx) * kLog2e));
    s += e[k];
  }
  float inv = 1.0f / s;
  float total = 0.0f;
#pragma unroll
  for (int k = 0; k < K; ++k)
    if ((valid >> k) & 1u) total += e[k] * inv + static_cast<float>(kSampleProbFloor);
  float target = static_cast<float>(u) * total;
  float tol = margin * total;
  int count = 0, j = 0;
  bool ambiguous = false;
  float cdf = 0.0f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    if ((valid >> k) & 1u) {
      cdf += e[k] * inv + static_cast<float>(kSampleProbFloor);
      if (j < n_valid - 1) {
        count += cdf <= target ? 1 : 0;
        ambiguous |= fabsf(cdf - target) <= tol;
      }
      ++j;
    }
  }
  return ambiguous ? -1 : count;
}

}  // namespace gpuvgm

#endif  // GPUVGM_VGM_MATH_CUH
