// Candidate rows of the initialisation sample: the rows whose Philox priority word does not exceed
// a limit (the bottom-k sample of gpuvgm/_estimator.py::_Reservoir keeps only such rows once full).
// NumPy twin: gpuvgm/_backends/_numpy.py::sample_candidates. Launched by
// gpuvgm/_backends/_cuda.py::sample_candidates and tests/emulation/shim.cpp.
//
// Grid (blocks_x): the blocks stride over the rows. The kernel reads no data: a row's word is a
// pure function of (seed, column key, stream, global row), the same as gpuvgm._rng.random_words.
// Candidates are appended in the order the atomics hand out slots, which is not deterministic; the
// launcher sorts them by row before they leave the device.
#include "vgm_math.cuh"

namespace gpuvgm {

// rows[s], words[s] for s < *count: the chunk-relative row i (global row row_offset + i) and its
// word, for every row i < n_rows whose word is <= limit. rows and words hold n_rows entries (the
// most there can be); *count must be zero at launch. A slot past that capacity is never written.
__global__ void __launch_bounds__(kMaxThreads)
    sample_candidates(long long n_rows, unsigned long long seed, unsigned long long column_key,
                      unsigned int stream, long long row_offset, unsigned int limit,
                      long long* __restrict__ rows, unsigned int* __restrict__ words,
                      unsigned long long* __restrict__ count) {
  const unsigned long long capacity = static_cast<unsigned long long>(n_rows);
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_rows;
       i += stride) {
    const unsigned int word =
        philox_row_word(seed, column_key, stream, static_cast<unsigned long long>(row_offset + i));
    if (word <= limit) {
      const unsigned long long slot = atomicAdd(count, 1ULL);
      if (slot < capacity) {
        rows[slot] = i;
        words[slot] = word;
      }
    }
  }
}

}  // namespace gpuvgm
