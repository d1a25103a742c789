// Symmetric windows of the mpi backend (contracts: comm/backend.h). Two transports behind one
// interface, chosen once per communicator (EPCOMM_MPI_WINDOW=auto|shared|messages):
//  - shared (shared_window.cpp): every rank on one node. MPI_Win_allocate_shared holds each
//    rank's signal slots and data; a put is a memcpy into the peer's mapping, a signal an
//    atomic release store/add on its slot, a wait acquire polling.
//  - messages (message_window.cpp): anything else. Puts and signals travel as two-sided
//    messages on a communicator dup'd for the window and are applied at the target while it
//    is inside waitSignal / readSignal / destroy. MPI RMA across nodes is not relied on
//    (Debian's Open MPI 4.1 fails MPI_Win_allocate over TCP under the default osc/rdma).
// Waits poll with backoff (spin, yield, short sleeps: oversubscribed ranks progress) and
// fail with kTimeout past EPCOMM_TIMEOUT_MS themselves, without aborting the MPI job.
#pragma once

#include <mpi.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "backends/mpi/data_types.h"
#include "backends/mpi/watchdog.h"

namespace epcomm::mpi {

enum class WindowTransport { kShared, kMessages };

// What a window borrows from its backend; outlives the window.
struct WindowContext {
  MPI_Comm comm = MPI_COMM_NULL;  // the backend's communicator
  int rank = 0;
  int size = 1;
  std::int64_t timeoutMs = 0;
  const std::atomic<bool>* aborted = nullptr;
  CallClock* clock = nullptr;          // scopes the blocking collectives of create / destroy
  std::string transportKnob = "auto";  // EPCOMM_MPI_WINDOW
};

class Window {
 public:
  // Releases this rank's resources only (never collective): after an abort, or when
  // destroy() failed. What a peer may still touch (shared memory, in-flight sends) leaks.
  virtual ~Window() = default;
  virtual void* localBase() const = 0;
  virtual void put(int peer, std::size_t offset, const void* src, std::size_t bytes) = 0;
  virtual void signal(int peer, int slot, std::uint64_t value, int op) = 0;
  virtual void waitSignal(int slot, std::uint64_t value) = 0;
  virtual std::uint64_t readSignal(int slot) = 0;
  // Peer's data mapped in this process (the shared transport), or nullptr.
  virtual void* peerBase(int peer) const {
    (void)peer;
    return nullptr;
  }
  // Collective: returns once no peer can still write this rank's window.
  virtual void destroy() = 0;
};

// The transport every rank uses (each decides alike: EPCOMM_MPI_WINDOW is agreed at init).
// Throws kInvalidArgument on every rank for "shared" when the ranks span nodes.
WindowTransport chooseWindowTransport(const WindowContext& ctx);

// Collective over ctx.comm; the window is zero on every rank when this returns anywhere.
std::unique_ptr<Window> createSharedWindow(const WindowContext& ctx, std::size_t bytes,
                                           int numSignals);
std::unique_ptr<Window> createMessageWindow(const WindowContext& ctx, std::size_t bytes,
                                            int numSignals);
// The two above: W constructed, then created (collectively).
template <typename W>
std::unique_ptr<Window> makeWindow(const WindowContext& ctx, std::size_t bytes, int numSignals) {
  auto window = std::make_unique<W>(ctx, bytes, numSignals);
  window->create();
  return window;
}

// Backoff and deadline of one wait. Call pause() after each poll that found nothing.
class Poller {
 public:
  Poller(const WindowContext& ctx, const char* op);
  // Backs off; throws kInvalidUsage after abort, kTimeout (naming op, the knob and
  // describe()'s text) past the deadline.
  template <typename Describe>
  void pause(Describe&& describe) {
    if (!backOff()) timeout(describe());
  }

 private:
  bool backOff();  // false: past the deadline
  [[noreturn]] void timeout(const std::string& what) const;

  const WindowContext& ctx_;
  const char* op_;
  std::int64_t deadlineNs_;
  unsigned polls_ = 0;
};

}  // namespace epcomm::mpi
