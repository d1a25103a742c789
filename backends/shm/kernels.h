// The shm backend's vector kernels: the reductions of comm/kernels/ (epcomm_kernels, the
// static library shared with libepcomm_ep and compiled into this plugin), on the ISA chosen
// once per process: the best this CPU has (AVX-512, AVX2 + F16C + FMA, or the portable loops
// in comm/kernels/reduce_loops.cpp), or at most what EPCOMM_SHM_ISA asked for.
#pragma once

#include <cstddef>
#include <string_view>

#include "comm/kernels/isa.h"
#include "comm/kernels/reduce.h"
#include "comm/types.h"

namespace epcomm::shm {

using kernels::Isa;

// Called at backend creation with EPCOMM_SHM_ISA's value, before the first reduction; the
// first call wins ("portable", "avx2", "avx512": at most that; "auto": the best).
void chooseKernelIsa(std::string_view want);
// The ISA every reduction of this process uses.
Isa kernelIsa();

// kernels::reduceVector on kernelIsa(): false (nothing done) where no vector kernel covers
// the type on this CPU.
inline bool reduceVector(void* dst, const void* const* srcs, int n, std::size_t count,
                         DataType dtype, ReduceOp op, int divisor) {
  return kernels::reduceVector(kernelIsa(), dst, srcs, n, count, dtype, op, divisor);
}

}  // namespace epcomm::shm
