// The windows of one shm communicator, and how a collective learns whether every rank's
// buffers lie in them (registered buffers, comm/window.h: Communicator::allocate).
//
// Agreement: a collective that may go zero-copy first takes one handshake step on its own
// kind's channel. Each rank publishes in its SlotHeader of that step a record: the step
// number and a magic (so a stale header never counts), then for send and recv either
// "registered: window id + offset" or nothing. After the exchange every rank reads every
// rank's record and resolves it into its own mappings, so all ranks derive the same
// RegisteredPeers and take the same path: zero-copy when the algorithm's buffers are
// registered on every rank, otherwise the copy path, which then starts with the next step.
// The handshake step also carries the call check (channel.h) and is the zero-copy path's
// entry barrier: once it returns, every rank's send is ready and no rank uses its recv.
//
// Whether a collective takes the handshake at all depends only on what every rank agrees
// on: the communicator has windows (they are created collectively), the collective's kind
// and its byte count (checked alike on every rank; a rank whose count differs meets the
// others on the same first step and the call check fails everywhere).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "backends/shm/algorithms.h"
#include "backends/shm/window.h"

namespace epcomm::shm {

// Every rank's buffers as this process sees them, after the handshake.
struct RegisteredPeers {
  std::vector<const char*> send;  // rank r's send in this process; nullptr: not registered
  std::vector<char*> recv;        // rank r's recv in this process; nullptr: not registered
  bool allSend = false;           // every rank's send is registered
  bool allRecv = false;           // every rank's recv is registered
};

class Registry {
 public:
  bool empty() const { return windows_.empty(); }
  // Takes ownership; ids grow by one per window, equal on every rank.
  Window& add(std::unique_ptr<Window> window);
  // Unmaps and forgets `window` (no-op when it is not one of ours). Returns whether it was.
  bool remove(const Window* window);
  std::uint64_t nextId() const { return nextId_; }
  // The window whose local data holds [p, p + n), or nullptr.
  const Window* find(const void* p, std::size_t n) const;
  const Window* byId(std::uint64_t id) const;
  // Whether `handle` is one of these windows (compares addresses only).
  bool holds(const void* handle) const;

  // The handshake step (see above). sendBytes/recvBytes: the extents the collective reads
  // and writes on this rank; a null buffer (or publishSend false) publishes "not
  // registered". Fills `peers` identically on every rank.
  void agree(const Step& s, const void* send, std::size_t sendBytes, bool publishSend, void* recv,
             std::size_t recvBytes, RegisteredPeers& peers) const;

 private:
  std::vector<std::unique_ptr<Window>> windows_;
  std::uint64_t nextId_ = 1;
};

}  // namespace epcomm::shm
