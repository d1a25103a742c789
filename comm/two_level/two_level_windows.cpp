// Windows on two levels live on one level: the in-host backend on one host, else the network
// backend over every rank (puts inside a host then take the network backend's own path). A
// window shared by both levels (the host's shared memory opened to the other hosts) would
// need the network backend to progress while ranks wait inside the host: software RMA over
// TCP completes a put or a set only when its target progresses, and a rank blocked in a
// shared-memory wait does not (a receive-hook test deadlocked that way).
#include "comm/two_level/two_level_backend.h"

namespace epcomm::two_level {

BackendHandle* TwoLevelBackend::windowLevel() const {
  return levels_.numHosts() == 1 ? inHost_.get() : world_.get();
}

void* TwoLevelBackend::windowCreate(std::size_t bytes, int numSignals, void** localBase) {
  BackendHandle* w = windowLevel();
  void* window = nullptr;
  onLevel(levelOf(w), w, [&] { window = w->windowCreate(bytes, numSignals, localBase); });
  return window;
}

void TwoLevelBackend::windowDestroy(void* window) {
  BackendHandle* w = windowLevel();
  onLevel(levelOf(w), w, [&] { w->windowDestroy(window); });
}

void TwoLevelBackend::windowPut(void* window, int peer, std::size_t offset, const void* src,
                                std::size_t bytes) {
  BackendHandle* w = windowLevel();
  onLevel(levelOf(w), w, [&] { w->windowPut(window, peer, offset, src, bytes); });
}

void TwoLevelBackend::windowSignal(void* window, int peer, int slot, std::uint64_t value, int op) {
  BackendHandle* w = windowLevel();
  onLevel(levelOf(w), w, [&] { w->windowSignal(window, peer, slot, value, op); });
}

void TwoLevelBackend::windowWaitSignal(void* window, int slot, std::uint64_t value) {
  BackendHandle* w = windowLevel();
  onLevel(levelOf(w), w, [&] { w->windowWaitSignal(window, slot, value); });
}

std::uint64_t TwoLevelBackend::windowReadSignal(void* window, int slot) {
  BackendHandle* w = windowLevel();
  std::uint64_t value = 0;
  onLevel(levelOf(w), w, [&] { value = w->windowReadSignal(window, slot); });
  return value;
}

void* TwoLevelBackend::windowPeerBase(void* window, int peer) {
  BackendHandle* w = windowLevel();
  void* base = nullptr;
  onLevel(levelOf(w), w, [&] { base = w->windowPeerBase(window, peer); });
  return base;
}

}  // namespace epcomm::two_level
