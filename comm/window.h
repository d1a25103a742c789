// Symmetric memory: windows (put + signal, the NVSHMEM / MPI-RMA-like primitive low-latency
// EP is built on) and registered buffers (Communicator::allocate), which are windows without
// signals that collectives recognise and use in place (no copy through the backend's
// staging buffers, as NCCL's user-buffer registration).
//
// Contracts (the backend ABI's, comm/backend.h):
//  - Creation and destruction are collective: every rank of the communicator, in the same
//    order, with the same bytes and numSignals. Destroy every window before its
//    communicator. Destruction returns once no peer can still write this rank's memory.
//    A window still alive when its communicator is destroyed is released there, locally
//    (no collective step): data() is then gone, calls on it throw kInvalidUsage and its
//    destructor does nothing.
//  - data() is this rank's `bytes()` bytes (64-byte aligned, zero at creation); read and
//    write it directly. Peers write it only through put().
//  - put() is complete on return (src reusable) and visible at the peer no later than any
//    later signal() from this rank to that peer; a rank whose waitSignal() returned sees
//    every put the signaller made to it before signalling.
//  - Signal slots are unsigned 64-bit, zero at creation. waitSignal(slot, v) waits until
//    this rank's slot >= v, up to EPCOMM_TIMEOUT_MS, and fails with kPeerLost when a peer
//    died or aborted.
//  - put/signal/wait are not collective; one thread per communicator at a time, between
//    collectives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "export.h"

namespace epcomm {

class Communicator;

enum class SignalOp : int { kSet = 0, kAdd = 1 };  // values = EPCOMM_SIGNAL_SET / _ADD

class EPCOMM_API Window {
 public:
  ~Window();  // collective (see above)
  Window(const Window&) = delete;
  Window& operator=(const Window&) = delete;

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  int numSignals() const { return numSignals_; }

  // Copies `bytes` bytes of src into peer's window at offset (peer may be this rank).
  void put(int peer, std::size_t offset, const void* src, std::size_t bytes);
  // Sets (kSet) or adds to (kAdd) peer's signal slot, after every earlier put to peer.
  void signal(int peer, int slot, std::uint64_t value, SignalOp op = SignalOp::kSet);
  // Waits until this rank's slot >= value.
  void waitSignal(int slot, std::uint64_t value);
  // This rank's slot, now.
  std::uint64_t readSignal(int slot) const;
  // Peer's data() as mapped in this process, for direct loads (nvshmem_ptr), or nullptr
  // where the backend cannot map it (another host, a message transport, a backend without
  // the entry). Loads see what the peer stored before a signal that this rank's
  // waitSignal has seen; writes go through put(). peerData(rank) is data().
  void* peerData(int peer) const;

 private:
  friend class Communicator;
  Window(Communicator& comm, void* handle, void* data, std::size_t bytes, int numSignals)
      : comm_(&comm), handle_(handle), data_(data), bytes_(bytes), numSignals_(numSignals) {}
  // The communicator, or a kInvalidUsage error naming `op` once it was destroyed.
  Communicator& comm(const char* op) const;

  Communicator* comm_;  // null once the communicator was destroyed
  void* handle_;
  void* data_;
  std::size_t bytes_;
  int numSignals_;
  std::vector<void*> peers_;  // peerData of every rank (cleared with the communicator)
};

// Memory from Communicator::allocate: `bytes()` bytes on every rank that collectives on this
// communicator use in place when every rank passes buffers inside its registered memory.
// Any pointer into data() (and up to its end) counts. Collective destruction, as Window.
class EPCOMM_API RegisteredBuffer {
 public:
  void* data() const { return window_->data(); }
  std::size_t bytes() const { return window_->bytes(); }

 private:
  friend class Communicator;
  explicit RegisteredBuffer(std::unique_ptr<Window> window) : window_(std::move(window)) {}
  std::unique_ptr<Window> window_;
};

}  // namespace epcomm
