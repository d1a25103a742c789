// Large copies in pieces. One memcpy of tens of MiB is slower here than the same bytes in
// pieces of a few hundred KiB: on the development VM (AMD EPYC, glibc 2.36, whose memcpy
// uses `rep movsb` for every size up to its 127 MiB non-temporal threshold) 56 MiB took
// 3.4-3.6 ms in one call and 2.2-2.4 ms in 256 KiB pieces, both processes copying at once
// (docs/performance.md, "Large copies in pieces"). The bytes written are the same.
#pragma once

#include <cstddef>
#include <cstring>

namespace epcomm::kernels {

inline constexpr std::size_t kCopyPieceBytes = 256 << 10;

// memcpy(dst, src, n) for non-overlapping ranges, as pieces of at most kCopyPieceBytes.
inline void copyInPieces(void* dst, const void* src, std::size_t n) {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  while (n > kCopyPieceBytes) {
    std::memcpy(d, s, kCopyPieceBytes);
    d += kCopyPieceBytes;
    s += kCopyPieceBytes;
    n -= kCopyPieceBytes;
  }
  if (n > 0) std::memcpy(d, s, n);
}

}  // namespace epcomm::kernels
