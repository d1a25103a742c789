// The element-wise reduction every backend uses: vector kernels for f32, bf16 and f16
// (reduceVector), portable loops for every type (reduce).
#pragma once

#include <cstddef>

#include "comm/kernels/isa.h"
#include "comm/types.h"

namespace epcomm::kernels {

// dst[i] = srcs[0][i] op ... op srcs[n-1][i] in that order (avg: the sum / divisor) for f32,
// bf16 and f16 (these accumulate in f32 and round once), on `isa`'s kernels. Bitwise equal to
// the portable loops (reduce_loops.cpp) for every element, whatever its position (but
// for the payload an f32 NaN keeps when two inputs are NaN). dst may be exactly one of the
// sources. Returns false (nothing done) for kPortable and for the
// other types: the caller's portable loops then run.
bool reduceVector(Isa isa, void* dst, const void* const* srcs, int n, std::size_t count,
                  DataType dtype, ReduceOp op, int divisor);

// dst[i] = srcs[0][i] op srcs[1][i] op ... op srcs[n-1][i], combined in exactly that order,
// so every rank reducing the same element from the same inputs gets the same bits, for every
// type: reduceVector where it covers the type on `isa`, else plain loops over blocks
// (reduce_loops.cpp, written for the auto-vectoriser). avg is the sum divided by `divisor`
// (floating types in f32 / the type, integers in int64, truncating toward zero); bf16/f16
// accumulate in f32 and round once. dst may be exactly one of the sources (every source of an
// element is read before it is written) but must not overlap any other way.
void reduce(Isa isa, void* dst, const void* const* srcs, int n, std::size_t count, DataType dtype,
            ReduceOp op, int divisor);

}  // namespace epcomm::kernels
