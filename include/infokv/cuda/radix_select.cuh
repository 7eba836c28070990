// SPDX-License-Identifier: Apache-2.0
// Exact k-th largest key inside one thread block: an MSD radix select with 8-bit digits, one
// histogram in shared memory per digit, a warp scan from the top digit down to find the bucket
// that straddles rank k, and an early stop as soon as that bucket is taken whole. Used by the
// entropy kernel (32-bit keys of logits) and the top-k selection (64-bit keys of score and
// position).
#pragma once

#include <cstddef>
#include <cstdint>

#include "infokv/cuda/common.cuh"

INFOKV_BEGIN_NAMESPACE
namespace cuda {
namespace detail {

/// Shared memory of block_radix_select.
struct radix_shared {
  unsigned hist[256];
  std::uint64_t prefix;
  std::size_t need;
  int done;
};

/// The top k (0 < k < number of keys) of the keys are exactly: every key > kth, plus `need` of
/// the keys equal to kth (need is 0 when the selection stopped at a bucket taken whole; with
/// unique keys it is 0 or 1). `visit(f)` calls f(key) for each key this thread owns (each key
/// owned by one thread), so callers choose how the keys are read. Every thread of the block must
/// call it; all get the same answer.
template <class Key, class Visit>
__device__ void block_radix_select(Visit visit, std::size_t k, radix_shared& sh, Key& kth, std::size_t& need) {
  constexpr int bits = static_cast<int>(sizeof(Key) * 8);
  Key prefix = 0, mask = 0;
  std::size_t remaining = k;
  for (int shift = bits - 8; shift >= 0; shift -= 8) {
    for (unsigned i = threadIdx.x; i < 256; i += blockDim.x) sh.hist[i] = 0;
    if (threadIdx.x == 0) sh.done = 0;
    __syncthreads();
    visit([&](Key u) {
      if ((u & mask) == prefix) atomicAdd(&sh.hist[static_cast<unsigned>(u >> shift) & 255u], 1u);
    });
    __syncthreads();
    if (threadIdx.x < 32) {
      // Lane l owns digits 255 - 8l ... 248 - 8l; an inclusive scan from the top digit.
      const unsigned lane = threadIdx.x;
      unsigned own = 0;
      for (unsigned j = 0; j < 8; ++j) own += sh.hist[255 - lane * 8 - j];
      unsigned incl = own;
      for (unsigned o = 1; o < 32; o <<= 1) {
        const unsigned v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += v;
      }
      const unsigned excl = incl - own;
      if (excl < remaining && incl >= remaining) {  // exactly one lane holds the straddling digit
        std::size_t above = excl;
        unsigned digit = 255 - lane * 8;
        while (above + sh.hist[digit] < remaining) above += sh.hist[digit--];
        const Key p = prefix | (static_cast<Key>(digit) << shift);
        sh.prefix = static_cast<std::uint64_t>(p);
        sh.need = remaining - above;
        sh.done = (sh.hist[digit] == remaining - above) ? 1 : 0;  // the whole bucket is taken
      }
    }
    __syncthreads();
    prefix = static_cast<Key>(sh.prefix);
    remaining = sh.need;
    const bool done = sh.done != 0;
    mask |= static_cast<Key>(255u) << shift;
    __syncthreads();
    if (done) {
      // Everything >= prefix (low bits zero) is kept; k < n makes prefix > 0.
      kth = prefix - 1;
      need = 0;
      return;
    }
  }
  kth = prefix;
  need = remaining;
}

}  // namespace detail
}  // namespace cuda
INFOKV_END_NAMESPACE
