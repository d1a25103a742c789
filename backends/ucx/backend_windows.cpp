// The ucx backend's window entry points (window.h): creation exchanges every rank's remote
// key through the communicator's own all-gathers; destruction waits until no peer can still
// reach this rank's memory.
#include <fmt/format.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "backends/ucx/backend.h"
#include "backends/ucx/window.h"
#include "comm/error.h"

namespace epcomm::ucx {

Window& Backend::window(void* handle, const char* op) {
  checkLive(op);
  const auto it = windows_.find(handle);
  if (it == windows_.end()) {
    throwError(ErrorCode::kInvalidArgument, rank_, op, "not a live window of this communicator");
  }
  return *it->second;
}

void* Backend::windowCreate(size_t bytes, int numSignals, void** localBase) {
  checkLive("windowCreate");
  auto w = std::make_unique<Window>(*worker_, bytes, numSignals, rank_);
  const std::vector<unsigned char> key = w->packedKey();
  const auto n = static_cast<std::size_t>(size_);
  const std::int64_t mine = static_cast<std::int64_t>(key.size());
  std::vector<std::int64_t> lengths(n);
  allGather(&mine, lengths.data(), 1, static_cast<int>(DataType::kI64));
  std::vector<std::size_t> counts(n), displs(n);
  std::size_t total = 0;
  for (std::size_t r = 0; r < n; ++r) {
    counts[r] = static_cast<std::size_t>(lengths[r]);
    displs[r] = total;
    total += counts[r];
  }
  std::vector<unsigned char> all(total);
  allGatherV(key.data(), key.size(), all.data(), counts.data(), displs.data(),
             static_cast<int>(DataType::kU8));
  std::vector<std::vector<unsigned char>> keys(n);
  for (std::size_t r = 0; r < n; ++r) {
    keys[r].assign(all.begin() + static_cast<std::ptrdiff_t>(displs[r]),
                   all.begin() + static_cast<std::ptrdiff_t>(displs[r] + counts[r]));
  }
  w->connect(keys, world_, rank_);
  *localBase = w->base();
  void* handle = w.get();
  windows_.emplace(handle, std::move(w));
  return handle;
}

void Backend::windowDestroy(void* handle) {
  Window& w = window(handle, "windowDestroy");
  // This rank's operations complete at their targets, then no rank leaves before every
  // rank's did: after the barrier nobody can still reach this window.
  w.flush(scope("windowDestroy"));
  barrier();
  windows_.erase(handle);
}

void Backend::windowPut(void* handle, int peer, size_t offset, const void* src, size_t bytes) {
  window(handle, "windowPut").put(peer, offset, src, bytes, scope("windowPut"));
}

void Backend::windowSignal(void* handle, int peer, int slot, std::uint64_t value, int op) {
  window(handle, "windowSignal").signal(peer, slot, value, op, scope("windowSignal"));
}

void Backend::windowWaitSignal(void* handle, int slot, std::uint64_t value) {
  window(handle, "windowWaitSignal").waitSignal(slot, value, scope("windowWaitSignal"));
}

std::uint64_t Backend::windowReadSignal(void* handle, int slot) {
  Window& w = window(handle, "windowReadSignal");
  // Lands what peers sent over transports that need this rank's progress.
  ucp_worker_progress(worker_->handle());
  return w.readSignal(slot);
}

}  // namespace epcomm::ucx
