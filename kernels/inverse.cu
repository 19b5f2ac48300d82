// The way back: x = 4 std_c alpha + mean_c (DESIGN.md §3).
// NumPy twin: gpuvgm/_backends/_numpy.py::inverse. Launched by gpuvgm/_backends/_cuda.py and
// tests/emulation/shim.cpp.
#include "vgm_math.cuh"

namespace gpuvgm {

// Grid (blocks_x, n_columns). alpha and component: column c at ptr[i * row_stride + c * col_stride]
// (any layout). params: (n_columns, 2 * n_components) double rows [valid_means[K], valid_std4[K]]
// in data units (the j-th valid component's mean and 4 * std at j); n_valid: (n_columns,).
// out: (n_rows, n_columns) double, C-ordered; NaN where alpha is NaN. The component is clamped to
// [0, n_valid - 1] (the twin clips at 0 and expects validated input; the clamp keeps every read in
// bounds whatever the input).
template <typename AT, typename IT>
__global__ void __launch_bounds__(kMaxThreads)
    inverse(const AT* __restrict__ alpha, long long a_row_stride, long long a_col_stride,
            const IT* __restrict__ component, long long c_row_stride, long long c_col_stride,
            long long n_rows, const double* __restrict__ params, int n_components,
            const long long* __restrict__ n_valid, double* __restrict__ out) {
  const int c = blockIdx.y;
  const long long n_cols = gridDim.y;
  const double* means = params + 2LL * n_components * c;
  const double* std4 = means + n_components;
  const long long last = n_valid[c] - 1;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_rows;
       i += stride) {
    const double a = static_cast<double>(alpha[i * a_row_stride + c * a_col_stride]);
    long long comp = static_cast<long long>(component[i * c_row_stride + c * c_col_stride]);
    comp = vmin(vmax(comp, 0LL), last);
    // (4 std) * alpha + mean, rounded twice as NumPy does (no FMA).
    out[i * n_cols + c] = dadd(dmul(std4[comp], a), means[comp]);
  }
}

}  // namespace gpuvgm
