// Broadcast (the root publishes each chunk, every other rank copies it out) and barrier
// (one step of the barrier channel, no data).

#include "backends/shm/algorithms.h"
#include "backends/shm/plan.h"

namespace epcomm::shm {

void broadcast(const Step& s, const void* send, void* recv, std::size_t bytes, int root) {
  const std::size_t chunk = s.channel.capacity();
  const auto* in = static_cast<const char*>(send);
  auto* out = static_cast<char*>(recv);
  for (std::size_t k = 0, n = chunkCount(bytes, chunk); k < n; ++k) {
    const Piece p = pieceOf(bytes, chunk, k);
    char* slot = s.channel.begin();
    if (s.rank == root) copyBytes(slot, in + p.lo, p.len);
    s.channel.exchange(s.clock);
    if (s.rank != root) {
      copyBytes(out + p.lo, s.channel.slot(root), p.len);
    } else if (in != out) {
      copyBytes(out + p.lo, in + p.lo, p.len);
    }
  }
}

void barrier(const Step& s) {
  s.channel.begin();
  s.channel.exchange(s.clock);
}

}  // namespace epcomm::shm
