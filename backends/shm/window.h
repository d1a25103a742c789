// A symmetric window of the shm backend (comm/backend.h, EPCOMM_BACKEND_CAP_WINDOWS): one
// POSIX shared-memory segment per window that every rank maps, so a put is a memcpy into
// the peer's pages and a signal an atomic on the peer's slot.
//
// Layout (computed identically on every rank from the agreed (size, bytes, numSignals)):
//   WindowHeader                 one page: magic, size, bytes, numSignals
//   data[size]                   each rank's `bytes` bytes, page aligned (dataStride apart)
//   SignalSlot[size][numSignals] 16 bytes each, each rank's array line aligned
//
// Lifecycle, as the communicator's segment (segment.h): rank 0 creates the file (shm_open
// O_EXCL 0600, random name, posix_fallocate so a full /dev/shm fails at creation, not with
// SIGBUS later), publishes the name through the backend's own all-gather, every rank maps
// it, a second all-gather confirms, rank 0 unlinks, and a third lets every rank return only
// once the name is gone. The file is zero-filled, so data and signals start at zero.
//
// Invariants: a signal slot's value only changes through signal() (set or add); its low 32
// bits are the futex word waiters sleep on, `sleepers` counts them, so a signal makes a
// syscall only when someone sleeps. Slots share cache lines (4 per line) but never a futex
// word, so every wake reaches exactly the waiters of its slot.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "backends/shm/segment.h"

namespace epcomm::shm {

struct alignas(16) SignalSlot {
  std::atomic<std::uint64_t> value;     // low 32 bits: the futex word (little endian)
  std::atomic<std::uint32_t> sleepers;  // waiters inside FUTEX_WAIT on value
  std::uint32_t unused;
};
static_assert(sizeof(SignalSlot) == 16);

class Window {
 public:
  // Collective over every rank of the communicator whose all-gather `gather` is. `id`
  // names the window in registered-collective records (equal on every rank: windows are
  // created in the same order everywhere). Throws on every rank alike when creation or a
  // mapping failed, after the file was unlinked.
  static std::unique_ptr<Window> establish(const GatherFn& gather, int rank, int size,
                                           std::size_t bytes, int numSignals, std::uint64_t id,
                                           const char* op);
  ~Window();  // unmaps; peers keep their own mappings
  Window(const Window&) = delete;
  Window& operator=(const Window&) = delete;

  std::uint64_t id() const { return id_; }
  std::size_t bytes() const { return bytes_; }
  int numSignals() const { return numSignals_; }
  // Rank r's data in this process's mapping (bytes() bytes, page aligned).
  char* data(int r) const { return base_ + kDataOff + static_cast<std::size_t>(r) * dataStride_; }
  SignalSlot& signal(int r, int slot) const {
    return reinterpret_cast<SignalSlot*>(base_ + signalsOff_ +
                                         static_cast<std::size_t>(r) * signalStride_)[slot];
  }
  // Whether [p, p + n) lies inside this rank's data (n == 0: p inside or at its end).
  bool containsLocal(const void* p, std::size_t n) const;

  // The whole mapping's bytes for (size, bytes, numSignals), or 0 when it overflows.
  static std::size_t totalBytes(int size, std::size_t bytes, int numSignals);

 private:
  static constexpr std::size_t kDataOff = 4096;
  Window(char* base, std::size_t total, int rank, int size, std::size_t bytes, int numSignals,
         std::uint64_t id);

  char* base_;
  std::size_t total_;
  int rank_;
  std::size_t bytes_;
  int numSignals_;
  std::uint64_t id_;
  std::size_t dataStride_;
  std::size_t signalsOff_;
  std::size_t signalStride_;
};

}  // namespace epcomm::shm
