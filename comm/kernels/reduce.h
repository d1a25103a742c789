// The element-wise reduction of f32, bf16 and f16 on the vector kernels (the shm backend's
// all-reduce and reduce-scatter use it through backends/shm/reduce.cpp, which has the portable
// loops for every type).
#pragma once

#include <cstddef>

#include "comm/kernels/isa.h"
#include "comm/types.h"

namespace epcomm::kernels {

// dst[i] = srcs[0][i] op ... op srcs[n-1][i] in that order (avg: the sum / divisor) for f32,
// bf16 and f16 (these accumulate in f32 and round once), on `isa`'s kernels. Bitwise equal to
// the portable loops (backends/shm/reduce.cpp) for every element, whatever its position (but
// for the payload an f32 NaN keeps when two inputs are NaN). dst may be exactly one of the
// sources. Returns false (nothing done) for kPortable and for the
// other types: the caller's portable loops then run.
bool reduceVector(Isa isa, void* dst, const void* const* srcs, int n, std::size_t count,
                  DataType dtype, ReduceOp op, int divisor);

}  // namespace epcomm::kernels
