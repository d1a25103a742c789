// The weighted sum of bf16 rows that EP combine uses (ep::sumRows, ep/row_kernels.h, is the
// public face: it handles no rows, one row and null weights, then calls this).
#pragma once

#include <cstdint>

#include "comm/kernels/isa.h"

namespace epcomm::kernels {

// out[c] = bf16(w[0] * rows[0][c] + ... + w[n-1] * rows[n-1][c]) for c < hidden on bf16 bit
// patterns, in f32 in row order as acc = w[0] * x0, then acc = fma(w[i], xi, acc), rounded to
// bf16 once (toBf16). n >= 1, w has n weights, out aliases no row. Every ISA gives bitwise the
// same output.
void sumRowsBf16(Isa isa, const std::uint16_t* const* rows, const float* w, int n, int hidden,
                 std::uint16_t* out);

}  // namespace epcomm::kernels
