// All-gather and all-gather-v: per step every rank publishes the next piece of its block;
// every rank copies every peer's piece into place. Blocks of different length simply run
// out of pieces earlier; every rank takes chunkCount(longest block) steps. All-gather
// pipelines in pieces small enough to be read from the writer's cache, copies its own piece
// while the peers catch up.
#include <algorithm>

#include "backends/shm/algorithms.h"
#include "backends/shm/plan.h"

namespace epcomm::shm {

void allGather(const Step& s, const void* send, void* recv, std::size_t sendBytes) {
  const std::size_t chunk = pipelineChunk(s.channel.capacity(), kPipelineBytes, 1, kLine);
  const auto* in = static_cast<const char*>(send);
  auto* out = static_cast<char*>(recv);
  const bool inPlace = in == out + s.rank * sendBytes;
  for (std::size_t k = 0, n = chunkCount(sendBytes, chunk); k < n; ++k) {
    const Piece p = pieceOf(sendBytes, chunk, k);
    copyBytes(s.channel.begin(), in + p.lo, p.len);
    s.channel.post();
    // The own piece while the peers catch up.
    if (!inPlace) copyBytes(out + s.rank * sendBytes + p.lo, in + p.lo, p.len);
    s.channel.wait(s.clock);
    for (int i = 1; i < s.size; ++i) {
      const int r = (s.rank + i) % s.size;
      copyBytes(out + r * sendBytes + p.lo, s.channel.slot(r), p.len);
    }
  }
}

void allGatherV(const Step& s, const void* send, void* recv, const std::size_t* recvCounts,
                const std::size_t* recvDispls, std::size_t elemBytes) {
  const std::size_t chunk = s.channel.capacity();
  const auto* in = static_cast<const char*>(send);
  auto* out = static_cast<char*>(recv);
  std::size_t longest = 0;
  for (int r = 0; r < s.size; ++r) longest = std::max(longest, recvCounts[r] * elemBytes);
  const std::size_t mineBytes = recvCounts[s.rank] * elemBytes;
  const bool inPlace = in == out + recvDispls[s.rank] * elemBytes;
  for (std::size_t k = 0, n = chunkCount(longest, chunk); k < n; ++k) {
    const Piece mine = pieceOf(mineBytes, chunk, k);
    copyBytes(s.channel.begin(), in + mine.lo, mine.len);
    s.channel.exchange(s.clock);
    for (int i = 0; i < s.size; ++i) {
      const int r = (s.rank + i) % s.size;
      const Piece p = pieceOf(recvCounts[r] * elemBytes, chunk, k);
      char* dst = out + recvDispls[r] * elemBytes + p.lo;
      if (r == s.rank) {
        if (!inPlace) copyBytes(dst, in + p.lo, p.len);
      } else {
        copyBytes(dst, s.channel.slot(r), p.len);
      }
    }
  }
}

}  // namespace epcomm::shm
