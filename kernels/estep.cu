// E-step statistics, hard-assignment statistics, log-responsibilities and the pre-pass moments.
// NumPy twins: gpuvgm/_backends/_numpy.py::estep_stats, ::assign_stats, ::log_resp, ::moments.
// Launched by gpuvgm/_backends/_cuda.py (CuPy) and tests/emulation/shim.cpp (host emulation).
//
// Every statistics kernel runs on a grid (blocks_x, n_columns): blockIdx.y is the column, the
// blocks along x stride over the rows. Each thread accumulates in double, the block reduces with
// warp shuffles then shared memory in a fixed order and writes one partial row per (block, column);
// reduce_partials then sums the partials of every block in a fixed order. Nothing depends on timing,
// so the statistics are bit-identical from run to run on the same grid. blockDim.x must be a
// multiple of 32 and at most kMaxThreads.
#include "vgm_math.cuh"

// Blocks of kMaxThreads per SM the E-step kernel is compiled for (its register budget); a define
// so that a benchmark can try others without editing the file.
#ifndef GPUVGM_ESTEP_MIN_BLOCKS
#define GPUVGM_ESTEP_MIN_BLOCKS 1
#endif

namespace gpuvgm {

constexpr int kMaxWarps = kMaxThreads / 32;
constexpr unsigned int kFullMask = 0xffffffffu;

// ---------------------------------------------------------------------------------------------
// Reductions
// ---------------------------------------------------------------------------------------------
struct SumOp {
  __device__ __forceinline__ double operator()(int, double a, double b) const { return a + b; }
};

// Moments partials are [count, sum, min, max, n_null]: slots 2 and 3 take min and max.
struct MomentsOp {
  __device__ __forceinline__ double operator()(int v, double a, double b) const {
    return v == 2 ? vmin(a, b) : v == 3 ? vmax(a, b) : a + b;
  }
};

// Reduces acc over the block; threads 0..V-1 write out[v]. The order of every addition is fixed by
// the lane and warp numbers alone. The values stay in registers (the loops over v are unrolled).
template <int V, class Op>
__device__ __forceinline__ void block_reduce_store(double (&acc)[V], double* out, Op op) {
  __shared__ double smem[kMaxWarps][V];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int n_warps = blockDim.x >> 5;
#pragma unroll
  for (int v = 0; v < V; ++v) {
    double a = acc[v];
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
      a = op(v, a, __shfl_down_sync(kFullMask, a, offset));
    if (lane == 0) smem[warp][v] = a;
  }
  __syncthreads();
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    double s = smem[0][v];
    for (int w = 1; w < n_warps; ++w) s = op(v, s, smem[w][v]);
    out[v] = s;
  }
}

// out[i] = sum over blocks b of partials[b * n_slots + i], one CUDA block per slot, in a fixed
// order (thread t sums b = t, t + blockDim, ...; then the block reduction).
__global__ void __launch_bounds__(kMaxThreads)
    reduce_partials(const double* __restrict__ partials, long long n_blocks, long long n_slots,
                    double* __restrict__ out) {
  const long long slot = blockIdx.x;
  double acc[1] = {0.0};
  for (long long b = threadIdx.x; b < n_blocks; b += blockDim.x) acc[0] += partials[b * n_slots + slot];
  block_reduce_store(acc, out + slot, SumOp{});
}

// ---------------------------------------------------------------------------------------------
// E-step: N_k, S1_k, S2_k, H, log_prob, count (DESIGN.md §2)
// ---------------------------------------------------------------------------------------------

// How a compute type evaluates l_k and r_k. Float works in base 2 so that one MUFU.EX2 is the whole
// exponential; its sums of log-values are converted to nats once, at the end (`kUnit`).
template <typename CT>
struct EstepMath;

template <>
struct EstepMath<float> {
  static constexpr double kScale = kLog2e;  // l2_k = l_k / ln 2
  static constexpr double kUnit = kLn2;
  // Rows accumulated in float before they are added to the double accumulators: the float sums
  // of kRows terms keep 1e-7 relative, and the float->double conversions (16/clk/SM on sm_80/90,
  // an eighth of the FP32 rate) are paid once per kRows rows.
  static constexpr int kRows = 4;
  static constexpr bool kTiled = true;
  static constexpr bool kSplit = true;  // x' and m_k as float hi + lo (see estep_row)
  static __device__ __forceinline__ float exp(float v) { return fast_exp2(v); }
  // The accurate log2f (not lg2.approx, whose absolute error would bias H): once per value.
  static __device__ __forceinline__ float log(float v) { return log2f(v); }
};

template <>
struct EstepMath<double> {
  static constexpr double kScale = 1.0;
  static constexpr double kUnit = 1.0;
  static constexpr int kRows = 2;
  static constexpr bool kTiled = false;
  static constexpr bool kSplit = false;
  static __device__ __forceinline__ double exp(double v) { return ::exp(v); }
  static __device__ __forceinline__ double log(double v) { return ::log(v); }
};

// Slots of a statistics row: N_k, S1_k, S2_k for k < K, then H, log_prob, count.
template <int K>
struct Slots {
  static_assert(K >= 1 && K <= kMaxComponents, "K components are kept in registers");
  static constexpr int kN = 0, kS1 = K, kS2 = 2 * K, kH = 3 * K, kLogProb = 3 * K + 1,
                       kCount = 3 * K + 2, kSize = 3 * K + 3;
};

// col[i * row_stride], or NaN (skipped like a null) past the last row.
template <typename T>
__device__ __forceinline__ T load_or_nan(const T* col, long long i, long long n_rows,
                                         long long row_stride) {
  return i < n_rows ? col[i * row_stride] : static_cast<T>(quiet_nan());
}

// One value's contribution, accumulated into `acc` (float tile or double accumulators).
// x' arrives as xh + xl and m_k as mh_k + ml_k (float hi and lo parts; lo = 0 in double): the
// difference d = (xh - mh) + (xl - ml) keeps float's relative precision on d itself instead of on
// |x'|, which the quadratic would amplify by prec_k |d| (narrow components: 1e-5 per row).
template <typename CT, int K, typename A>
__device__ __forceinline__ void estep_row(CT xh, CT xl, const CT (&mh)[K], const CT (&ml)[K],
                                          const CT (&quad)[K], const CT (&cst)[K],
                                          A (&acc)[Slots<K>::kSize]) {
  using M = EstepMath<CT>;
  using S = Slots<K>;
  CT l[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const CT d = M::kSplit ? (xh - mh[k]) + (xl - ml[k]) : xh - mh[k];
    l[k] = quad[k] * (d * d) + cst[k];  // l_k - C_ref (base 2 for float)
  }
  CT mx = l[0];
#pragma unroll
  for (int k = 1; k < K; ++k) mx = vmax(mx, l[k]);
  CT e[K];
  CT s = CT(0);
#pragma unroll
  for (int k = 0; k < K; ++k) {
    l[k] -= mx;
    e[k] = M::exp(l[k]);
    s += e[k];
  }
  const CT inv = CT(1) / s;
  const CT xw = xh;
  const CT xw2 = xw * xw;
  CT h = CT(0);
#pragma unroll
  for (int k = 0; k < K; ++k) {
    CT r = e[k] * inv;
    acc[S::kN + k] += r;
    acc[S::kS1 + k] += r * xw;
    acc[S::kS2 + k] += r * xw2;
    h += r * l[k];
  }
  // sum_k r log r = sum_k r (l_k - max) - log s;  log p(x) = max + log s  (as the NumPy twin)
  const CT log_s = M::log(s);
  acc[S::kH] += h - log_s;
  acc[S::kLogProb] += mx + log_s;
  acc[S::kCount] += A(1);
}

// x' = (x - shift) * inv_scale in double, then as the compute type's hi and lo parts.
template <typename CT, typename T>
__device__ __forceinline__ void working_parts(T v, double shift, double inv_scale, CT& xh, CT& xl) {
  const double xd = (static_cast<double>(v) - shift) * inv_scale;
  xh = static_cast<CT>(xd);
  xl = EstepMath<CT>::kSplit ? static_cast<CT>(xd - static_cast<double>(xh)) : CT(0);
}

// params: (n_columns, 2 + 3K) double rows [shift, inv_scale, means[K], -0.5 * precisions[K],
// log_consts[K]] in the working frame; columns: (n_columns,) positions in the chunk, so the column
// c of the launch is x[i * row_stride + columns[c] * col_stride] (strides in elements: C- and
// F-ordered arrays, column slices and separate buffers are all one base pointer away).
// partials: (gridDim.x, gridDim.y, 3K + 3) double.
template <typename T, typename CT, int K>
__global__ void __launch_bounds__(kMaxThreads, GPUVGM_ESTEP_MIN_BLOCKS)
    estep_stats(const T* __restrict__ x, long long n_rows, long long row_stride,
                long long col_stride, const long long* __restrict__ columns,
                const double* __restrict__ params, double* __restrict__ partials) {
  using M = EstepMath<CT>;
  using S = Slots<K>;
  // Float tiles cost 3K + 3 more registers: past K = 16 they would spill, so large K accumulates
  // each row straight into double.
  constexpr bool kTiled = M::kTiled && K <= 16;
  constexpr int R = kTiled ? M::kRows : 2;
  const int c = blockIdx.y;
  const T* col = x + columns[c] * col_stride;
  const double* p = params + static_cast<long long>(c) * (2 + 3 * K);
  const double shift = p[0];
  const double inv_scale = p[1];
  // The constants relative to the largest, C_ref, added back (times the count) at the end: small
  // values keep more of float's digits, and only differences of l_k matter to r.
  double c_ref = p[2 + 2 * K];
#pragma unroll
  for (int k = 1; k < K; ++k) c_ref = vmax(c_ref, p[2 + 2 * K + k]);
  CT mh[K], ml[K], quad[K], cst[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    mh[k] = static_cast<CT>(p[2 + k]);
    ml[k] = M::kSplit ? static_cast<CT>(p[2 + k] - static_cast<double>(mh[k])) : CT(0);
    quad[k] = static_cast<CT>(p[2 + K + k] * M::kScale);
    cst[k] = static_cast<CT>((p[2 + 2 * K + k] - c_ref) * M::kScale);
  }
  double acc[S::kSize];
#pragma unroll
  for (int v = 0; v < S::kSize; ++v) acc[v] = 0.0;

  // Software pipelining: the loads of the next R rows are in flight while these R are computed,
  // which hides the memory latency even at the low occupancy that 3K + 3 double accumulators allow.
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  long long i0 = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  T next[R];
#pragma unroll
  for (int j = 0; j < R; ++j) next[j] = load_or_nan(col, i0 + j * stride, n_rows, row_stride);
  for (; i0 < n_rows; i0 += R * stride) {
    T v[R];
#pragma unroll
    for (int j = 0; j < R; ++j) {
      v[j] = next[j];
      next[j] = load_or_nan(col, i0 + (R + j) * stride, n_rows, row_stride);
    }
    if constexpr (kTiled) {
      CT tile[S::kSize];
#pragma unroll
      for (int s = 0; s < S::kSize; ++s) tile[s] = CT(0);
#pragma unroll
      for (int j = 0; j < R; ++j) {
        if (is_nan(v[j])) continue;
        CT xh, xl;
        working_parts(v[j], shift, inv_scale, xh, xl);
        estep_row<CT, K>(xh, xl, mh, ml, quad, cst, tile);
      }
#pragma unroll
      for (int s = 0; s < S::kSize; ++s) acc[s] += static_cast<double>(tile[s]);
    } else {
#pragma unroll
      for (int j = 0; j < R; ++j) {
        if (is_nan(v[j])) continue;
        CT xh, xl;
        working_parts(v[j], shift, inv_scale, xh, xl);
        estep_row<CT, K>(xh, xl, mh, ml, quad, cst, acc);
      }
    }
  }
  acc[S::kH] *= M::kUnit;
  acc[S::kLogProb] = acc[S::kLogProb] * M::kUnit + c_ref * acc[S::kCount];
  const long long row = static_cast<long long>(blockIdx.x) * gridDim.y + blockIdx.y;
  block_reduce_store(acc, partials + row * S::kSize, SumOp{});
}

// ---------------------------------------------------------------------------------------------
// Hard assignment to the nearest center (k-means labels; ties to the lowest index)
// ---------------------------------------------------------------------------------------------

// params: (n_columns, 2 + K) double rows [shift, inv_scale, centers[K]] (working frame).
// partials: (gridDim.x, gridDim.y, 3K + 3) double, H and log_prob left at 0.
template <typename T, int K>
__global__ void __launch_bounds__(kMaxThreads)
    assign_stats(const T* __restrict__ x, long long n_rows, long long row_stride,
                 long long col_stride, const long long* __restrict__ columns,
                 const double* __restrict__ params, double* __restrict__ partials) {
  using S = Slots<K>;
  const int c = blockIdx.y;
  const T* col = x + columns[c] * col_stride;
  const double* p = params + static_cast<long long>(c) * (2 + K);
  const double shift = p[0];
  const double inv_scale = p[1];
  double center[K];
#pragma unroll
  for (int k = 0; k < K; ++k) center[k] = p[2 + k];
  double acc[S::kSize];
#pragma unroll
  for (int v = 0; v < S::kSize; ++v) acc[v] = 0.0;

  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_rows;
       i += stride) {
    const T v = col[i * row_stride];
    if (is_nan(v)) continue;
    // The same double operations as the NumPy twin: argmin_k |x' - center_k|, first on ties.
    const double xw = working(static_cast<double>(v), shift, inv_scale);
    int best = 0;
    double best_d = fabs(dsub(xw, center[0]));
#pragma unroll
    for (int k = 1; k < K; ++k) {
      double d = fabs(dsub(xw, center[k]));
      if (d < best_d) {
        best_d = d;
        best = k;
      }
    }
    // Predicated adds keep acc in registers (an index known only at run time would not).
    const double xw2 = xw * xw;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const bool hit = k == best;
      acc[S::kN + k] += hit ? 1.0 : 0.0;
      acc[S::kS1 + k] += hit ? xw : 0.0;
      acc[S::kS2 + k] += hit ? xw2 : 0.0;
    }
    acc[S::kCount] += 1.0;
  }
  const long long row = static_cast<long long>(blockIdx.x) * gridDim.y + blockIdx.y;
  block_reduce_store(acc, partials + row * S::kSize, SumOp{});
}

// ---------------------------------------------------------------------------------------------
// log p(k | x) over all K components
// ---------------------------------------------------------------------------------------------

// params as estep_stats; out: (n_rows, gridDim.y, K) double, C-ordered; NaN rows for nulls.
template <typename T, int K>
__global__ void __launch_bounds__(kMaxThreads)
    log_resp(const T* __restrict__ x, long long n_rows, long long row_stride, long long col_stride,
             const long long* __restrict__ columns, const double* __restrict__ params,
             double* __restrict__ out) {
  const int c = blockIdx.y;
  const T* col = x + columns[c] * col_stride;
  const double* p = params + static_cast<long long>(c) * (2 + 3 * K);
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_rows;
       i += stride) {
    double* o = out + (i * gridDim.y + c) * K;
    const T v = col[i * row_stride];
    if (is_nan(v)) {
#pragma unroll
      for (int k = 0; k < K; ++k) o[k] = quiet_nan();
      continue;
    }
    const double xw = working(static_cast<double>(v), p[0], p[1]);
    double l[K];
#pragma unroll
    for (int k = 0; k < K; ++k) l[k] = log_prob_component(xw, p[2 + k], p[2 + K + k], p[2 + 2 * K + k]);
    const double mx = max_all(l);
    double s = 0.0;
#pragma unroll
    for (int k = 0; k < K; ++k) s += exp(l[k] - mx);
    const double lse = mx + log(s);
#pragma unroll
    for (int k = 0; k < K; ++k) o[k] = l[k] - lse;
  }
}

// ---------------------------------------------------------------------------------------------
// Pre-pass moments, two passes as the NumPy twin (mean, then the sum of squared deviations)
// ---------------------------------------------------------------------------------------------

// partials: (gridDim.x, gridDim.y, 5) double [count, sum, min, max, n_null]; infinities propagate.
template <typename T>
__global__ void __launch_bounds__(kMaxThreads)
    moments_sums(const T* __restrict__ x, long long n_rows, long long row_stride,
                 long long col_stride, const long long* __restrict__ columns,
                 double* __restrict__ partials) {
  const T* col = x + columns[blockIdx.y] * col_stride;
  double acc[5] = {0.0, 0.0, infinity(), -infinity(), 0.0};
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_rows;
       i += stride) {
    const double v = static_cast<double>(col[i * row_stride]);
    if (is_nan(v)) {
      acc[4] += 1.0;
      continue;
    }
    acc[0] += 1.0;
    acc[1] += v;
    acc[2] = vmin(acc[2], v);
    acc[3] = vmax(acc[3], v);
  }
  const long long row = static_cast<long long>(blockIdx.x) * gridDim.y + blockIdx.y;
  block_reduce_store(acc, partials + row * 5, MomentsOp{});
}

// partials: (gridDim.x, gridDim.y, 1) double, sum of (x - mean[c])**2 over non-null values.
template <typename T>
__global__ void __launch_bounds__(kMaxThreads)
    moments_m2(const T* __restrict__ x, long long n_rows, long long row_stride,
               long long col_stride, const long long* __restrict__ columns,
               const double* __restrict__ mean, double* __restrict__ partials) {
  const T* col = x + columns[blockIdx.y] * col_stride;
  const double m = mean[blockIdx.y];
  double acc[1] = {0.0};
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_rows;
       i += stride) {
    const double v = static_cast<double>(col[i * row_stride]);
    if (!is_nan(v)) acc[0] += (v - m) * (v - m);
  }
  const long long row = static_cast<long long>(blockIdx.x) * gridDim.y + blockIdx.y;
  block_reduce_store(acc, partials + row, SumOp{});
}

}  // namespace gpuvgm
