// Windows emulated with two-sided messages, for ranks on several nodes (or
// EPCOMM_MPI_WINDOW=messages). Each window dups the backend's communicator, so its traffic
// matches nothing else. A put is a control message {put, offset, bytes} followed by the
// data (in chunks of at most kChunk bytes, tag kDataTag); a signal is a control message
// {signal, slot, value, op}. Sends are MPI_Isend from an owned copy (src is reusable on
// return and a put never waits for its target). The target applies control messages in
// arrival order while inside waitSignal, readSignal or destroy, receiving a put's data
// straight into its window. MPI's non-overtaking order per (source, tag, communicator)
// gives: puts from one rank are applied before its later signal.
//
// Destroy drains: every rank learns (all-to-all) how many control messages each peer sent
// it and applies exactly that many before freeing anything.
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "backends/mpi/window.h"
#include "comm/backend.h"
#include "comm/error.h"

namespace epcomm::mpi {
namespace {

constexpr int kCtrlTag = 1;
constexpr int kDataTag = 2;
constexpr std::size_t kChunk = std::size_t{1} << 30;  // MPI counts are ints
constexpr std::size_t kAlign = 64;

enum : std::uint64_t { kPut = 1, kSignal = 2 };

struct Ctrl {
  std::uint64_t kind = 0;
  std::uint64_t a = 0;  // put: offset; signal: slot
  std::uint64_t b = 0;  // put: bytes; signal: value
  std::uint64_t c = 0;  // signal: op
};

// One control message and its data in flight; the buffers live until every request is done.
struct PendingSend {
  Ctrl ctrl;
  std::unique_ptr<char[]> data;
  std::vector<MPI_Request> requests;
};

std::size_t chunks(std::size_t bytes) {
  return (bytes + kChunk - 1) / kChunk;
}

class MessageWindow final : public Window {
 public:
  MessageWindow(const WindowContext& ctx, std::size_t bytes, int numSignals)
      : ctx_(ctx),
        bytes_(bytes),
        slots_(static_cast<std::size_t>(numSignals), 0),
        sent_(static_cast<std::size_t>(ctx.size), 0),
        received_(static_cast<std::size_t>(ctx.size), 0) {}

  // Collective: dups the communicator, allocates, and agrees that every rank allocated.
  void create() {
    constexpr const char* kOp = "createWindow";
    const CallClock::Scope inFlight(*ctx_.clock, kOp);
    checkMpi(MPI_Comm_dup(ctx_.comm, &comm_), ctx_.rank, kOp);
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    const std::size_t rounded =
        bytes_ > SIZE_MAX - kAlign ? 0 : (bytes_ + kAlign) / kAlign * kAlign;
    memory_ = rounded ? static_cast<char*>(std::aligned_alloc(kAlign, rounded)) : nullptr;
    int ok = memory_ != nullptr ? 1 : 0;
    checkMpi(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, comm_), ctx_.rank, kOp);
    if (!ok) {
      throwError(ErrorCode::kSystemError, ctx_.rank, kOp,
                 fmt::format("a rank could not allocate {} bytes for a window (this rank: {})",
                             bytes_, memory_ ? "allocated" : "failed"));
    }
    std::memset(memory_, 0, bytes_);
  }

  // Releases this rank's resources only: sends still in flight are detached and their
  // buffers leak (a peer may still receive them); the window memory is freed (peers write
  // it only through receives this rank posts).
  ~MessageWindow() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) {
      for (std::unique_ptr<PendingSend>& p : pending_) {
        for (MPI_Request& r : p->requests) {
          if (r != MPI_REQUEST_NULL) MPI_Request_free(&r);
        }
        static_cast<void>(p.release());
      }
      if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
    }
    std::free(memory_);
  }

  void* localBase() const override { return memory_; }

  void put(int peer, std::size_t offset, const void* src, std::size_t bytes) override {
    if (peer == ctx_.rank) {
      std::memcpy(memory_ + offset, src, bytes);
      return;
    }
    auto p = std::make_unique<PendingSend>();
    p->ctrl = Ctrl{kPut, offset, bytes, 0};
    p->data.reset(new char[bytes]);
    std::memcpy(p->data.get(), src, bytes);
    post(peer, std::move(p), "put");
  }

  void signal(int peer, int slot, std::uint64_t value, int op) override {
    const Ctrl c{kSignal, static_cast<std::uint64_t>(slot), value, static_cast<std::uint64_t>(op)};
    if (peer == ctx_.rank) {
      apply(peer, c, "signal");
      return;
    }
    auto p = std::make_unique<PendingSend>();
    p->ctrl = c;
    post(peer, std::move(p), "signal");
  }

  void waitSignal(int slot, std::uint64_t value) override {
    constexpr const char* kOp = "waitSignal";
    progress(kOp);
    if (slots_[slot] >= value) return;
    Poller poller(ctx_, kOp);
    for (;;) {
      progress(kOp);
      if (slots_[slot] >= value) return;
      poller.pause([&] {
        return fmt::format("signal slot {} is {}, still below {}", slot, slots_[slot], value);
      });
    }
  }

  std::uint64_t readSignal(int slot) override {
    progress("readSignal");
    return slots_[slot];
  }

  void destroy() override {
    constexpr const char* kOp = "destroyWindow";
    std::vector<std::uint64_t> expected(static_cast<std::size_t>(ctx_.size), 0);
    {
      const CallClock::Scope inFlight(*ctx_.clock, kOp);
      checkMpi(MPI_Alltoall(sent_.data(), 1, MPI_UINT64_T, expected.data(), 1, MPI_UINT64_T, comm_),
               ctx_.rank, kOp);
    }
    Poller poller(ctx_, kOp);
    for (;;) {
      progress(kOp);
      if (received_ == expected && pending_.empty()) break;
      poller.pause([&] {
        std::string what = "draining the window: ";
        for (int r = 0; r < ctx_.size; ++r) {
          if (received_[r] != expected[r]) {
            what += fmt::format("received {} of the {} messages rank {} sent; ", received_[r],
                                expected[r], r);
          }
        }
        return fmt::format("{}{} own sends incomplete", what, pending_.size());
      });
    }
    checkMpi(MPI_Comm_free(&comm_), ctx_.rank, kOp);
  }

 private:
  // Posts p's control message (and data) to peer; p stays in pending_ until complete.
  void post(int peer, std::unique_ptr<PendingSend> p, const char* op) {
    PendingSend& s = *p;
    const std::size_t bytes = s.ctrl.kind == kPut ? s.ctrl.b : 0;
    s.requests.assign(1 + chunks(bytes), MPI_REQUEST_NULL);
    pending_.push_back(std::move(p));
    ++sent_[peer];
    checkMpi(MPI_Isend(&s.ctrl, sizeof(Ctrl), MPI_BYTE, peer, kCtrlTag, comm_, &s.requests[0]),
             ctx_.rank, op);
    for (std::size_t i = 0; i * kChunk < bytes; ++i) {
      const std::size_t n = std::min(kChunk, bytes - i * kChunk);
      checkMpi(MPI_Isend(s.data.get() + i * kChunk, static_cast<int>(n), MPI_BYTE, peer, kDataTag,
                         comm_, &s.requests[1 + i]),
               ctx_.rank, op);
    }
    reapSends(false, op);
  }

  // Drops completed sends: all of them, or (cheaply, on the put/signal path) those at the
  // front of the queue.
  void reapSends(bool all, const char* op) {
    std::size_t kept = 0;
    bool stop = false;
    for (std::size_t i = 0; i < pending_.size(); ++i) {
      int done = 0;
      if (!stop) {
        std::vector<MPI_Request>& r = pending_[i]->requests;
        checkMpi(MPI_Testall(static_cast<int>(r.size()), r.data(), &done, MPI_STATUSES_IGNORE),
                 ctx_.rank, op);
      }
      if (!done) {
        stop = !all;
        if (kept != i) pending_[kept] = std::move(pending_[i]);
        ++kept;
      }
    }
    pending_.resize(kept);
  }

  // Applies every control message that has arrived, and reaps finished sends.
  void progress(const char* op) {
    for (;;) {
      int flag = 0;
      MPI_Message message = MPI_MESSAGE_NULL;
      MPI_Status status{};
      checkMpi(MPI_Improbe(MPI_ANY_SOURCE, kCtrlTag, comm_, &flag, &message, &status), ctx_.rank,
               op);
      if (!flag) break;
      Ctrl c;
      checkMpi(MPI_Mrecv(&c, sizeof(Ctrl), MPI_BYTE, &message, &status), ctx_.rank, op);
      ++received_[status.MPI_SOURCE];
      apply(status.MPI_SOURCE, c, op);
    }
    reapSends(true, op);
  }

  void apply(int source, const Ctrl& c, const char* op) {
    if (c.kind == kPut && c.a <= bytes_ && c.b <= bytes_ - c.a) {
      receiveData(source, memory_ + c.a, c.b, op);
    } else if (c.kind == kSignal && c.a < slots_.size()) {
      slots_[c.a] = c.c == std::uint64_t{EPCOMM_SIGNAL_ADD} ? slots_[c.a] + c.b : c.b;
    } else {
      throwError(ErrorCode::kInternal, ctx_.rank, op,
                 fmt::format("rank {} sent a malformed window message (kind {})", source, c.kind));
    }
  }

  // Receives a put's data from source into dst, waiting (with the usual backoff and
  // deadline) while it arrives; on failure the receives are cancelled before the throw.
  void receiveData(int source, char* dst, std::size_t bytes, const char* op) {
    std::vector<MPI_Request> requests(chunks(bytes), MPI_REQUEST_NULL);
    try {
      for (std::size_t i = 0; i < requests.size(); ++i) {
        const std::size_t n = std::min(kChunk, bytes - i * kChunk);
        checkMpi(MPI_Irecv(dst + i * kChunk, static_cast<int>(n), MPI_BYTE, source, kDataTag, comm_,
                           &requests[i]),
                 ctx_.rank, op);
      }
      Poller poller(ctx_, op);
      for (;;) {
        int done = 0;
        checkMpi(MPI_Testall(static_cast<int>(requests.size()), requests.data(), &done,
                             MPI_STATUSES_IGNORE),
                 ctx_.rank, op);
        if (done) return;
        reapSends(false, op);
        poller.pause([&] {
          return fmt::format("receiving the {} bytes of a put from rank {}", bytes, source);
        });
      }
    } catch (...) {
      for (MPI_Request& r : requests) {
        if (r == MPI_REQUEST_NULL) continue;
        MPI_Cancel(&r);
        MPI_Wait(&r, MPI_STATUS_IGNORE);
      }
      throw;
    }
  }

  const WindowContext& ctx_;
  std::size_t bytes_;
  MPI_Comm comm_ = MPI_COMM_NULL;  // dup'd for this window
  char* memory_ = nullptr;         // this rank's window (64-byte aligned)
  std::vector<std::uint64_t> slots_;
  std::vector<std::uint64_t> sent_;      // control messages sent to each peer
  std::vector<std::uint64_t> received_;  // control messages applied from each peer
  std::vector<std::unique_ptr<PendingSend>> pending_;
};

}  // namespace

std::unique_ptr<Window> createMessageWindow(const WindowContext& ctx, std::size_t bytes,
                                            int numSignals) {
  return makeWindow<MessageWindow>(ctx, bytes, numSignals);
}

}  // namespace epcomm::mpi
