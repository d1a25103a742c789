// Reduction kernels of the shm backend.
#pragma once

#include <cstddef>

#include "comm/types.h"

namespace epcomm::shm {

// dst[i] = srcs[0][i] op srcs[1][i] op ... op srcs[n-1][i], combined in exactly that order,
// so every rank reducing the same element from the same inputs gets the same bits. avg is
// the sum divided by `divisor` (floating types in f32 / the type, integers in int64,
// truncating toward zero). bf16/f16 accumulate in f32 and round once. dst may be exactly
// one of the sources (in place: every source of an element is read before it is written)
// but must not overlap any other way. f32/bf16/f16 run the vector kernels of kernels.h where the
// CPU has them, everything else plain loops over blocks, written for the auto-vectoriser.
void reduce(void* dst, const void* const* srcs, int n, std::size_t count, DataType dtype,
            ReduceOp op, int divisor);

}  // namespace epcomm::shm
