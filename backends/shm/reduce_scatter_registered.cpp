// Reduce-scatter on registered sends: rank r reduces block r of every rank's send (ranks
// 0..P-1 in order) straight into its recv. In place (recv == send + rank * block) peers
// never read block r of this rank's send, but this rank does: it reduces through scratch,
// chunk by chunk, reading each chunk before writing it.
#include <cstdint>

#include "backends/shm/plan.h"
#include "backends/shm/reduce.h"
#include "backends/shm/registered_algorithms.h"

namespace epcomm::shm {

void reduceScatterRegistered(const Step& s, RegisteredScratch& scratch, void* recv,
                             std::size_t recvCount, DataType dtype, ReduceOp op) {
  const std::size_t es = dtypeSize(dtype);
  const std::size_t blockOff = static_cast<std::size_t>(s.rank) * recvCount * es;
  const RegisteredPeers& peers = scratch.peers;
  auto* out = static_cast<char*>(recv);
  const bool inPlace = out == peers.send[s.rank] + blockOff;
  Sources srcs(s.size);
  if (!inPlace) {
    for (int r = 0; r < s.size; ++r) srcs[r] = peers.send[r] + blockOff;
    reduce(out, srcs.data(), s.size, recvCount, dtype, op, s.size);
  } else {
    const std::size_t chunk = kRegisteredChunkBytes / es;
    char* tmp = scratch.reserve(kRegisteredChunkBytes);
    for (std::size_t k = 0, n = chunkCount(recvCount, chunk); k < n; ++k) {
      const Piece p = pieceOf(recvCount, chunk, k);
      for (int r = 0; r < s.size; ++r) srcs[r] = peers.send[r] + blockOff + p.lo * es;
      reduce(tmp, srcs.data(), s.size, p.len, dtype, op, s.size);
      copyBytes(out + p.lo * es, tmp, p.len * es);
    }
  }
  registeredExit(s);
}

}  // namespace epcomm::shm
