// Mode-specific normalization: alpha and the component of every value (DESIGN.md §3).
// NumPy twin: gpuvgm/_backends/_numpy.py::transform (and _transform_block). Launched by
// gpuvgm/_backends/_cuda.py and tests/emulation/shim.cpp.
//
// Grid (blocks_x, n_columns): blockIdx.y is the column, blocks along x stride over the rows;
// blockDim.x a multiple of 32. The component is the argmax of l over the valid components, or a draw
// from the posterior keyed by (seed, column key, global row) with Philox, so it is the NumPy
// backend's component for the same row, whatever the chunking.
#include "vgm_math.cuh"

namespace gpuvgm {

// params: (n_columns, 2 + 5K) double rows [shift, inv_scale, means[K], -0.5 * precisions[K],
// log_consts[K] (all in the working frame), valid_means[K], valid_std4[K] (data units: the mean and
// 4 * std of the j-th valid component at j, zero-padded)].
// info: (n_columns, 3) int64 rows [column key, valid mask (bit k), n_valid >= 1].
template <int K>
struct TransformColumn {
  static_assert(K >= 1 && K <= kMaxComponents, "the valid mask holds kMaxComponents bits");
  const double* p;
  unsigned long long key;
  unsigned int valid;
  int n_valid;

  __device__ __forceinline__ TransformColumn(const double* params, const long long* info, int c)
      : p(params + static_cast<long long>(c) * (2 + 5 * K)),
        key(static_cast<unsigned long long>(info[3 * c])),
        valid(static_cast<unsigned int>(info[3 * c + 1])),
        n_valid(static_cast<int>(info[3 * c + 2])) {}

  __device__ __forceinline__ const double* valid_means() const { return p + 2 + 3 * K; }
  __device__ __forceinline__ const double* valid_std4() const { return p + 2 + 4 * K; }
};

// The component of one non-null value (index among the valid components). `fallbacks` counts the
// draws the float fast path left to the double path.
template <int K>
__device__ __forceinline__ int choose_component(const TransformColumn<K>& col, double xv,
                                                unsigned long long seed, unsigned long long row,
                                                int sample, float margin, unsigned int& fallbacks) {
  const double* p = col.p;
  const double xw = working(xv, p[0], p[1]);
  double l[K];
#pragma unroll
  for (int k = 0; k < K; ++k)
    l[k] = log_prob_component(xw, p[2 + k], p[2 + K + k], p[2 + 2 * K + k]);
  if (!sample) return argmax_valid(l, col.valid);
  constexpr unsigned int kStreamComponent = 0;  // gpuvgm._rng.STREAM_COMPONENT
  const double u = uniform_from_word(philox_row_word(seed, col.key, kStreamComponent, row));
  int comp = sample_valid_fast(l, col.valid, col.n_valid, u, margin);
  if (comp < 0) {
    ++fallbacks;
    comp = sample_valid_double(l, col.valid, col.n_valid, u);
  }
  return comp;
}

// alpha = (x - mean_c) / (4 std_c), clipped to [-clip, clip]; returns whether it was clipped.
template <int K>
__device__ __forceinline__ bool normalize(const TransformColumn<K>& col, double xv, int comp,
                                          double clip, double& alpha) {
  alpha = ddiv(dsub(xv, col.valid_means()[comp]), col.valid_std4()[comp]);
  if (fabs(alpha) > clip) {
    alpha = alpha > 0.0 ? clip : -clip;
    return true;
  }
  return false;
}

// counts[c * 2 + 0] += clipped values, counts[c * 2 + 1] += fallback draws: a warp sum then one
// integer atomic per warp (integer sums do not depend on the order).
__device__ __forceinline__ void add_counts(unsigned int clipped, unsigned int fallbacks,
                                           unsigned long long* counts, int c) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    clipped += __shfl_down_sync(0xffffffffu, clipped, offset);
    fallbacks += __shfl_down_sync(0xffffffffu, fallbacks, offset);
  }
  if ((threadIdx.x & 31) == 0) {
    if (clipped) atomicAdd(counts + 2 * c, static_cast<unsigned long long>(clipped));
    if (fallbacks) atomicAdd(counts + 2 * c + 1, static_cast<unsigned long long>(fallbacks));
  }
}

// x: column c at x[i * row_stride + columns[c] * col_stride]. Outputs are (n_rows, n_columns),
// C-ordered: normalized (NaN for nulls), component (-1 for nulls), null (0/1).
// sample: 0 argmax, 1 draw; margin: see sample_valid_fast (0 disables the float fast path check,
// so callers pass a positive value; a value >= 1 forces the double path everywhere).
template <typename T, int K>
__global__ void __launch_bounds__(kMaxThreads)
    transform(const T* __restrict__ x, long long n_rows, long long row_stride, long long col_stride,
              const long long* __restrict__ columns, const double* __restrict__ params,
              const long long* __restrict__ info, unsigned long long seed, long long row_offset,
              int sample, double clip, float margin, double* __restrict__ normalized,
              int* __restrict__ component, unsigned char* __restrict__ null,
              unsigned long long* __restrict__ counts) {
  const int c = blockIdx.y;
  const long long n_cols = gridDim.y;
  const T* src = x + columns[c] * col_stride;
  const TransformColumn<K> col(params, info, c);
  unsigned int clipped = 0, fallbacks = 0;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_rows;
       i += stride) {
    const double xv = static_cast<double>(src[i * row_stride]);
    const long long o = i * n_cols + c;
    if (is_nan(xv)) {
      normalized[o] = quiet_nan();
      component[o] = -1;
      null[o] = 1;
      continue;
    }
    const int comp = choose_component(col, xv, seed,
                                      static_cast<unsigned long long>(row_offset + i), sample,
                                      margin, fallbacks);
    double alpha;
    clipped += normalize(col, xv, comp, clip, alpha) ? 1u : 0u;
    normalized[o] = alpha;
    component[o] = comp;
    null[o] = 0;
  }
  add_counts(clipped, fallbacks, counts, c);
}

}  // namespace gpuvgm
