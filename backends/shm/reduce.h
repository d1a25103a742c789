// Reduction of the shm backend: comm/kernels' reduce on the ISA this process chose
// (kernels.h, EPCOMM_SHM_ISA).
#pragma once

#include <cstddef>

#include "backends/shm/kernels.h"
#include "comm/kernels/reduce.h"
#include "comm/types.h"

namespace epcomm::shm {

// kernels::reduce (comm/kernels/reduce.h: order, rounding, in place) on kernelIsa().
inline void reduce(void* dst, const void* const* srcs, int n, std::size_t count, DataType dtype,
                   ReduceOp op, int divisor) {
  kernels::reduce(kernelIsa(), dst, srcs, n, count, dtype, op, divisor);
}

}  // namespace epcomm::shm
