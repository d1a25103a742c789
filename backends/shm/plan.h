// Chunk and partition arithmetic shared by the algorithms (no copying here).
#pragma once

#include <algorithm>
#include <cstddef>

namespace epcomm::shm {

// Number of chunks of at most `chunk` units covering `total` units (0 for 0).
inline std::size_t chunkCount(std::size_t total, std::size_t chunk) {
  return (total + chunk - 1) / chunk;
}

// The part of chunk k (of at most `chunk` units) that falls inside [0, total): [lo, lo + len).
struct Piece {
  std::size_t lo;
  std::size_t len;
};
inline Piece pieceOf(std::size_t total, std::size_t chunk, std::size_t k) {
  const std::size_t lo = std::min(total, k * chunk);
  return {lo, std::min(total - lo, chunk)};
}

// Rank r's share of n units split over p ranks: [n*r/p, n*(r+1)/p), contiguous, disjoint,
// covering [0, n), every rank computing the same boundaries.
inline Piece shareOf(std::size_t n, int r, int p) {
  const std::size_t lo = n * static_cast<std::size_t>(r) / static_cast<std::size_t>(p);
  const std::size_t hi = n * static_cast<std::size_t>(r + 1) / static_cast<std::size_t>(p);
  return {lo, hi - lo};
}

// Bytes per peer block when one slot of `capacity` bytes holds one block for each of
// `size` ranks: 64-byte aligned, at least 64.
inline std::size_t blockCapacity(std::size_t capacity, int size) {
  const std::size_t b = capacity / static_cast<std::size_t>(size) / 64 * 64;
  return std::max<std::size_t>(b, 64);
}

// Pipelined algorithms move large messages in pieces of at most this many bytes per step, so
// what a rank wrote is still in its cache (L2) when its peers read it in the next step.
inline constexpr std::size_t kPipelineBytes = 256 << 10;

// Elements per pipeline piece: at most `bytes` (and at most `limit`), a multiple of `align`
// elements (a cache line's worth, so shares stay line aligned), at least one.
inline std::size_t pipelineChunk(std::size_t bytes, std::size_t limit, std::size_t elemBytes,
                                 std::size_t align) {
  std::size_t c = std::min(bytes, limit) / elemBytes;
  if (c > align) c = c / align * align;
  return std::max<std::size_t>(c, 1);
}

}  // namespace epcomm::shm
