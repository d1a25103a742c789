// All-reduce on registered buffers. One-shot: every rank reduces the whole message from
// every rank's send into its recv (in place: into scratch, copied to recv after the exit
// step, since peers read this rank's send until then). Two-shot: rank i reduces its share
// (cache-line aligned) from every rank's send, chunk by chunk through scratch, and writes
// each chunk into every rank's recv; in place is safe because only rank i reads or writes
// share i anywhere, and it reads a chunk on every rank before writing it. Plain (cached)
// stores throughout: non-temporal ones from 4 MiB measured slower (in place 4-64 MiB 1.4-2.8x).
#include <algorithm>

#include "backends/shm/plan.h"
#include "backends/shm/reduce.h"
#include "backends/shm/registered_algorithms.h"

namespace epcomm::shm {

void allReduceRegisteredOneShot(const Step& s, RegisteredScratch& scratch, void* recv,
                                std::size_t count, DataType dtype, ReduceOp op) {
  const std::size_t bytes = count * dtypeSize(dtype);
  const RegisteredPeers& peers = scratch.peers;
  const bool inPlace = peers.send[s.rank] == recv;
  char* dst = inPlace ? scratch.reserve(bytes) : static_cast<char*>(recv);
  Sources srcs(s.size);
  for (int r = 0; r < s.size; ++r) srcs[r] = peers.send[r];
  reduce(dst, srcs.data(), s.size, count, dtype, op, s.size);
  registeredExit(s);
  if (inPlace) copyBytes(recv, dst, bytes);
}

void allReduceRegisteredTwoShot(const Step& s, RegisteredScratch& scratch, std::size_t count,
                                DataType dtype, ReduceOp op) {
  const std::size_t es = dtypeSize(dtype);
  const RegisteredPeers& peers = scratch.peers;
  // Shares in whole cache lines, so two ranks never write one line of a recv.
  const std::size_t lineElems = std::max<std::size_t>(kLine / es, 1);
  const Piece lines = shareOf(chunkCount(count, lineElems), s.rank, s.size);
  const std::size_t lo = std::min(count, lines.lo * lineElems);
  const std::size_t hi = std::min(count, (lines.lo + lines.len) * lineElems);
  const std::size_t chunk = kRegisteredChunkBytes / es;
  char* tmp = scratch.reserve(kRegisteredChunkBytes);
  Sources srcs(s.size);
  for (std::size_t k = 0, n = chunkCount(hi - lo, chunk); k < n; ++k) {
    const Piece p = pieceOf(hi - lo, chunk, k);
    const std::size_t off = (lo + p.lo) * es;
    for (int r = 0; r < s.size; ++r) srcs[r] = peers.send[r] + off;
    reduce(tmp, srcs.data(), s.size, p.len, dtype, op, s.size);
    for (int i = 0; i < s.size; ++i) {
      copyBytes(peers.recv[(s.rank + i) % s.size] + off, tmp, p.len * es);
    }
  }
  registeredExit(s);
}

}  // namespace epcomm::shm
