// Windows on two levels. Where both levels are needed, a window is the in-host backend's
// (shared memory every rank of the host maps) opened to the other hosts by the network
// backend over the same memory (windowCreateOver): a put or signal to a rank of this host
// goes through shared memory, to another host over the network, each in its own order, and
// the ranks of this host map each other's data (peerData). A slot's value is the sum of
// what arrived over the two levels: exact for kAdd, and for kSet where one rank sets the
// slot (the usual one slot per signalling rank). A wait told the signalling rank
// (windowWaitSignalFrom) runs on that rank's level alone, with its timeout and peer-loss
// detection; one that is not polls both until EPCOMM_TIMEOUT_MS. Without a network backend
// that can open caller memory (mpi), windows live on `world` alone, as on one level.
#include <fmt/format.h>

#include <chrono>
#include <thread>

#include "comm/two_level/two_level_backend.h"

namespace epcomm::two_level {

// Where a put, signal or mapping for `peer` goes: the level, its backend and handle, and
// the peer's rank there.
struct TwoLevelBackend::Route {
  Level level;
  BackendHandle* backend;
  void* window;
  int peer;
};

TwoLevelBackend::~TwoLevelBackend() = default;

bool TwoLevelBackend::hasWindows() const {
  if (levels_.numHosts() == 1) return inHost_->hasWindows();
  return world_->hasWindows();
}

TwoLevelBackend::LevelWindow& TwoLevelBackend::levelWindow(void* window, const char* op) {
  const auto it = windows_.find(window);
  if (it == windows_.end()) {
    throwError(ErrorCode::kInvalidArgument, levels_.rank, op,
               "not a live window of this communicator");
  }
  return *it->second;
}

TwoLevelBackend::Route TwoLevelBackend::route(const LevelWindow& w, int peer) const {
  if (w.inHost && (!w.world || levels_.layout.hostOf(peer) == levels_.host)) {
    return {Level::kInHost, inHost_.get(), w.inHost, levels_.layout.localOf(peer)};
  }
  return {Level::kWorld, world_.get(), w.world, peer};
}

void* TwoLevelBackend::windowCreate(std::size_t bytes, int numSignals, void** localBase) {
  auto w = std::make_unique<LevelWindow>();
  const bool oneHost = levels_.numHosts() == 1;
  const bool shared = !oneHost && levels_.layout.maxLocalSize() > 1 &&
                      inHost_->hasWindows() && world_->hasWindowsOverMemory();
  if (oneHost || shared) {
    onLevel(Level::kInHost, inHost_.get(),
            [&] { w->inHost = inHost_->windowCreate(bytes, numSignals, localBase); });
  }
  if (!oneHost) {
    try {
      onLevel(Level::kWorld, world_.get(), [&] {
        w->world = shared ? world_->windowCreateOver(*localBase, bytes, numSignals)
                          : world_->windowCreate(bytes, numSignals, localBase);
      });
    } catch (...) {
      // Every rank of the host made the in-host window, and each gets here or to a world
      // failure of its own; the in-host destruction is collective among them.
      if (w->inHost) inHost_->windowDestroy(w->inHost);
      throw;
    }
  }
  void* handle = w.get();
  windows_.emplace(handle, std::move(w));
  return handle;
}

void TwoLevelBackend::windowDestroy(void* window) {
  LevelWindow& w = levelWindow(window, "windowDestroy");
  // The network level first: once it returns no other host can write the shared memory.
  if (w.world) onLevel(Level::kWorld, world_.get(), [&] { world_->windowDestroy(w.world); });
  if (w.inHost) onLevel(Level::kInHost, inHost_.get(), [&] { inHost_->windowDestroy(w.inHost); });
  windows_.erase(window);
}

void TwoLevelBackend::windowPut(void* window, int peer, std::size_t offset, const void* src,
                                std::size_t bytes) {
  const Route r = route(levelWindow(window, "windowPut"), peer);
  onLevel(r.level, r.backend, [&] { r.backend->windowPut(r.window, r.peer, offset, src, bytes); });
}

void TwoLevelBackend::windowSignal(void* window, int peer, int slot, std::uint64_t value, int op) {
  const Route r = route(levelWindow(window, "windowSignal"), peer);
  onLevel(r.level, r.backend, [&] { r.backend->windowSignal(r.window, r.peer, slot, value, op); });
}

std::uint64_t TwoLevelBackend::windowReadSignal(void* window, int slot) {
  const LevelWindow& w = levelWindow(window, "windowReadSignal");
  std::uint64_t sum = 0;
  if (w.inHost) {
    onLevel(Level::kInHost, inHost_.get(),
            [&] { sum += inHost_->windowReadSignal(w.inHost, slot); });
  }
  if (w.world) {
    onLevel(Level::kWorld, world_.get(), [&] { sum += world_->windowReadSignal(w.world, slot); });
  }
  return sum;
}

void TwoLevelBackend::windowWaitSignal(void* window, int slot, std::uint64_t value) {
  const LevelWindow& w = levelWindow(window, "windowWaitSignal");
  if (!w.inHost || !w.world) {
    const Route r = route(w, levels_.rank);
    return onLevel(r.level, r.backend, [&] { r.backend->windowWaitSignal(r.window, slot, value); });
  }
  // Either level may carry the signal: poll both (the network backend's read progresses its
  // transport), yielding so that oversubscribed ranks run.
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    if (windowReadSignal(window, slot) >= value) return;
    if (timeoutMs_ > 0 &&
        std::chrono::steady_clock::now() - start > std::chrono::milliseconds(timeoutMs_)) {
      throwError(ErrorCode::kTimeout, levels_.rank, "waitSignal",
                 fmt::format("signal slot {} did not reach {} within EPCOMM_TIMEOUT_MS={} (it "
                             "reads {}); a wait that names the signalling rank (waitSignal with "
                             "a peer) also reports a lost peer",
                             slot, value, timeoutMs_, windowReadSignal(window, slot)));
    }
    std::this_thread::yield();
  }
}

void TwoLevelBackend::windowWaitSignalFrom(void* window, int slot, std::uint64_t value, int peer) {
  const LevelWindow& w = levelWindow(window, "windowWaitSignal");
  const Route r = route(w, peer);
  // The other level's part of the slot (zero where only `peer` signals it).
  std::uint64_t other = 0;
  if (w.inHost && w.world) {
    const bool inHost = r.level == Level::kInHost;
    BackendHandle* o = inHost ? world_.get() : inHost_.get();
    void* ow = inHost ? w.world : w.inHost;
    onLevel(inHost ? Level::kWorld : Level::kInHost, o, [&] { other = o->windowReadSignal(ow, slot); });
  }
  if (other >= value) return;
  onLevel(r.level, r.backend,
          [&] { r.backend->windowWaitSignalFrom(r.window, slot, value - other, r.peer); });
}

void* TwoLevelBackend::windowPeerBase(void* window, int peer) {
  const Route r = route(levelWindow(window, "windowPeerBase"), peer);
  void* base = nullptr;
  onLevel(r.level, r.backend, [&] { base = r.backend->windowPeerBase(r.window, r.peer); });
  return base;
}

}  // namespace epcomm::two_level
