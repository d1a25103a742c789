// reduceVector for each ISA: reduce_body.inc compiled once per ISA on that ISA's primitives.
#include "comm/kernels/reduce.h"

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

#ifdef EPCOMM_KERNELS_X86
EPCOMM_KERNELS_AVX512_BEGIN
namespace avx512 {
#include "comm/kernels/reduce_body.inc"
}  // namespace avx512
EPCOMM_KERNELS_AVX512_END

EPCOMM_KERNELS_AVX2_BEGIN
namespace avx2 {
#include "comm/kernels/reduce_body.inc"
}  // namespace avx2
EPCOMM_KERNELS_AVX2_END
#endif

bool reduceVector(Isa isa, void* dst, const void* const* srcs, int n, std::size_t count,
                  DataType dtype, ReduceOp op, int divisor) {
#ifdef EPCOMM_KERNELS_X86
  switch (isa) {
    case Isa::kAvx512: return avx512::reduce(dst, srcs, n, count, dtype, op, divisor);
    case Isa::kAvx2: return avx2::reduce(dst, srcs, n, count, dtype, op, divisor);
    case Isa::kPortable: break;
  }
#endif
  return false;
}

}  // namespace epcomm::kernels
