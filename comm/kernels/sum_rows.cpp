// sumRowsBf16 for each ISA: sum_rows_body.inc compiled once per ISA on that ISA's primitives,
// and the portable loop every one of them must equal (it also finishes their tails).
#include "comm/kernels/sum_rows.h"

#include <cmath>
#include <cstdint>

#include "comm/half.h"
#include "comm/kernels/simd_avx2.h"
#include "comm/kernels/simd_avx512.h"

#ifdef EPCOMM_KERNELS_X86
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which -Wmaybe-uninitialized
// reports once inlined; nothing here reads an undefined lane.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace epcomm::kernels {
namespace {

// Channels [begin, end) one at a time.
inline void sumRowsScalar(const std::uint16_t* const* rows, const float* w, int n, int begin,
                          int end, std::uint16_t* out) {
  for (int c = begin; c < end; ++c) {
    float acc = w[0] * toFloat(Bf16{rows[0][c]});
    for (int r = 1; r < n; ++r) acc = std::fma(w[r], toFloat(Bf16{rows[r][c]}), acc);
    out[c] = toBf16(acc).bits;
  }
}

}  // namespace

#ifdef EPCOMM_KERNELS_X86
EPCOMM_KERNELS_AVX512_BEGIN
namespace avx512 {
#include "comm/kernels/sum_rows_body.inc"
}  // namespace avx512
EPCOMM_KERNELS_AVX512_END

EPCOMM_KERNELS_AVX2_BEGIN
namespace avx2 {
#include "comm/kernels/sum_rows_body.inc"
}  // namespace avx2
EPCOMM_KERNELS_AVX2_END
#endif

void sumRowsBf16(Isa isa, const std::uint16_t* const* rows, const float* w, int n, int hidden,
                 std::uint16_t* out) {
#ifdef EPCOMM_KERNELS_X86
  switch (isa) {
    case Isa::kAvx512: return avx512::sumRows(rows, w, n, hidden, out);
    case Isa::kAvx2: return avx2::sumRows(rows, w, n, hidden, out);
    case Isa::kPortable: break;
  }
#endif
  sumRowsScalar(rows, w, n, 0, hidden, out);
}

}  // namespace epcomm::kernels
