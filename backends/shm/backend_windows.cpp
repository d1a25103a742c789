// The shm backend's symmetric windows (comm/backend.h): create and destroy through this
// communicator's own collectives, put = memcpy into the peer's mapped pages, signal = an
// atomic on the peer's slot (+ a futex wake when a waiter sleeps), wait = the Waiter's
// spin -> yield -> futex with the deadline, abort flags and every peer's liveness.
#include <fmt/format.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <exception>
#include <string>

#include "backends/shm/algorithms.h"
#include "backends/shm/backend.h"
#include "comm/error.h"
#include "comm/types.h"

namespace epcomm::shm {
namespace {

void wakeAll(std::atomic<std::uint64_t>& word) {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, INT_MAX, nullptr, nullptr,
          0);
}

}  // namespace

Window& Backend::window(void* handle, const char* op) const {
  if (!registry_.holds(handle)) {
    throwError(ErrorCode::kInvalidArgument, rank_, op,
               "shm backend: the window handle is not a live window of this communicator");
  }
  return *static_cast<Window*>(handle);
}

void* Backend::windowCreate(std::size_t bytes, int numSignals, void** localBase) {
  const char* op = "windowCreate";
  waiter_->checkAborted(op);
  GatherFn gather = [this](const void* send, void* recv, std::size_t n) {
    allGather(send, recv, n, static_cast<int>(DataType::kU8));
  };
  Window& w = registry_.add(
      Window::establish(gather, rank_, size_, bytes, numSignals, registry_.nextId(), op));
  *localBase = w.data(rank_);
  return &w;
}

void Backend::windowDestroy(void* handle) {
  const char* op = "windowDestroy";
  Window& w = window(handle, op);
  // After an abort (this rank's or a peer's) only this rank's mapping is released: peers
  // keep theirs, so nothing they still do can fault. Otherwise a closing barrier: once it
  // returned, no peer can put into or signal this rank's window any more.
  bool aborted = false;
  try {
    waiter_->checkAborted(op);
  } catch (const Error&) {
    aborted = true;
  }
  for (int r = 0; r < size_ && !aborted; ++r) {
    aborted = segment_->rankInfo(r).aborted.load(std::memory_order_acquire) != 0;
  }
  std::exception_ptr failed;
  if (!aborted) {
    try {
      barrier();
    } catch (...) {
      failed = std::current_exception();
      waiter_->abort();  // peers still inside the barrier fail fast
    }
  }
  registry_.remove(&w);
  if (failed) std::rethrow_exception(failed);
}

void Backend::windowPut(void* handle, int peer, std::size_t offset, const void* src,
                        std::size_t bytes) {
  const char* op = "put";
  Window& w = window(handle, op);
  if (peer < 0 || peer >= size_ || offset > w.bytes() || bytes > w.bytes() - offset) {
    throwError(ErrorCode::kInvalidArgument, rank_, op,
               fmt::format("shm backend: put of {} bytes at offset {} to rank {} does not fit a "
                           "window of {} bytes on {} ranks",
                           bytes, offset, peer, w.bytes(), size_));
  }
  waiter_->checkAborted(op);
  // memmove where a put from this rank's own window into itself overlaps; else copyBytes,
  // which splits a large put over the worker threads.
  char* dst = w.data(peer) + offset;
  const auto* from = static_cast<const char*>(src);
  if (dst < from + bytes && from < dst + bytes) {
    std::memmove(dst, src, bytes);
  } else {
    copyBytes(dst, src, bytes);
  }
}

void Backend::windowSignal(void* handle, int peer, int slot, std::uint64_t value, int op) {
  const char* name = "signal";
  Window& w = window(handle, name);
  if (peer < 0 || peer >= size_ || slot < 0 || slot >= w.numSignals() ||
      (op != EPCOMM_SIGNAL_SET && op != EPCOMM_SIGNAL_ADD)) {
    throwError(ErrorCode::kInvalidArgument, rank_, name,
               fmt::format("shm backend: signal to rank {} slot {} op {}: window has {} slots on "
                           "{} ranks",
                           peer, slot, op, w.numSignals(), size_));
  }
  waiter_->checkAborted(name);
  SignalSlot& s = w.signal(peer, slot);
  // seq_cst: orders every earlier put before the new value (release), and the sleepers
  // load after the update, pairing with the waiter's announce-then-recheck (wait.cpp).
  if (op == EPCOMM_SIGNAL_SET) {
    s.value.store(value, std::memory_order_seq_cst);
  } else {
    s.value.fetch_add(value, std::memory_order_seq_cst);
  }
  if (s.sleepers.load(std::memory_order_seq_cst) != 0) wakeAll(s.value);
}

void Backend::windowWaitSignal(void* handle, int slot, std::uint64_t value) {
  const char* op = "waitSignal";
  Window& w = window(handle, op);
  if (slot < 0 || slot >= w.numSignals()) {
    throwError(ErrorCode::kInvalidArgument, rank_, op,
               fmt::format("shm backend: slot {} is outside 0..{}", slot, w.numSignals() - 1));
  }
  waiter_->checkAborted(op);
  SignalSlot& s = w.signal(rank_, slot);
  const OpClock clock(op);
  waiter_->waitAtLeast(s.value, s.sleepers, value, Waiter::kAnyPeer, clock);
}

std::uint64_t Backend::windowReadSignal(void* handle, int slot) {
  const char* op = "readSignal";
  Window& w = window(handle, op);
  if (slot < 0 || slot >= w.numSignals()) {
    throwError(ErrorCode::kInvalidArgument, rank_, op,
               fmt::format("shm backend: slot {} is outside 0..{}", slot, w.numSignals() - 1));
  }
  return w.signal(rank_, slot).value.load(std::memory_order_acquire);
}

void* Backend::windowPeerBase(void* handle, int peer) {
  return window(handle, "peerData").data(peer);
}

}  // namespace epcomm::shm
