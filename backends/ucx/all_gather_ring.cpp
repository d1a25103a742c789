// Ring all-gather of blocks of any sizes (algorithms.h), pipelined by chunks.
//
// Rank r, step s (0 .. P-2): sends block r-s to r+1 and receives block r-s-1 from r-1 (mod
// P), straight into its place in recv. Step 0 sends this rank's block; every later chunk is
// forwarded as soon as it arrived, while kChunksAhead later receives are already posted.
// Nothing waits on a send before the end and receives are posted on this rank's progress
// alone, so every wait depends on an earlier step of the left neighbour only.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backends/ucx/algorithms.h"

namespace epcomm::ucx {

void ringAllGatherV(Transport& t, const void* send, std::size_t sendBytes, void* recv,
                    const std::size_t* recvBytes, const std::size_t* recvDispls,
                    std::size_t chunkBytes, std::uint32_t firstStep) {
  const int size = t.size();
  const int rank = t.rank();
  auto* out = static_cast<std::byte*>(recv);
  const auto* own = static_cast<const std::byte*>(send);
  if (sendBytes > 0 && own != out + recvDispls[rank]) {
    std::memmove(out + recvDispls[rank], own, sendBytes);
  }
  if (size == 1) return;
  const std::size_t per = chunkElements(chunkBytes, 1);
  const std::size_t maxBytes = *std::max_element(recvBytes, recvBytes + size);
  if (maxBytes == 0) return;
  const std::size_t maxChunks = chunkCount(maxBytes, per);
  const int left = (rank + size - 1) % size;
  const int right = (rank + 1) % size;
  const int last = size - 2;
  const auto recvBlock = [&](int s) { return (rank - s - 1 + size) % size; };
  const auto stepOf = [&](int s, std::size_t c) {
    return static_cast<std::uint32_t>(firstStep + static_cast<std::size_t>(s) * maxChunks + c);
  };
  const auto length = [&](int block, std::size_t c) {
    return std::min(per, recvBytes[block] - c * per);
  };

  for (std::size_t c = 0; c < chunkCount(recvBytes[rank], per); ++c) {
    t.postSend(right, stepOf(0, c), own + c * per, length(rank, c));
  }

  struct Position {
    int step = 0;
    std::size_t chunk = 0;
  };
  const auto settle = [&](Position& p) {
    while (p.step <= last && p.chunk >= chunkCount(recvBytes[recvBlock(p.step)], per)) {
      ++p.step;
      p.chunk = 0;
    }
  };
  std::vector<std::size_t> ahead(kChunksAhead);
  Position next;
  settle(next);
  std::size_t posted = 0;
  const auto postNext = [&] {
    if (next.step > last) return;
    const int block = recvBlock(next.step);
    ahead[posted % kChunksAhead] =
        t.postRecv(left, stepOf(next.step, next.chunk), out + recvDispls[block] + next.chunk * per,
                   length(block, next.chunk));
    ++posted;
    ++next.chunk;
    settle(next);
  };
  for (std::size_t i = 0; i < kChunksAhead; ++i) postNext();

  Position at;
  settle(at);
  for (std::size_t i = 0; at.step <= last; ++i, ++at.chunk, settle(at)) {
    t.wait(ahead[i % kChunksAhead]);
    postNext();
    if (at.step < last) {
      const int block = recvBlock(at.step);
      t.postSend(right, stepOf(at.step + 1, at.chunk), out + recvDispls[block] + at.chunk * per,
                 length(block, at.chunk));
    }
  }
  t.waitAll();
}

void allGatherVRing(Transport& t, const void* send, std::size_t sendBytes, void* recv,
                    const std::size_t* recvBytes, const std::size_t* recvDispls,
                    std::size_t chunkBytes) {
  ringAllGatherV(t, send, sendBytes, recv, recvBytes, recvDispls, chunkBytes, 0);
}

}  // namespace epcomm::ucx
