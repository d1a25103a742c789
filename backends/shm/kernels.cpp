#include "backends/shm/kernels.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "comm/half.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define EPCOMM_SHM_X86 1
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which -Wmaybe-uninitialized
// reports inside the headers; nothing here reads an undefined value.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace epcomm::shm {

#ifdef EPCOMM_SHM_X86

// ---- AVX-512 (F, BW, VL, DQ) + F16C. bf16 is rounded with integer code rather than
// avx512_bf16's vcvtneps2bf16, which flushes denormals and so would differ from the
// portable loops' bits. ----
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,f16c,avx2")
namespace avx512 {

using Vf = __m512;
constexpr std::size_t kLanes = 16;
inline Vf loadF32(const float* p) {
  return _mm512_loadu_ps(p);
}
inline void storeF32(float* p, Vf v) {
  _mm512_storeu_ps(p, v);
}
inline Vf set1(float f) {
  return _mm512_set1_ps(f);
}
inline Vf add(Vf a, Vf b) {
  return _mm512_add_ps(a, b);
}
inline Vf mul(Vf a, Vf b) {
  return _mm512_mul_ps(a, b);
}
inline Vf vmax(Vf a, Vf b) {
  return _mm512_max_ps(a, b);
}
inline Vf vmin(Vf a, Vf b) {
  return _mm512_min_ps(a, b);
}
inline Vf vdiv(Vf a, Vf b) {
  return _mm512_div_ps(a, b);
}
inline Vf loadBf16(const std::uint16_t* p) {
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
inline void storeBf16(std::uint16_t* p, Vf v) {
  // toBf16: NaN -> (u >> 16) | 0x40, else round to nearest even on bit 16.
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r =
      _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  r = _mm512_mask_blend_epi32(nan, r,
                              _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(r));
}
inline Vf loadF16(const std::uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline void storeF16(std::uint16_t* p, Vf v) {
  // IEEE round to nearest even, as toF16; NaN -> sign | 0x7e00 as toF16 (F16C keeps payload).
  __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  if (nan) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i q =
        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x8000)),
                        _mm512_set1_epi32(0x7e00));
    h = _mm256_mask_blend_epi16(nan, h, _mm512_cvtepi32_epi16(q));
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), h);
}

#include "backends/shm/kernels_body.inc"

}  // namespace avx512
#pragma GCC pop_options

// ---- AVX2 + F16C ----
#pragma GCC push_options
#pragma GCC target("avx2,f16c")
namespace avx2 {

using Vf = __m256;
constexpr std::size_t kLanes = 8;
inline Vf loadF32(const float* p) {
  return _mm256_loadu_ps(p);
}
inline void storeF32(float* p, Vf v) {
  _mm256_storeu_ps(p, v);
}
inline Vf set1(float f) {
  return _mm256_set1_ps(f);
}
inline Vf add(Vf a, Vf b) {
  return _mm256_add_ps(a, b);
}
inline Vf mul(Vf a, Vf b) {
  return _mm256_mul_ps(a, b);
}
inline Vf vmax(Vf a, Vf b) {
  return _mm256_max_ps(a, b);
}
inline Vf vmin(Vf a, Vf b) {
  return _mm256_min_ps(a, b);
}
inline Vf vdiv(Vf a, Vf b) {
  return _mm256_div_ps(a, b);
}
// Eight 32-bit lanes holding 16-bit values -> eight u16.
inline __m128i pack16(__m256i r) {
  const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0xD8);
  return _mm256_castsi256_si128(p);
}
// Eight 32-bit lane masks (0 or all ones) -> eight 16-bit lane masks.
inline __m128i packMask16(__m256i m) {
  const __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(m, m), 0xD8);
  return _mm256_castsi256_si128(p);
}
inline Vf loadBf16(const std::uint16_t* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
inline void storeBf16(std::uint16_t* p, Vf v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r =
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
  // |u| and 0x7f800000 are both non-negative as signed ints.
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                         _mm256_set1_epi32(0x7f800000));
  const __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), pack16(_mm256_blendv_epi8(r, q, nan)));
}
inline Vf loadF16(const std::uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline void storeF16(std::uint16_t* p, Vf v) {
  __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
  if (_mm256_movemask_ps(nan)) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i q =
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x8000)),
                        _mm256_set1_epi32(0x7e00));
    h = _mm_blendv_epi8(h, pack16(q), packMask16(_mm256_castps_si256(nan)));
  }
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h);
}

#include "backends/shm/kernels_body.inc"

}  // namespace avx2
#pragma GCC pop_options

#endif  // EPCOMM_SHM_X86

namespace {

// EPCOMM_SHM_ISA as the first backend created resolved it (chooseKernelIsa).
std::atomic<int> gAskedIsa{-1};

Isa detect() {
  Isa best = Isa::kPortable;
#ifdef EPCOMM_SHM_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")) best = Isa::kAvx2;
  if (best == Isa::kAvx2 && __builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq")) {
    best = Isa::kAvx512;
  }
#endif
  // A lower choice for comparisons and tests; never above what the CPU has.
  const int asked = gAskedIsa.load();
  if (asked >= 0 && static_cast<Isa>(asked) < best) best = static_cast<Isa>(asked);
  return best;
}

}  // namespace

void chooseKernelIsa(std::string_view want) {
  const int asked = want == "portable" ? static_cast<int>(Isa::kPortable)
                    : want == "avx2"   ? static_cast<int>(Isa::kAvx2)
                    : want == "avx512" ? static_cast<int>(Isa::kAvx512)
                                       : -1;
  int none = -1;
  gAskedIsa.compare_exchange_strong(none, asked == -1 ? 99 : asked);
}

Isa kernelIsa() {
  static const Isa isa = detect();
  return isa;
}

const char* isaName(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    case Isa::kPortable: break;
  }
  return "portable";
}

bool reduceVector(void* dst, const void* const* srcs, int n, std::size_t count, DataType dtype,
                  ReduceOp op, int divisor) {
#ifdef EPCOMM_SHM_X86
  switch (kernelIsa()) {
    case Isa::kAvx512: return avx512::reduce(dst, srcs, n, count, dtype, op, divisor);
    case Isa::kAvx2: return avx2::reduce(dst, srcs, n, count, dtype, op, divisor);
    case Isa::kPortable: break;
  }
#endif
  return false;
}

}  // namespace epcomm::shm
