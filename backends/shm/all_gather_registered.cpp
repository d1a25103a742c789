// All-gather on registered sends: every rank copies every rank's block straight from its
// send into its own recv (staggered order). In place (send == recv + rank * block) peers
// read only this rank's own block of its recv, which it never writes.
#include "backends/shm/registered_algorithms.h"

namespace epcomm::shm {

void allGatherRegistered(const Step& s, RegisteredScratch& scratch, void* recv,
                         std::size_t sendBytes) {
  const RegisteredPeers& peers = scratch.peers;
  auto* out = static_cast<char*>(recv);
  for (int i = 0; i < s.size; ++i) {
    const int r = (s.rank + i) % s.size;
    char* dst = out + static_cast<std::size_t>(r) * sendBytes;
    if (dst != peers.send[r]) copyBytes(dst, peers.send[r], sendBytes);
  }
  registeredExit(s);
}

}  // namespace epcomm::shm
