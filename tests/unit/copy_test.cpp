// kernels::copyInPieces: the same bytes as memcpy at every size class around the piece size,
// from unaligned addresses, and nothing written past the end.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "comm/kernels/copy.h"

namespace {

using epcomm::kernels::copyInPieces;
using epcomm::kernels::kCopyPieceBytes;

TEST(CopyInPieces, SameBytesAsMemcpyAtEverySize) {
  const std::size_t sizes[] = {0,
                               1,
                               63,
                               kCopyPieceBytes - 1,
                               kCopyPieceBytes,
                               kCopyPieceBytes + 1,
                               3 * kCopyPieceBytes + 77};
  constexpr std::size_t kGuard = 64;
  for (const std::size_t n : sizes) {
    std::vector<std::uint8_t> src(n + 3);
    for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<std::uint8_t>(i * 131 + 7);
    std::vector<std::uint8_t> dst(n + 5 + kGuard, 0xEE);
    copyInPieces(dst.data() + 5, src.data() + 3, n);  // both unaligned
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(dst[5 + i], src[3 + i]) << "size " << n << " byte " << i;
    }
    for (std::size_t i = 0; i < 5; ++i) EXPECT_EQ(dst[i], 0xEE) << "size " << n;
    for (std::size_t i = 5 + n; i < dst.size(); ++i) {
      ASSERT_EQ(dst[i], 0xEE) << "size " << n << ": written past the end at " << i - 5;
    }
  }
}

}  // namespace
