// Reduce-scatter: per step every rank publishes the same chunk of each of its P blocks;
// rank r reduces block r's chunk from every slot (ranks 0..P-1 in order) into recv.

#include "backends/shm/algorithms.h"
#include "backends/shm/plan.h"
#include "backends/shm/reduce.h"

namespace epcomm::shm {

void reduceScatter(const Step& s, const void* send, void* recv, std::size_t recvCount,
                   DataType dtype, ReduceOp op) {
  const std::size_t es = dtypeSize(dtype);
  const std::size_t chunk = blockCapacity(s.channel.capacity(), s.size) / es;
  Sources srcs(s.size);
  const auto* in = static_cast<const char*>(send);
  auto* out = static_cast<char*>(recv);
  for (std::size_t k = 0, n = chunkCount(recvCount, chunk); k < n; ++k) {
    const Piece p = pieceOf(recvCount, chunk, k);
    // In place (recv == send + rank * recvCount) recv's chunk k is written after the copy.
    char* slot = s.channel.begin();
    for (int b = 0; b < s.size; ++b) {
      copyBytes(slot + b * p.len * es, in + (b * recvCount + p.lo) * es, p.len * es);
    }
    s.channel.exchange(s.clock);
    for (int r = 0; r < s.size; ++r) srcs[r] = s.channel.slot(r) + s.rank * p.len * es;
    reduce(out + p.lo * es, srcs.data(), s.size, p.len, dtype, op, s.size);
  }
}

}  // namespace epcomm::shm
