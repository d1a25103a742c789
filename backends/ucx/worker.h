// One UCX context and worker per process-level communicator (shared by its splits), its
// endpoints to every rank, and the waits: tagged messages with a deadline, yielding when
// idle, failing fast when a peer is lost or the communicator was aborted.
//
// Contracts: worker addresses travel through epcomm's bootstrap at creation (the
// communicator's all-gather); endpoints use UCX's peer error handling, so a peer that dies
// or whose link drops fails every wait on it with kPeerLost naming it; a wait past the
// timeout fails with kTimeout naming the peers it still waited for. A failed wait cancels
// this rank's outstanding receives first, so no message lands in a user buffer after the
// call returned. Thread safety: the worker runs in UCX's multi-thread mode, so communicators
// that share it may be used from different threads.
#pragma once

#include <ucp/api/ucp.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "comm/backend.h"
#include "comm/backend_plugin.h"
#include "comm/error.h"

namespace epcomm::ucx {

// A 64-bit UCX tag: [context 16 | class 2 | source world rank 16 | payload 30].
enum class TagClass : std::uint64_t { kCollective = 0, kPointToPoint = 1, kControl = 2 };
constexpr std::uint64_t kTagPayloadBits = 30;
constexpr std::uint64_t kTagPayloadMask = (std::uint64_t{1} << kTagPayloadBits) - 1;
inline std::uint64_t makeTag(std::uint16_t context, TagClass cls, int sourceWorldRank,
                             std::uint64_t payload) {
  return (std::uint64_t{context} << 48) | (static_cast<std::uint64_t>(cls) << 46) |
         (static_cast<std::uint64_t>(sourceWorldRank & 0xffff) << 30) | (payload & kTagPayloadMask);
}

struct WorkerOptions {
  int rank = 0;  // in the world of this worker
  int size = 1;
  std::int64_t timeoutMs = 0;  // 0: no deadline
  std::int64_t reportMs = 0;   // EPCOMM_WAIT_REPORT_S in ms; 0: no report
  void (*log)(int level, const char* message) = nullptr;
  // The interface topology/ selected ("" none): UCX's NET_DEVICES, unless empty.
  std::string netDevice;
};

// One message in flight. Owned by the Worker's waits; an Op that was posted must be waited.
struct Op {
  void* request = nullptr;  // UCX request, or nullptr when completed at post
  ucs_status_t status = UCS_OK;
  int peer = -1;  // world rank
  bool receive = false;
  bool done = false;
  std::size_t expectedBytes = 0;
  std::size_t elementSize = 1;  // errors count in elements of this size
  ucp_tag_recv_info_t info{};
};

// Who waits, for errors and the abort flag: this rank in the communicator's numbering, the
// call, the communicator's members (world rank -> its rank, -1 for others; nullptr: the
// world) and the communicator's abort flag (nullptr: none).
struct WaitScope {
  int rank = 0;
  const char* op = "";
  const std::vector<int>* worldToLocal = nullptr;
  const std::atomic<bool>* aborted = nullptr;
  // A message of the wrong length: kInvalidArgument for send/recv (both sides completed);
  // inside a collective (peers may still wait on this rank) an error that aborts it.
  ErrorCode mismatchCode = ErrorCode::kInvalidArgument;
  // The communicator's context id: a member's abort notice (Worker::notifyAbort) under it
  // fails the wait, with the member's reason.
  std::uint16_t context = 0;
  // Where a wait that lasts records itself (Backend::waitState), or null.
  WaitRecord* record = nullptr;
};

class Worker {
 public:
  // Collective over `bootstrap` (every rank of the world): creates the context and worker,
  // exchanges addresses and connects to every peer.
  Worker(const WorkerOptions& options, const epcommBackendBootstrap& bootstrap);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  std::int64_t timeoutMs() const { return timeoutMs_; }
  ucp_context_h context() const { return context_; }
  ucp_worker_h handle() const { return worker_; }
  ucp_ep_h endpoint(int worldRank) const { return endpoints_[static_cast<std::size_t>(worldRank)]; }

  // Posts a tagged send / receive of exactly `bytes` bytes (a receive of a longer message
  // fails the wait with kInvalidArgument).
  Op send(int worldPeer, std::uint64_t tag, const void* buf, std::size_t bytes);
  Op recv(int worldPeer, std::uint64_t tag, void* buf, std::size_t bytes);

  // Waits for every op (progressing the worker), under the deadline, failing fast when a
  // member was lost or the communicator aborted. On any error the ops still pending are
  // cancelled and released before it throws; a completed op is released either way.
  void waitAll(Op* ops, std::size_t n, const WaitScope& scope) const;
  // Cancels the ops still pending and releases every request (bounded in time).
  void cancel(Op* ops, std::size_t n) const;

  // Waits on one request that is not a tagged message (RMA put, atomic, flush) to `peer`
  // (world rank; -1: no single peer, as a worker flush).
  void waitRequest(void* request, int peer, const WaitScope& scope) const;

  // Progresses until pred() is true or the deadline passes (kTimeout naming `what`).
  template <typename Pred>
  void progressUntil(Pred pred, const WaitScope& scope, const char* what) const {
    Idle idle(*this, scope);
    while (!pred()) {
      idle.step(what);
    }
  }

  // The lowest world rank UCX reported lost among the communicator's members (worldToLocal
  // >= 0; nullptr: every rank), or -1.
  int lostPeer(const std::vector<int>* worldToLocal) const;
  // Whether UCX reported world rank `worldRank` lost.
  bool isLost(int worldRank) const {
    return lost_[static_cast<std::size_t>(worldRank)].load(std::memory_order_acquire) != 0;
  }
  // Throws kPeerLost naming worldPeer (in the communicator's numbering).
  [[noreturn]] void failLost(int worldPeer, ucs_status_t status, const WaitScope& scope) const;

  // Tells every other member (world ranks) of the communicator with `context` that this rank
  // aborted it, and why (a control message each; bounded in time, failures ignored: a lost
  // peer needs no notice).
  void notifyAbort(std::uint16_t context, const std::vector<int>& members, const char* reason);
  // Throws kPeerLost "communicator was aborted by rank R" + EPCOMM_ABORT_REASON_MARK + its
  // reason when a member's abort notice for scope.context has arrived.
  void checkAbortNotice(const WaitScope& scope) const;

  // A fresh context id for a split, agreed by the caller (max over the parent's ranks).
  // Splits of communicators that share processes must not run concurrently (each agrees on
  // the largest next free id of its members).
  std::uint16_t nextContext() const { return nextContext_.load(); }
  void reserveContext(std::uint16_t used) {
    std::uint16_t next = nextContext_.load();
    const auto want = static_cast<std::uint16_t>(used + 1);
    while (next < want && !nextContext_.compare_exchange_weak(next, want)) {
    }
  }

  void log(int level, const std::string& message) const;

 private:
  // Progress with back-off and the deadline / abort / lost-peer checks of every wait.
  class Idle {
   public:
    Idle(const Worker& worker, const WaitScope& scope);
    void step(const char* what);
    // Whether the next step may throw kTimeout (the caller then names what it waits for).
    bool nearDeadline() const { return deadlineNs_ != 0 && (steps_ & 63) == 63; }
    // The next step runs the checks (every 64 steps).
    bool checking() const { return (steps_ & 63) == 63; }

   private:
    const Worker& worker_;
    const WaitScope& scope_;
    std::int64_t startNs_;
    std::int64_t deadlineNs_;
    std::int64_t nextReportNs_;  // 0: no report
    unsigned idle_ = 0;          // steps in a row that progressed nothing (back-off)
    unsigned steps_ = 0;         // steps so far (the checks' cadence)
  };
  friend class Idle;

  struct PeerErrorArg {
    Worker* worker;
    int peer;
  };
  static void onPeerError(void* arg, ucp_ep_h ep, ucs_status_t status);
  void connect(const epcommBackendBootstrap& bootstrap);
  void logTransports();
  // Closes every endpoint (flush mode while nothing went wrong, else force); false when a
  // close did not finish in time (the worker is then left to the process's exit: UCX
  // refuses to destroy a worker with endpoints still closing).
  bool closeEndpoints();

  int rank_;
  int size_;
  std::int64_t timeoutMs_;
  std::int64_t reportMs_;
  void (*log_)(int, const char*);
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  std::vector<ucp_ep_h> endpoints_;
  std::vector<PeerErrorArg> errorArgs_;
  // Per world rank: 0, or the (negative) ucs_status_t UCX's error handler reported.
  std::unique_ptr<std::atomic<int>[]> lost_;
  // A wait failed (timeout, abort, lost peer): peers may be unreachable, so endpoints close
  // by force.
  mutable std::atomic<bool> troubled_{false};
  std::atomic<std::uint16_t> nextContext_{1};  // 0 is the world's
  // Abort reasons sent (notifyAbort) and received (checkAbortNotice): their transfers may
  // complete after the call returned, so the worker keeps them. Any thread may abort.
  mutable std::mutex reasonsMutex_;
  mutable std::vector<std::unique_ptr<std::string>> reasons_;
};

}  // namespace epcomm::ucx
