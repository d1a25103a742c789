// Vector kernels of the shm backend, chosen once at run time from what the CPU supports
// (AVX-512, AVX2 + F16C, or the portable loops in reduce.cpp). The library itself is built
// for baseline x86-64; only the functions in kernels.cpp carry target attributes, so the
// binary runs on any x86-64 (and any other architecture, where only the portable loops exist).
#pragma once

#include <cstddef>
#include <string_view>

#include "comm/types.h"

namespace epcomm::shm {

enum class Isa { kPortable, kAvx2, kAvx512 };

// The kernels every reduction uses, detected once per process: the best this CPU has, or
// at most what EPCOMM_SHM_ISA asked for (chooseKernelIsa, called at backend creation before
// the first reduction; the first call wins).
Isa kernelIsa();
void chooseKernelIsa(std::string_view want);
const char* isaName(Isa isa);

// dst[i] = srcs[0][i] op ... op srcs[n-1][i] in that order (avg: the sum / divisor) for
// f32, bf16 and f16 (these accumulate in f32 and round once, as reduce.cpp does). Bitwise
// equal to reduce.cpp's portable loops for every element, whatever its position. Returns
// false (nothing done) when no vector kernel covers the type on this CPU.
bool reduceVector(void* dst, const void* const* srcs, int n, std::size_t count, DataType dtype,
                  ReduceOp op, int divisor);

}  // namespace epcomm::shm
