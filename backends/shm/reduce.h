// Reduction of the shm backend: comm/kernels' reduce on the ISA this process chose
// (kernels.h, EPCOMM_SHM_ISA).
#pragma once

#include <algorithm>
#include <cstddef>

#include "backends/shm/algorithms.h"
#include "backends/shm/kernels.h"
#include "comm/kernels/reduce.h"
#include "comm/types.h"

namespace epcomm::shm {

// kernels::reduce (comm/kernels/reduce.h: order, rounding, in place) on kernelIsa().
// Large reductions are split over the worker threads (parallel.h) in line-aligned ranges of
// elements: every element is still reduced over ranks 0..n-1 in order by the same kernel.
inline void reduce(void* dst, const void* const* srcs, int n, std::size_t count, DataType dtype,
                   ReduceOp op, int divisor) {
  const std::size_t es = dtypeSize(dtype);
  forParts(count, es, std::max<std::size_t>(kLine / es, 1), [&](std::size_t lo, std::size_t hi) {
    if (lo == 0 && hi == count) {  // unsplit: the caller's sources as they are (no copy)
      kernels::reduce(kernelIsa(), dst, srcs, n, count, dtype, op, divisor);
      return;
    }
    Sources part(n);
    for (int i = 0; i < n; ++i) part[i] = static_cast<const char*>(srcs[i]) + lo * es;
    kernels::reduce(kernelIsa(), static_cast<char*>(dst) + lo * es, part.data(), n, hi - lo, dtype,
                    op, divisor);
  });
}

}  // namespace epcomm::shm
