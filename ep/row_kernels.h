// The row kernels of dispatch and combine, public so that callers (and ep-bench's plain-MPI
// baseline) can use the very code the library uses. Vector code is chosen at run time from
// what the CPU has (AVX-512, AVX2 + FMA + F16C, or portable loops), never by -march: the
// kernels and the detection are comm/kernels/ (epcomm_kernels), shared with the shm backend.
#pragma once

#include "../comm/export.h"
#include "../comm/half.h"

namespace epcomm::ep {

enum class RowIsa : int { kAuto = 0, kPortable = 1, kAvx2 = 2, kAvx512 = 3 };

// What kAuto uses on this CPU.
EPCOMM_API RowIsa rowIsa();

// out[c] = bf16(w[0] * rows[0][c] + ... + w[n-1] * rows[n-1][c]) for c < hidden, computed in
// f32 in row order as acc = w[0] * x0, then acc = fma(w[i], xi, acc), rounded to bf16 once
// (round half to even, NaN kept quiet). weights null: every weight is 1. numRows == 0
// writes zeros; one unweighted row is copied bitwise (a signalling NaN stays one). Every ISA gives
// bitwise the same output; `isa` asks for a lower one (for tests and comparisons) and is never
// raised above rowIsa(). `out` may not alias a row.
EPCOMM_API void sumRows(const Bf16* const* rows, const float* weights, int numRows, int hidden,
                        Bf16* out, RowIsa isa = RowIsa::kAuto);

}  // namespace epcomm::ep
