// All-to-all and all-to-all-v: a slot holds one block per destination; per step every rank
// publishes the next piece of each of its blocks, then copies the piece addressed to it
// from every peer's slot. In place the piece of block p it overwrites is the one it
// published in this same step.
#include <algorithm>

#include "backends/shm/algorithms.h"
#include "backends/shm/plan.h"

namespace epcomm::shm {

void allToAll(const Step& s, const void* send, void* recv, std::size_t blockBytes) {
  const std::size_t chunk = blockCapacity(s.channel.capacity(), s.size);
  const auto* in = static_cast<const char*>(send);
  auto* out = static_cast<char*>(recv);
  for (std::size_t k = 0, n = chunkCount(blockBytes, chunk); k < n; ++k) {
    const Piece p = pieceOf(blockBytes, chunk, k);
    char* slot = s.channel.begin();
    for (int d = 0; d < s.size; ++d) {
      copyBytes(slot + d * chunk, in + d * blockBytes + p.lo, p.len);
    }
    s.channel.exchange(s.clock);
    for (int i = 0; i < s.size; ++i) {
      const int r = (s.rank + i) % s.size;
      copyBytes(out + r * blockBytes + p.lo, s.channel.slot(r) + s.rank * chunk, p.len);
    }
  }
}

void allToAllV(const Step& s, const void* send, const std::size_t* sendCounts,
               const std::size_t* sendDispls, void* recv, const std::size_t* recvCounts,
               const std::size_t* recvDispls, std::size_t elemBytes) {
  const std::size_t chunk = blockCapacity(s.channel.capacity(), s.size);
  const auto* in = static_cast<const char*>(send);
  auto* out = static_cast<char*>(recv);
  // Only the sender knows what it sends: the first step also publishes how many steps
  // this rank's blocks need, and every rank runs the maximum (at least the first step).
  std::size_t mine = 0;
  for (int d = 0; d < s.size; ++d) {
    mine = std::max(mine, chunkCount(sendCounts[d] * elemBytes, chunk));
  }
  std::size_t steps = 1;
  for (std::size_t k = 0; k < steps; ++k) {
    char* slot = s.channel.begin();
    if (k == 0) s.channel.header().words[0] = mine;
    for (int d = 0; d < s.size; ++d) {
      const Piece p = pieceOf(sendCounts[d] * elemBytes, chunk, k);
      copyBytes(slot + d * chunk, in + sendDispls[d] * elemBytes + p.lo, p.len);
    }
    s.channel.exchange(s.clock);
    if (k == 0) {
      for (int r = 0; r < s.size; ++r) {
        steps = std::max<std::size_t>(steps, s.channel.header(r).words[0]);
      }
    }
    for (int i = 0; i < s.size; ++i) {
      const int r = (s.rank + i) % s.size;
      const Piece p = pieceOf(recvCounts[r] * elemBytes, chunk, k);
      copyBytes(out + recvDispls[r] * elemBytes + p.lo, s.channel.slot(r) + s.rank * chunk, p.len);
    }
  }
}

}  // namespace epcomm::shm
