// A program that launches the sample_candidates kernel (kernels/sample.cu) on the host
// emulation, for tests/backends/test_sample_kernel_emulated.py to build with ThreadSanitizer: the block's
// threads run at the same time, so an append whose counter is not updated atomically is reported
// as a data race on every run, where comparing outputs only catches the lost updates that happen
// to collide. Returns 0 when the candidates are exactly the rows whose word is <= the limit (each
// once), 1 otherwise; ThreadSanitizer makes it return 66 when it saw a race.
//
// Build: g++ -std=c++20 -O1 -g -fsanitize=thread -pthread -I kernels tests/emulation/sample_tsan.cpp
#include "cuda_emulation.h"

#include "sample.cu"

#include <cstdio>
#include <vector>

int main() {
  using u64 = unsigned long long;
  const long long n_rows = 6000;
  const u64 seed = (1ULL << 40) + 2024, column_key = 0xFFFFFFFFu;
  const unsigned int stream = 1;
  const long long row_offset = (1LL << 32) - 5;
  int failures = 0;
  // Every row, then about half of them: two grids of several blocks of several warps.
  for (unsigned int limit : {0xFFFFFFFFu, 0x80000000u}) {
    std::vector<long long> rows(n_rows, -1);
    std::vector<unsigned int> words(n_rows, 0);
    u64 count = 0;
    gpuvgm_emu::launch(dim3(3), dim3(128), gpuvgm::sample_candidates, n_rows, seed, column_key,
                       stream, row_offset, limit, rows.data(), words.data(), &count);
    std::vector<int> seen(n_rows, 0);
    for (u64 s = 0; s < count && s < static_cast<u64>(n_rows); ++s) {
      if (rows[s] < 0 || rows[s] >= n_rows) return 1;
      seen[rows[s]] += 1;
      if (words[s] != gpuvgm::philox_row_word(seed, column_key, stream,
                                              static_cast<u64>(row_offset + rows[s])))
        ++failures;
    }
    for (long long i = 0; i < n_rows; ++i) {
      const unsigned int word =
          gpuvgm::philox_row_word(seed, column_key, stream, static_cast<u64>(row_offset + i));
      if (seen[i] != (word <= limit ? 1 : 0)) ++failures;
    }
    std::printf("limit %u: %llu candidates\n", limit, count);
  }
  if (failures) std::printf("%d wrong candidates\n", failures);
  return failures ? 1 : 0;
}
