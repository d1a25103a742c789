// The per-row loops of dispatch and combine. Vector code is chosen at run time (AVX-512,
// AVX2, baseline x86-64) through function multiversioning, never by -march.
#pragma once

#include <cstdint>

#include "comm/half.h"

namespace epcomm::ep {

// out = sum_i weights[i] * rows[i] (weights null: all 1), accumulated in f32, rounded to
// bf16 once. numRows == 0 writes zeros; one unweighted row is copied exactly.
void combineRows(const Bf16* const* rows, const float* weights, int numRows, int hidden, Bf16* out);

// Copies `bytes` bytes (large rows: plain memcpy is already the best loop).
void copyBytes(void* dst, const void* src, std::size_t bytes);

}  // namespace epcomm::ep
