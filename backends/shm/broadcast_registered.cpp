// Broadcast from a registered root send: every other rank copies it straight into its
// recv; the root copies only when not in place. Only the root's send must be registered.
#include "backends/shm/registered_algorithms.h"

namespace epcomm::shm {

void broadcastRegistered(const Step& s, RegisteredScratch& scratch, void* recv, std::size_t bytes,
                         int root) {
  const char* src = scratch.peers.send[root];
  if (recv != src) copyBytes(recv, src, bytes);
  registeredExit(s);
}

}  // namespace epcomm::shm
