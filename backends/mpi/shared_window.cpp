// Windows on one node: MPI-3 shared memory (MPI_Win_allocate_shared). Each rank's segment
// is [pad to 64 B][numSignals uint64 slots, rounded up to 64 B][bytes of data]; the pad is
// the same in every process (mappings are page-aligned), so rank r's aligned base names the
// same memory everywhere. The window stays in one MPI_Win_lock_all epoch for its life;
// MPI_Win_sync brackets the direct loads/stores as the unified memory model asks, and the
// slot accesses themselves are release stores/adds and acquire loads.
#include <fmt/format.h>

#include <cstring>
#include <string>
#include <vector>

#include "backends/mpi/window.h"
#include "comm/backend.h"
#include "comm/error.h"

namespace epcomm::mpi {
namespace {

constexpr std::size_t kAlign = 64;

std::size_t roundUp(std::size_t n) {
  return (n + kAlign - 1) / kAlign * kAlign;
}

char* alignUp(void* p) {
  const auto v = reinterpret_cast<std::uintptr_t>(p);
  return reinterpret_cast<char*>((v + kAlign - 1) / kAlign * kAlign);
}

class SharedWindow final : public Window {
 public:
  SharedWindow(const WindowContext& ctx, std::size_t bytes, int numSignals)
      : ctx_(ctx),
        bytes_(bytes),
        signalBytes_(roundUp(static_cast<std::size_t>(numSignals) * sizeof(std::uint64_t))),
        bases_(static_cast<std::size_t>(ctx.size)) {}

  // Collective: allocates, maps every peer, zeroes this rank's segment, then a barrier so
  // no peer writes before its target was zeroed.
  void create() {
    constexpr const char* kOp = "createWindow";
    if (bytes_ > static_cast<std::size_t>(INT64_MAX) - signalBytes_ - 2 * kAlign) {
      throwError(ErrorCode::kInvalidArgument, ctx_.rank, kOp,
                 fmt::format("a window of {} bytes is too large", bytes_));
    }
    const CallClock::Scope inFlight(*ctx_.clock, kOp);
    MPI_Info info = MPI_INFO_NULL;
    MPI_Info_create(&info);
    // Each rank's segment on its own pages (local to the rank's NUMA node).
    MPI_Info_set(info, "alloc_shared_noncontig", "true");
    void* mine = nullptr;
    const auto segment = static_cast<MPI_Aint>(kAlign + signalBytes_ + bytes_);
    const int rc = MPI_Win_allocate_shared(segment, 1, info, ctx_.comm, &mine, &win_);
    MPI_Info_free(&info);
    if (rc != MPI_SUCCESS) {
      win_ = MPI_WIN_NULL;
      char text[MPI_MAX_ERROR_STRING] = {};
      int len = 0;
      MPI_Error_string(rc, text, &len);
      throwError(ErrorCode::kSystemError, ctx_.rank, kOp,
                 fmt::format("MPI_Win_allocate_shared of {} bytes failed: {} (is /dev/shm large "
                             "enough? EPCOMM_MPI_WINDOW=messages avoids shared memory)",
                             segment, text));
    }
    MPI_Win_set_errhandler(win_, MPI_ERRORS_RETURN);
    for (int r = 0; r < ctx_.size; ++r) {
      MPI_Aint size = 0;
      int unit = 0;
      void* base = nullptr;
      checkMpi(MPI_Win_shared_query(win_, r, &size, &unit, &base), ctx_.rank, kOp);
      if (size < segment) {
        throwError(
            ErrorCode::kInternal, ctx_.rank, kOp,
            fmt::format("rank {}'s shared segment has {} bytes, expected {}", r, size, segment));
      }
      bases_[r] = alignUp(base);
    }
    checkMpi(MPI_Win_lock_all(MPI_MODE_NOCHECK, win_), ctx_.rank, kOp);
    locked_ = true;
    std::memset(bases_[ctx_.rank], 0, signalBytes_ + bytes_);
    checkMpi(MPI_Win_sync(win_), ctx_.rank, kOp);
    checkMpi(MPI_Barrier(ctx_.comm), ctx_.rank, kOp);
    checkMpi(MPI_Win_sync(win_), ctx_.rank, kOp);
  }

  // An un-destroyed window (abort): its memory may still be written by peers and freeing
  // an MPI window is collective, so it is left to MPI_Finalize / process exit.
  ~SharedWindow() override = default;

  void* localBase() const override { return data(ctx_.rank); }
  void* peerBase(int peer) const override { return data(peer); }

  void put(int peer, std::size_t offset, const void* src, std::size_t bytes) override {
    std::memcpy(data(peer) + offset, src, bytes);
  }

  void signal(int peer, int slot, std::uint64_t value, int op) override {
    // Every earlier put (plain stores) is visible before the slot changes (release).
    checkMpi(MPI_Win_sync(win_), ctx_.rank, "signal");
    std::uint64_t* s = slotOf(peer, slot);
    if (op == EPCOMM_SIGNAL_ADD) {
      __atomic_fetch_add(s, value, __ATOMIC_RELEASE);
    } else {
      __atomic_store_n(s, value, __ATOMIC_RELEASE);
    }
  }

  void waitSignal(int slot, std::uint64_t value) override {
    const std::uint64_t* s = slotOf(ctx_.rank, slot);
    if (__atomic_load_n(s, __ATOMIC_ACQUIRE) < value) {
      Poller poller(ctx_, "waitSignal");
      while (__atomic_load_n(s, __ATOMIC_ACQUIRE) < value) {
        poller.pause([&] {
          return fmt::format("signal slot {} is {}, still below {}", slot,
                             __atomic_load_n(s, __ATOMIC_ACQUIRE), value);
        });
      }
    }
    checkMpi(MPI_Win_sync(win_), ctx_.rank, "waitSignal");
  }

  std::uint64_t readSignal(int slot) override {
    const std::uint64_t v = __atomic_load_n(slotOf(ctx_.rank, slot), __ATOMIC_ACQUIRE);
    checkMpi(MPI_Win_sync(win_), ctx_.rank, "readSignal");
    return v;
  }

  void destroy() override {
    constexpr const char* kOp = "destroyWindow";
    const CallClock::Scope inFlight(*ctx_.clock, kOp);
    // After the barrier no peer writes this rank's segment any more.
    checkMpi(MPI_Win_sync(win_), ctx_.rank, kOp);
    checkMpi(MPI_Barrier(ctx_.comm), ctx_.rank, kOp);
    if (locked_) {
      locked_ = false;
      checkMpi(MPI_Win_unlock_all(win_), ctx_.rank, kOp);
    }
    checkMpi(MPI_Win_free(&win_), ctx_.rank, kOp);
  }

 private:
  char* data(int r) const { return bases_[r] + signalBytes_; }
  std::uint64_t* slotOf(int r, int slot) const {
    return reinterpret_cast<std::uint64_t*>(bases_[r]) + slot;
  }

  const WindowContext& ctx_;
  std::size_t bytes_;
  std::size_t signalBytes_;
  std::vector<char*> bases_;  // rank r's aligned segment in this process's mapping
  MPI_Win win_ = MPI_WIN_NULL;
  bool locked_ = false;
};

}  // namespace

std::unique_ptr<Window> createSharedWindow(const WindowContext& ctx, std::size_t bytes,
                                           int numSignals) {
  return makeWindow<SharedWindow>(ctx, bytes, numSignals);
}

}  // namespace epcomm::mpi
