// Host emulation of the CUDA execution model, for testing the kernels without a GPU.
// Twin of nothing: it is what lets tests/emulation build kernels/*.cu with g++ (C++20) and compare
// them with gpuvgm/_backends/_numpy.py.
//
// Model. `launch(grid, block, kernel, args...)` starts one OS thread per CUDA thread of a block and
// runs the blocks one after another (so `__shared__` can be static storage). `__syncthreads()` is a
// std::barrier over the block's threads; warp shuffles go through a per-warp exchange buffer between
// two per-warp barriers, so a shuffle behaves as on the GPU only when every lane of the warp calls
// it (blockDim.x must be a multiple of 32, as the launchers guarantee).
//
// Race exposure. Between two barriers, warp 0 runs first: the other warps of the block wait until
// every lane of warp 0 has reached the next __syncthreads() (or left the kernel). A kernel that
// reads, in warp 0, shared memory written by another warp without a barrier in between therefore
// reads stale data on every run, deterministically, instead of passing by luck of the scheduler.
// With -DGPUVGM_EMU_DROP_SYNCTHREADS, __syncthreads() does nothing at all (warp 0 then runs its
// whole block before the others start): tests build that variant to show the emulation fails a
// kernel whose barriers are missing.
#ifndef GPUVGM_CUDA_EMULATION_H
#define GPUVGM_CUDA_EMULATION_H

#ifndef GPUVGM_HOST_EMULATION
#define GPUVGM_HOST_EMULATION 1
#endif

#include <algorithm>
#include <atomic>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// Blocks run one at a time, so one static copy per declaration serves every block.
#define __shared__ static

struct dim3 {
  unsigned int x = 1, y = 1, z = 1;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1)
      : x(x_), y(y_), z(z_) {}
};

inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace gpuvgm_emu {

constexpr int kWarpSize = 32;

// State of one launch, shared by the threads that play the block's CUDA threads.
struct Launch {
  explicit Launch(int n_threads)
      : n_threads(n_threads),
        n_warps((n_threads + kWarpSize - 1) / kWarpSize),
        block_barrier(n_threads),
        block_end(n_threads, BlockEnd{this}),
        exchange(2 * static_cast<std::size_t>(n_warps) * kWarpSize) {
    for (int w = 0; w < n_warps; ++w) {
      int lanes = std::min(kWarpSize, n_threads - w * kWarpSize);
      warp_barriers.push_back(std::make_unique<std::barrier<>>(lanes));
    }
  }

  struct BlockEnd {
    Launch* self;
    void operator()() noexcept {
      // Every thread has finished the block: the next block starts with a closed gate.
      self->warp0_arrivals.store(0);
      self->released.store(0);
    }
  };

  int n_threads;
  int n_warps;
  std::barrier<> block_barrier;
  std::barrier<BlockEnd> block_end;
  std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
  // Two 8-byte slots per thread for shuffles, used alternately (see shuffle()).
  std::vector<std::uint64_t> exchange;
  // The gate: phases of the block (stretches between barriers) that warp 0 has finished.
  std::atomic<int> warp0_arrivals{0};
  std::atomic<int> released{0};
};

struct ThreadContext {
  Launch* launch = nullptr;
  int linear = 0;  // thread index within the block
  int phase = 0;   // barriers passed in the current block
  unsigned int shuffles = 0;  // shuffles done by this thread (picks the exchange buffer)
};

inline thread_local ThreadContext ctx;

inline int warp_id() { return ctx.linear / kWarpSize; }
inline int lane_id() { return ctx.linear % kWarpSize; }

// Warps other than 0 wait here until warp 0 has finished the current phase.
inline void wait_for_warp0() {
  Launch& L = *ctx.launch;
  if (warp_id() == 0 || L.n_warps == 1) return;
  int v = L.released.load();
  while (v <= ctx.phase) {
    L.released.wait(v);
    v = L.released.load();
  }
}

// A lane of warp 0 has reached the end of a phase (a barrier, or the end of the block).
inline void warp0_phase_done() {
  Launch& L = *ctx.launch;
  if (warp_id() != 0 || L.n_warps == 1) return;
  int lanes = std::min(kWarpSize, L.n_threads);
  if (L.warp0_arrivals.fetch_add(1) + 1 == lanes) {
    L.warp0_arrivals.store(0);
    L.released.fetch_add(1);
    L.released.notify_all();
  }
}

inline void syncthreads() {
#ifdef GPUVGM_EMU_DROP_SYNCTHREADS
  // The variant that shows a missing barrier is caught: no barrier, one phase per block.
#else
  warp0_phase_done();
  ctx.launch->block_barrier.arrive_and_wait();
  ++ctx.phase;
  wait_for_warp0();
#endif
}

inline void syncwarp() { ctx.launch->warp_barriers[warp_id()]->arrive_and_wait(); }

// Every lane publishes its value in the exchange buffer, waits for its warp, then reads the lane it
// wants. Consecutive shuffles alternate between two buffers: a lane can only start shuffle n + 2
// (same buffer as n) after every lane has arrived at shuffle n + 1, that is, after every lane has
// read shuffle n; one barrier per shuffle is enough.
template <typename T>
T shuffle(T var, int src_lane, bool in_range) {
  static_assert(sizeof(T) <= sizeof(std::uint64_t), "shuffle of a type wider than 8 bytes");
  Launch& L = *ctx.launch;
  int w = warp_id();
  std::size_t base = (static_cast<std::size_t>(ctx.shuffles++ & 1u) * L.n_warps + w) * kWarpSize;
  std::uint64_t slot = 0;
  std::memcpy(&slot, &var, sizeof(T));
  L.exchange[base + lane_id()] = slot;
  L.warp_barriers[w]->arrive_and_wait();
  T out = var;
  if (in_range) {
    std::uint64_t got = L.exchange[base + src_lane];
    std::memcpy(&out, &got, sizeof(T));
  }
  return out;
}

template <typename... P, typename... A, std::size_t... I>
void call(void (*kernel)(P...), std::tuple<A...>& args, std::index_sequence<I...>) {
  kernel(static_cast<P>(std::get<I>(args))...);
}

}  // namespace gpuvgm_emu

inline void __syncthreads() { gpuvgm_emu::syncthreads(); }
inline void __syncwarp(unsigned int = 0xffffffffu) { gpuvgm_emu::syncwarp(); }

template <typename T>
T __shfl_down_sync(unsigned int, T var, unsigned int delta, int width = 32) {
  int lane = gpuvgm_emu::lane_id();
  int src = lane + static_cast<int>(delta);
  bool in_range = (src / width) == (lane / width);  // stays inside its segment, as on the GPU
  return gpuvgm_emu::shuffle(var, src, in_range);
}
template <typename T>
T __shfl_xor_sync(unsigned int, T var, int lane_mask, int width = 32) {
  int lane = gpuvgm_emu::lane_id();
  int src = lane ^ lane_mask;
  return gpuvgm_emu::shuffle(var, src, (src / width) == (lane / width));
}
template <typename T>
T __shfl_sync(unsigned int, T var, int src_lane, int width = 32) {
  int lane = gpuvgm_emu::lane_id();
  int src = (lane / width) * width + (src_lane % width);
  return gpuvgm_emu::shuffle(var, src, true);
}

template <typename T>
T atomicAdd(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value);
}

// Intrinsics: the host's correctly rounded operations (the fast ones are modelled where their
// error matters, see fast_exp2 in vgm_math.cuh).
inline float __expf(float v) { return std::exp(v); }
inline float __logf(float v) { return std::log(v); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float v) { return 1.0f / v; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline unsigned int __float_as_uint(float v) { return std::bit_cast<unsigned int>(v); }
inline float __uint_as_float(unsigned int v) { return std::bit_cast<float>(v); }
inline double __longlong_as_double(long long v) { return std::bit_cast<double>(v); }
inline long long __double_as_longlong(double v) { return std::bit_cast<long long>(v); }
template <typename T>
T __ldg(const T* p) {
  return *p;
}
using std::exp;
using std::exp2;
using std::fabs;
using std::log;
using std::log2;

namespace gpuvgm_emu {

// Run `kernel` over `grid` x `block`. Blocks run in order x, then y, then z; the block's threads
// are OS threads created once per launch. Returns when every block has finished.
template <typename... P, typename... A>
void launch(dim3 grid, dim3 block, void (*kernel)(P...), A... args) {
  static_assert(sizeof...(P) == sizeof...(A), "wrong number of kernel arguments");
  int n_threads = static_cast<int>(block.x * block.y * block.z);
  if (n_threads <= 0 || n_threads > 1024) throw std::invalid_argument("block size out of range");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  Launch L(n_threads);
  std::tuple<A...> arg_tuple(args...);
  auto body = [&](int t) {
    ctx = ThreadContext{&L, t, 0};
    blockDim = block;
    gridDim = grid;
    threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
    std::tuple<A...> my_args = arg_tuple;  // kernel parameters are per-thread copies
    for (unsigned int z = 0; z < grid.z; ++z)
      for (unsigned int y = 0; y < grid.y; ++y)
        for (unsigned int x = 0; x < grid.x; ++x) {
          blockIdx = dim3(x, y, z);
          ctx.phase = 0;
          wait_for_warp0();
          call(kernel, my_args, std::index_sequence_for<A...>{});
          warp0_phase_done();
          L.block_end.arrive_and_wait();
        }
  };
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(n_threads));
  for (int t = 0; t < n_threads; ++t) threads.emplace_back(body, t);
  for (auto& th : threads) th.join();
}

}  // namespace gpuvgm_emu

#endif  // GPUVGM_CUDA_EMULATION_H
