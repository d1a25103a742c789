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

}  // namespace epcomm::shm
