// sumRows for each ISA. The vector loops keep the f32 sums of a block of channels in
// registers across all rows (one pass over each row, one store per output), which is what
// makes combine memory-bound rather than bound by accumulator loads and stores. Each row is
// prefetched kPrefetchChannels ahead: the rows of one token sit on different pages (often
// still in another core's cache), where the hardware prefetchers stop at every 4 KiB.
#include "ep/row_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#define EPCOMM_EP_X86 1
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which -Wmaybe-uninitialized
// reports once inlined (as in backends/shm/kernels.cpp); nothing here reads an undefined lane.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace epcomm::ep {
namespace {

// 1 KiB of bf16 ahead (measured: LL combine at 16 tokens 15-20% faster than none, 512 B or
// 2 KiB no better). A prefetch past a row's end never faults.
constexpr int kPrefetchChannels = 512;

// Channels [begin, end) one at a time: the reference every vector loop must equal.
inline void sumScalar(const std::uint16_t* const* rows, const float* w, int n, int begin, int end,
                      std::uint16_t* out) {
  for (int c = begin; c < end; ++c) {
    float acc = w[0] * toFloat(Bf16{rows[0][c]});
    for (int r = 1; r < n; ++r) acc = std::fma(w[r], toFloat(Bf16{rows[r][c]}), acc);
    out[c] = toBf16(acc).bits;
  }
}

#ifdef EPCOMM_EP_X86
__attribute__((target("avx512f"))) inline __m512 widen16(__m256i v) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}

__attribute__((target("avx512f"))) inline __m256i narrow16(__m512 f) {
  const __m512i u = _mm512_castps_si512(f);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded =
      _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, rounded, quiet));
}

__attribute__((target("avx512f,fma"))) void sumAvx512(const std::uint16_t* const* rows,
                                                      const float* w, int n, int hidden,
                                                      std::uint16_t* out) {
  int c = 0;
  for (; c + 32 <= hidden; c += 32) {
    __m512 w0 = _mm512_set1_ps(w[0]);
    _mm_prefetch(reinterpret_cast<const char*>(rows[0] + c + kPrefetchChannels), _MM_HINT_T0);
    __m512 a0 = _mm512_mul_ps(
        w0, widen16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[0] + c))));
    __m512 a1 = _mm512_mul_ps(
        w0, widen16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[0] + c + 16))));
    for (int r = 1; r < n; ++r) {
      const __m512 wr = _mm512_set1_ps(w[r]);
      const auto* p = reinterpret_cast<const __m256i*>(rows[r] + c);
      _mm_prefetch(reinterpret_cast<const char*>(rows[r] + c + kPrefetchChannels), _MM_HINT_T0);
      a0 = _mm512_fmadd_ps(wr, widen16(_mm256_loadu_si256(p)), a0);
      a1 = _mm512_fmadd_ps(wr, widen16(_mm256_loadu_si256(p + 1)), a1);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + c), narrow16(a0));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + c + 16), narrow16(a1));
  }
  sumScalar(rows, w, n, c, hidden, out);
}

__attribute__((target("avx2"))) inline __m256 widen8(__m128i v) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
}

// Eight f32 -> eight bf16 bit patterns in the low 16 bits of each 32-bit lane.
__attribute__((target("avx2"))) inline __m256i narrow8(__m256 f) {
  const __m256i u = _mm256_castps_si256(f);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rounded =
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  // |u| > inf as signed compare: both sides are non-negative.
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                         _mm256_set1_epi32(0x7f800000));
  return _mm256_blendv_epi8(rounded, quiet, nan);
}

__attribute__((target("avx2,fma"))) void sumAvx2(const std::uint16_t* const* rows, const float* w,
                                                 int n, int hidden, std::uint16_t* out) {
  int c = 0;
  for (; c + 16 <= hidden; c += 16) {
    const __m256 w0 = _mm256_set1_ps(w[0]);
    const auto* p0 = reinterpret_cast<const __m128i*>(rows[0] + c);
    const bool lineStart = (c & 31) == 0;  // 16 channels = half a line
    if (lineStart) {
      _mm_prefetch(reinterpret_cast<const char*>(rows[0] + c + kPrefetchChannels), _MM_HINT_T0);
    }
    __m256 a0 = _mm256_mul_ps(w0, widen8(_mm_loadu_si128(p0)));
    __m256 a1 = _mm256_mul_ps(w0, widen8(_mm_loadu_si128(p0 + 1)));
    for (int r = 1; r < n; ++r) {
      const __m256 wr = _mm256_set1_ps(w[r]);
      const auto* p = reinterpret_cast<const __m128i*>(rows[r] + c);
      if (lineStart) {
        _mm_prefetch(reinterpret_cast<const char*>(rows[r] + c + kPrefetchChannels), _MM_HINT_T0);
      }
      a0 = _mm256_fmadd_ps(wr, widen8(_mm_loadu_si128(p)), a0);
      a1 = _mm256_fmadd_ps(wr, widen8(_mm_loadu_si128(p + 1)), a1);
    }
    // packus interleaves 128-bit lanes; the permute puts the 16 results back in order.
    const __m256i packed = _mm256_packus_epi32(narrow8(a0), narrow8(a1));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + c),
                        _mm256_permute4x64_epi64(packed, 0xd8));
  }
  sumScalar(rows, w, n, c, hidden, out);
}

RowIsa detect() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) return RowIsa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return RowIsa::kAvx2;
  return RowIsa::kPortable;
}
#else
RowIsa detect() {
  return RowIsa::kPortable;
}
#endif

constexpr int kMaxStackRows = 64;

}  // namespace

RowIsa rowIsa() {
  static const RowIsa isa = detect();
  return isa;
}

void sumRows(const Bf16* const* rows, const float* weights, int numRows, int hidden, Bf16* out,
             RowIsa isa) {
  if (hidden <= 0) return;
  if (numRows <= 0) {
    std::memset(out, 0, static_cast<std::size_t>(hidden) * sizeof(Bf16));
    return;
  }
  if (numRows == 1 && !weights) {
    std::memcpy(out, rows[0], static_cast<std::size_t>(hidden) * sizeof(Bf16));
    return;
  }
  float stackOnes[kMaxStackRows];
  std::vector<float> heapOnes;
  const float* w = weights;
  if (!w) {
    if (numRows <= kMaxStackRows) {
      std::fill(stackOnes, stackOnes + numRows, 1.f);
      w = stackOnes;
    } else {
      heapOnes.assign(static_cast<std::size_t>(numRows), 1.f);
      w = heapOnes.data();
    }
  }
  const auto* const* in = reinterpret_cast<const std::uint16_t* const*>(rows);
  auto* o = reinterpret_cast<std::uint16_t*>(out);
  const RowIsa best = rowIsa();
  const RowIsa use =
      isa == RowIsa::kAuto || static_cast<int>(isa) > static_cast<int>(best) ? best : isa;
#ifdef EPCOMM_EP_X86
  if (use == RowIsa::kAvx512) return sumAvx512(in, w, numRows, hidden, o);
  if (use == RowIsa::kAvx2) return sumAvx2(in, w, numRows, hidden, o);
#endif
  sumScalar(in, w, numRows, 0, hidden, o);
}

}  // namespace epcomm::ep
