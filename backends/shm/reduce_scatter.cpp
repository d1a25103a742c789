// Reduce-scatter: per step every rank publishes the same chunk of each of its P blocks;
// rank r reduces block r's chunk from every slot (ranks 0..P-1 in order) into recv, its own
// contribution straight from send when not in place.

#include "backends/shm/algorithms.h"
#include "backends/shm/plan.h"
#include "backends/shm/reduce.h"

namespace epcomm::shm {

void reduceScatter(const Step& s, const void* send, void* recv, std::size_t recvCount,
                   DataType dtype, ReduceOp op) {
  const std::size_t es = dtypeSize(dtype);
  const std::size_t chunk =
      pipelineChunk(blockCapacity(s.channel.capacity(), s.size), kPipelineBytes, es, kLine);
  Sources srcs(s.size);
  const auto* in = static_cast<const char*>(send);
  auto* out = static_cast<char*>(recv);
  // Out of place the own block is reduced straight from send; in place (recv == send +
  // rank * recvCount) it goes through the slot too, since recv's chunk is the reduction's
  // destination.
  const bool inPlace = out == in + s.rank * recvCount * es;
  for (std::size_t k = 0, n = chunkCount(recvCount, chunk); k < n; ++k) {
    const Piece p = pieceOf(recvCount, chunk, k);
    char* slot = s.channel.begin();
    for (int i = inPlace ? 0 : 1; i < s.size; ++i) {
      const int b = (s.rank + i) % s.size;
      copyBytes(slot + b * p.len * es, in + (b * recvCount + p.lo) * es, p.len * es);
    }
    s.channel.exchange(s.clock);
    for (int r = 0; r < s.size; ++r) {
      srcs[r] = r == s.rank && !inPlace ? in + (s.rank * recvCount + p.lo) * es
                                        : s.channel.slot(r) + s.rank * p.len * es;
    }
    reduce(out + p.lo * es, srcs.data(), s.size, p.len, dtype, op, s.size);
  }
}

}  // namespace epcomm::shm
