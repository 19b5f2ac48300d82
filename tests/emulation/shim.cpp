// extern "C" entry points that launch the CUDA kernels of kernels/ on the host emulation
// (tests/emulation/cuda_emulation.h), for tests/backends/test_kernels_emulated.py (ctypes). Each entry point
// mirrors one launcher of gpuvgm/_backends/_cuda.py: same kernels, same parameter tables, a real
// grid of blocks. Returns 0, or -1 for a dtype or K this build has no instance of.
//
// Build: g++ -std=c++20 -O2 -fPIC -shared -pthread -ffp-contract=off -I kernels tests/emulation/shim.cpp
// (-DGPUVGM_EMU_DROP_SYNCTHREADS for the variant without barriers).
#include "cuda_emulation.h"

#include "estep.cu"
#include "inverse.cu"
#include "sample.cu"
#include "transform.cu"

#include <vector>

using gpuvgm_emu::launch;

namespace {

using i64 = long long;
using u64 = unsigned long long;

// The K values this library is built for (each is a full set of template instances).
template <typename F>
int with_k(int k, F&& f) {
  switch (k) {
    case 1: f(std::integral_constant<int, 1>{}); return 0;
    case 2: f(std::integral_constant<int, 2>{}); return 0;
    case 3: f(std::integral_constant<int, 3>{}); return 0;
    case 5: f(std::integral_constant<int, 5>{}); return 0;  // the end-to-end fits
    case 10: f(std::integral_constant<int, 10>{}); return 0;
    default: return -1;
  }
}

// itemsize 4 -> float, 8 -> double.
template <typename F>
int with_real(int itemsize, F&& f) {
  if (itemsize == 4) {
    f(float{});
    return 0;
  }
  if (itemsize == 8) {
    f(double{});
    return 0;
  }
  return -1;
}

// The second-stage reduction over 64 threads: two warps, so its cross-warp half runs, at a
// fraction of the cost of emulating the barriers of a full block.
void reduce(const std::vector<double>& partials, i64 n_blocks, i64 n_slots, double* out) {
  launch(dim3(static_cast<unsigned>(n_slots)), dim3(64), gpuvgm::reduce_partials,
         partials.data(), n_blocks, n_slots, out);
}

}  // namespace

extern "C" {

int emu_estep_stats(const void* x, int itemsize, int compute_itemsize, i64 n_rows, i64 row_stride,
                    i64 col_stride, const i64* columns, int n_cols, int k, const double* params,
                    int grid_x, int block, double* out) {
  int rc = 0;
  int found = with_k(k, [&](auto kc) {
    constexpr int K = decltype(kc)::value;
    const i64 n_slots = static_cast<i64>(n_cols) * (3 * K + 3);
    std::vector<double> partials(static_cast<size_t>(grid_x * n_slots));
    rc = with_real(itemsize, [&](auto t) {
      using T = decltype(t);
      rc = with_real(compute_itemsize, [&](auto ct) {
        using CT = decltype(ct);
        launch(dim3(grid_x, n_cols), dim3(block), gpuvgm::estep_stats<T, CT, K>,
               static_cast<const T*>(x), n_rows, row_stride, col_stride, columns, params,
               partials.data());
      });
    });
    if (rc == 0) reduce(partials, grid_x, n_slots, out);
  });
  return found != 0 ? found : rc;
}

int emu_assign_stats(const void* x, int itemsize, i64 n_rows, i64 row_stride, i64 col_stride,
                     const i64* columns, int n_cols, int k, const double* params, int grid_x,
                     int block, double* out) {
  int rc = 0;
  int found = with_k(k, [&](auto kc) {
    constexpr int K = decltype(kc)::value;
    const i64 n_slots = static_cast<i64>(n_cols) * (3 * K + 3);
    std::vector<double> partials(static_cast<size_t>(grid_x * n_slots));
    rc = with_real(itemsize, [&](auto t) {
      using T = decltype(t);
      launch(dim3(grid_x, n_cols), dim3(block), gpuvgm::assign_stats<T, K>,
             static_cast<const T*>(x), n_rows, row_stride, col_stride, columns, params,
             partials.data());
    });
    if (rc == 0) reduce(partials, grid_x, n_slots, out);
  });
  return found != 0 ? found : rc;
}

int emu_log_resp(const void* x, int itemsize, i64 n_rows, i64 row_stride, i64 col_stride,
                 const i64* columns, int n_cols, int k, const double* params, int grid_x,
                 int block, double* out) {
  int rc = 0;
  int found = with_k(k, [&](auto kc) {
    constexpr int K = decltype(kc)::value;
    rc = with_real(itemsize, [&](auto t) {
      using T = decltype(t);
      launch(dim3(grid_x, n_cols), dim3(block), gpuvgm::log_resp<T, K>, static_cast<const T*>(x),
             n_rows, row_stride, col_stride, columns, params, out);
    });
  });
  return found != 0 ? found : rc;
}

// partials_sums: (grid_x, n_cols, 5); partials_m2: (grid_x, n_cols). Reduced by the caller, as
// the CUDA backend reduces them on the host.
int emu_moments(const void* x, int itemsize, i64 n_rows, i64 row_stride, i64 col_stride,
                const i64* columns, int n_cols, int grid_x, int block, double* partials_sums,
                const double* mean, double* partials_m2) {
  return with_real(itemsize, [&](auto t) {
    using T = decltype(t);
    if (mean == nullptr) {
      launch(dim3(grid_x, n_cols), dim3(block), gpuvgm::moments_sums<T>, static_cast<const T*>(x),
             n_rows, row_stride, col_stride, columns, partials_sums);
    } else {
      launch(dim3(grid_x, n_cols), dim3(block), gpuvgm::moments_m2<T>, static_cast<const T*>(x),
             n_rows, row_stride, col_stride, columns, mean, partials_m2);
    }
  });
}

int emu_transform(const void* x, int itemsize, i64 n_rows, i64 row_stride, i64 col_stride,
                  const i64* columns, int n_cols, int k, const double* params, const i64* info,
                  u64 seed, i64 row_offset, int sample, double clip, float margin, int grid_x,
                  int block, double* normalized, int* component, unsigned char* null, u64* counts) {
  int rc = 0;
  int found = with_k(k, [&](auto kc) {
    constexpr int K = decltype(kc)::value;
    rc = with_real(itemsize, [&](auto t) {
      using T = decltype(t);
      launch(dim3(grid_x, n_cols), dim3(block), gpuvgm::transform<T, K>, static_cast<const T*>(x),
             n_rows, row_stride, col_stride, columns, params, info, seed, row_offset, sample, clip,
             margin, normalized, component, null, counts);
    });
  });
  return found != 0 ? found : rc;
}

// alpha: float or double (a_itemsize); component: int32 or int64 (c_itemsize).
int emu_inverse(const void* alpha, int a_itemsize, i64 a_row_stride, i64 a_col_stride,
                const void* component, int c_itemsize, i64 c_row_stride, i64 c_col_stride,
                i64 n_rows, int n_cols, const double* params, int k, const i64* n_valid,
                int grid_x, int block, double* out) {
  int rc = with_real(a_itemsize, [&](auto a) {
    using AT = decltype(a);
    auto run = [&](auto* comp) {
      using IT = std::remove_cv_t<std::remove_pointer_t<decltype(comp)>>;
      launch(dim3(grid_x, n_cols), dim3(block), gpuvgm::inverse<AT, IT>,
             static_cast<const AT*>(alpha), a_row_stride, a_col_stride, comp, c_row_stride,
             c_col_stride, n_rows, params, k, n_valid, out);
    };
    if (c_itemsize == 4) {
      run(static_cast<const int*>(component));
    } else {
      run(static_cast<const i64*>(component));
    }
  });
  return (c_itemsize == 4 || c_itemsize == 8) ? rc : -1;
}

// rows, words: n_rows entries each; *count zeroed by the caller. The candidates come out in the
// order the atomics gave them, as on the GPU (the caller sorts them, as the CUDA backend does).
int emu_sample_candidates(i64 n_rows, u64 seed, u64 column_key, unsigned int stream,
                          i64 row_offset, unsigned int limit, int grid_x, int block, i64* rows,
                          unsigned int* words, u64* count) {
  launch(dim3(grid_x), dim3(block), gpuvgm::sample_candidates, n_rows, seed, column_key, stream,
         row_offset, limit, rows, words, count);
  return 0;
}

// The device twin of gpuvgm._rng.random_words, called on the host (it is __host__ __device__).
void emu_philox_words(u64 seed, u64 column, unsigned int stream, u64 start, i64 n,
                      unsigned int* out) {
  for (i64 i = 0; i < n; ++i)
    out[i] = gpuvgm::philox_row_word(seed, column, stream, start + static_cast<u64>(i));
}

}  // extern "C"

// ------------------------------------------------------------------------------------------------
// One kernel per call, as CUDA launches it, for the CuPy stand-in of tests/fakecupy (which runs
// the CUDA backend's own host code, gpuvgm/_backends/_cuda.py, on the CPU). Unlike the emu_*
// entries above, these neither combine steps nor choose the grid: each launches exactly one
// __global__ instance over the grid and block it is given, with the kernel's own parameters, in
// the kernel's order, after the template arguments and the launch dimensions:
//
//   launch_<kernel>(template arguments..., gx, gy, gz, bx, by, bz, kernel parameters...)
//
// A typename template argument is passed as its size in bytes (float 4, double 8; int 4,
// long long 8), an int one as its value. Returns 0; -1 for an instance this build lacks; -2 when
// the emulation refused the launch (a block size it cannot run).
// ------------------------------------------------------------------------------------------------

namespace {

// with_k, then with_real: f(K constant, T value) returns 0 or -1 (an instance it lacks); the
// result is -1 when k, itemsize or f has no instance.
template <typename F>
int with_k_real(int k, int itemsize, F&& f) {
  int rc = 0;
  const int found = with_k(k, [&](auto kc) {
    const int real = with_real(itemsize, [&](auto t) { rc = f(kc, t); });
    if (real != 0) rc = real;
  });
  return found != 0 ? found : rc;
}

// itemsize 4 -> int, 8 -> long long (the component type of inverse).
template <typename F>
int with_index(int itemsize, F&& f) {
  if (itemsize == 4) {
    f(int{});
    return 0;
  }
  if (itemsize == 8) {
    f(i64{});
    return 0;
  }
  return -1;
}

// Runs f (which returns 0 or -1); an exception of the emulation (it refuses a block size) is -2,
// not a crash through the C boundary.
template <typename F>
int guarded(F&& f) {
  try {
    return f();
  } catch (const std::exception&) {
    return -2;
  }
}

}  // namespace

#define GPUVGM_DIMS unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz
#define GPUVGM_GRID dim3(gx, gy, gz), dim3(bx, by, bz)

extern "C" {

int launch_reduce_partials(GPUVGM_DIMS, const double* partials, i64 n_blocks, i64 n_slots,
                           double* out) {
  return guarded([&] {
    launch(GPUVGM_GRID, gpuvgm::reduce_partials, partials, n_blocks, n_slots, out);
    return 0;
  });
}

int launch_moments_sums(int t_size, GPUVGM_DIMS, const void* x, i64 n_rows, i64 row_stride,
                        i64 col_stride, const i64* columns, double* partials) {
  return guarded([&] {
    return with_real(t_size, [&](auto t) {
      using T = decltype(t);
      launch(GPUVGM_GRID, gpuvgm::moments_sums<T>, static_cast<const T*>(x), n_rows, row_stride,
             col_stride, columns, partials);
    });
  });
}

int launch_moments_m2(int t_size, GPUVGM_DIMS, const void* x, i64 n_rows, i64 row_stride,
                      i64 col_stride, const i64* columns, const double* mean, double* partials) {
  return guarded([&] {
    return with_real(t_size, [&](auto t) {
      using T = decltype(t);
      launch(GPUVGM_GRID, gpuvgm::moments_m2<T>, static_cast<const T*>(x), n_rows, row_stride,
             col_stride, columns, mean, partials);
    });
  });
}

int launch_estep_stats(int t_size, int ct_size, int k, GPUVGM_DIMS, const void* x, i64 n_rows,
                       i64 row_stride, i64 col_stride, const i64* columns, const double* params,
                       double* partials) {
  return guarded([&] {
    return with_k_real(k, t_size, [&](auto kc, auto t) {
      using T = decltype(t);
      return with_real(ct_size, [&](auto ct) {
        using CT = decltype(ct);
        launch(GPUVGM_GRID, gpuvgm::estep_stats<T, CT, decltype(kc)::value>,
               static_cast<const T*>(x), n_rows, row_stride, col_stride, columns, params,
               partials);
      });
    });
  });
}

int launch_assign_stats(int t_size, int k, GPUVGM_DIMS, const void* x, i64 n_rows,
                        i64 row_stride, i64 col_stride, const i64* columns, const double* params,
                        double* partials) {
  return guarded([&] {
    return with_k_real(k, t_size, [&](auto kc, auto t) {
      using T = decltype(t);
      launch(GPUVGM_GRID, gpuvgm::assign_stats<T, decltype(kc)::value>, static_cast<const T*>(x),
             n_rows, row_stride, col_stride, columns, params, partials);
      return 0;
    });
  });
}

int launch_log_resp(int t_size, int k, GPUVGM_DIMS, const void* x, i64 n_rows, i64 row_stride,
                    i64 col_stride, const i64* columns, const double* params, double* out) {
  return guarded([&] {
    return with_k_real(k, t_size, [&](auto kc, auto t) {
      using T = decltype(t);
      launch(GPUVGM_GRID, gpuvgm::log_resp<T, decltype(kc)::value>, static_cast<const T*>(x),
             n_rows, row_stride, col_stride, columns, params, out);
      return 0;
    });
  });
}

int launch_transform(int t_size, int k, GPUVGM_DIMS, const void* x, i64 n_rows, i64 row_stride,
                     i64 col_stride, const i64* columns, const double* params, const i64* info,
                     u64 seed, i64 row_offset, int sample, double clip, float margin,
                     double* normalized, int* component, unsigned char* null, u64* counts) {
  return guarded([&] {
    return with_k_real(k, t_size, [&](auto kc, auto t) {
      using T = decltype(t);
      launch(GPUVGM_GRID, gpuvgm::transform<T, decltype(kc)::value>, static_cast<const T*>(x),
             n_rows, row_stride, col_stride, columns, params, info, seed, row_offset, sample,
             clip, margin, normalized, component, null, counts);
      return 0;
    });
  });
}

int launch_inverse(int at_size, int it_size, GPUVGM_DIMS, const void* alpha, i64 a_row_stride,
                   i64 a_col_stride, const void* component, i64 c_row_stride, i64 c_col_stride,
                   i64 n_rows, const double* params, int n_components, const i64* n_valid,
                   double* out) {
  return guarded([&] {
    int rc = 0;
    int found = with_real(at_size, [&](auto a) {
      using AT = decltype(a);
      rc = with_index(it_size, [&](auto i) {
        using IT = decltype(i);
        launch(GPUVGM_GRID, gpuvgm::inverse<AT, IT>, static_cast<const AT*>(alpha),
               a_row_stride, a_col_stride, static_cast<const IT*>(component), c_row_stride,
               c_col_stride, n_rows, params, n_components, n_valid, out);
      });
    });
    return found != 0 ? found : rc;
  });
}

int launch_sample_candidates(GPUVGM_DIMS, i64 n_rows, u64 seed, u64 column_key,
                             unsigned int stream, i64 row_offset, unsigned int limit, i64* rows,
                             unsigned int* words, u64* count) {
  return guarded([&] {
    launch(GPUVGM_GRID, gpuvgm::sample_candidates, n_rows, seed, column_key, stream, row_offset,
           limit, rows, words, count);
    return 0;
  });
}

}  // extern "C"

#undef GPUVGM_DIMS
#undef GPUVGM_GRID
