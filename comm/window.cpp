// Windows and registered buffers: local checks, agreement at creation, then the backend.
#include "comm/window.h"

#include <fmt/format.h>

#include <algorithm>
#include <string>

#include "comm/communicator.h"
#include "comm/log.h"
#include "comm/src/argument_check.h"
#include "comm/src/backend_handle.h"

namespace epcomm {
namespace {

// Bounds a backend's segment tables; far above what EP needs (a few per peer).
constexpr int kMaxSignals = 1 << 20;

std::int64_t i64(std::size_t n) {
  return n > static_cast<std::size_t>(INT64_MAX) ? INT64_MAX : static_cast<std::int64_t>(n);
}

}  // namespace

bool Communicator::hasWindows() const {
  return backend_->hasWindows();
}

std::unique_ptr<Window> Communicator::createWindow(std::size_t bytes, int numSignals) {
  constexpr const char* kOp = "createWindow";
  checkUsable(kOp);
  // The same plugin on every rank: each refuses alike, no agreement needed.
  if (!backend_->hasWindows()) {
    throwError(ErrorCode::kInvalidUsage, rank_, kOp,
               fmt::format("backend {} has no symmetric windows; use EPCOMM_BACKEND=shm or mpi "
                           "for windows and registered buffers",
                           backend_->name()));
  }
  ArgumentCheck check;
  check.that(numSignals >= 0 && numSignals <= kMaxSignals, [&] {
    return fmt::format("numSignals {} is outside 0..{}", numSignals, kMaxSignals);
  });
  // Always agreed through the backend's all-reduce: creation is rare and a mismatch would
  // leave ranks mapping different sizes.
  agreeByAllReduce(kOp, check, {{"bytes", i64(bytes)}, {"numSignals", numSignals}});
  void* data = nullptr;
  void* handle = nullptr;
  run(kOp, [&] { handle = backend_->windowCreate(bytes, numSignals, &data); });
  std::unique_ptr<Window> window(new Window(*this, handle, data, bytes, numSignals));
  window->peers_.resize(size_);
  for (int r = 0; r < size_; ++r) {
    window->peers_[r] = r == rank_ ? data : backend_->windowPeerBase(handle, r);
  }
  windows_.push_back(window.get());
  return window;
}

std::unique_ptr<RegisteredBuffer> Communicator::allocate(std::size_t bytes) {
  return std::unique_ptr<RegisteredBuffer>(new RegisteredBuffer(createWindow(bytes, 0)));
}

Window::~Window() {
  if (!comm_) return;  // released with its communicator
  auto& live = comm_->windows_;
  live.erase(std::remove(live.begin(), live.end(), this), live.end());
  // Collective; after an abort the backend only releases this rank's resources.
  try {
    comm_->backend_->windowDestroy(handle_);
  } catch (const Error& e) {
    log().warn("destroying a window: {}", e.what());
  }
}

Communicator& Window::comm(const char* op) const {
  if (!comm_) {
    throwError(ErrorCode::kInvalidUsage, -1, op,
               "the window's communicator was destroyed (destroy windows first)");
  }
  return *comm_;
}

void Window::put(int peer, std::size_t offset, const void* src, std::size_t bytes) {
  constexpr const char* kOp = "put";
  Communicator& c = comm(kOp);
  c.checkUsable(kOp);
  if (peer < 0 || peer >= c.size_ || offset > bytes_ || bytes > bytes_ - offset ||
      (bytes > 0 && src == nullptr)) {
    throwError(ErrorCode::kInvalidArgument, c.rank_, kOp,
               fmt::format("put of {} bytes at offset {} to peer {} does not fit a window of {} "
                           "bytes on {} ranks (or src is null)",
                           bytes, offset, peer, bytes_, c.size_));
  }
  if (bytes == 0) return;
  c.run(kOp, [&] { c.backend_->windowPut(handle_, peer, offset, src, bytes); });
}

void Window::signal(int peer, int slot, std::uint64_t value, SignalOp op) {
  constexpr const char* kOp = "signal";
  Communicator& c = comm(kOp);
  c.checkUsable(kOp);
  if (peer < 0 || peer >= c.size_ || slot < 0 || slot >= numSignals_ ||
      (op != SignalOp::kSet && op != SignalOp::kAdd)) {
    throwError(ErrorCode::kInvalidArgument, c.rank_, kOp,
               fmt::format("signal to peer {} slot {}: peer must be in 0..{}, slot in 0..{}, op "
                           "set or add",
                           peer, slot, c.size_ - 1, numSignals_ - 1));
  }
  c.run(kOp, [&] { c.backend_->windowSignal(handle_, peer, slot, value, static_cast<int>(op)); });
}

void Window::waitSignal(int slot, std::uint64_t value) {
  constexpr const char* kOp = "waitSignal";
  Communicator& c = comm(kOp);
  c.checkUsable(kOp);
  if (slot < 0 || slot >= numSignals_) {
    throwError(ErrorCode::kInvalidArgument, c.rank_, kOp,
               fmt::format("slot {} is outside 0..{}", slot, numSignals_ - 1));
  }
  c.run(kOp, [&] { c.backend_->windowWaitSignal(handle_, slot, value); });
}

void* Window::peerData(int peer) const {
  constexpr const char* kOp = "peerData";
  Communicator& c = comm(kOp);
  if (peer < 0 || peer >= c.size_) {
    throwError(ErrorCode::kInvalidArgument, c.rank_, kOp,
               fmt::format("peer {} is outside 0..{}", peer, c.size_ - 1));
  }
  return peers_[peer];
}

std::uint64_t Window::readSignal(int slot) const {
  constexpr const char* kOp = "readSignal";
  Communicator& c = comm(kOp);
  c.checkUsable(kOp);
  if (slot < 0 || slot >= numSignals_) {
    throwError(ErrorCode::kInvalidArgument, c.rank_, kOp,
               fmt::format("slot {} is outside 0..{}", slot, numSignals_ - 1));
  }
  std::uint64_t value = 0;
  c.run(kOp, [&] { value = c.backend_->windowReadSignal(handle_, slot); });
  return value;
}

}  // namespace epcomm
