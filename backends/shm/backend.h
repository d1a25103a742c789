// The shm backend: every rank of a communicator on one host maps one POSIX shared-memory
// segment (segment.h) and moves data through it; waits spin, yield, then sleep on a futex
// (wait.h). Algorithms are one per file (algorithms.h), reductions in reduce.h.
//
// Contracts beyond comm/backend.h: every rank runs on this host (and sees the others'
// pids, for liveness); collectives on one communicator are called from one thread at a
// time; send/recv between a pair are matched in order (FIFO per ordered pair), a recv whose
// count or tag differs from the send it meets consumes that message and fails with
// kInvalidArgument. Capabilities: EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY: the call check
// rides on each collective's first step (channel.h), so agreement costs no extra step.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "backends/shm/all_reduce_algorithms.h"
#include "backends/shm/channel.h"
#include "backends/shm/registered_algorithms.h"
#include "backends/shm/registry.h"
#include "backends/shm/segment.h"
#include "backends/shm/wait.h"
#include "comm/backend_plugin.h"

namespace epcomm::shm {

class Backend final : public epcomm::Backend {
 public:
  explicit Backend(const epcommBackendCreateArgs& args);
  ~Backend() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void abort() override;
  void abortWithReason(const char* reason) override;
  std::unique_ptr<epcomm::Backend> split(int color, int key) override;
  // The survivors' communicator (shrink.cpp): the ranks that joined, found through this
  // segment (which every survivor still maps) and the pids of those that did not.
  std::unique_ptr<epcomm::Backend> shrink(int* keptRanks) override;

  void allReduce(const void* send, void* recv, size_t count, int dtype, int op) override;
  void allGather(const void* send, void* recv, size_t sendCount, int dtype) override;
  void allGatherV(const void* send, size_t sendCount, void* recv, const size_t* recvCounts,
                  const size_t* recvDispls, int dtype) override;
  void reduceScatter(const void* send, void* recv, size_t recvCount, int dtype, int op) override;
  void broadcast(const void* send, void* recv, size_t count, int dtype, int root) override;
  void barrier() override;
  void allToAll(const void* send, void* recv, size_t countPerRank, int dtype) override;
  void allToAllV(const void* send, const size_t* sendCounts, const size_t* sendDispls, void* recv,
                 const size_t* recvCounts, const size_t* recvDispls, int dtype) override;
  void send(const void* buf, size_t count, int dtype, int peer, int tag) override;
  void recv(void* buf, size_t count, int dtype, int peer, int tag) override;
  void setCallCheck(const epcommCallCheck* check) override;

  // Symmetric windows (backend_windows.cpp, window.h): one shared-memory file per window,
  // established through this communicator's own all-gather. Destroying the backend with
  // windows alive unmaps them here (their handles dangle; comm/window.h: destroy windows
  // first).
  void* windowCreate(std::size_t bytes, int numSignals, void** localBase) override;
  void windowDestroy(void* window) override;
  void windowPut(void* window, int peer, std::size_t offset, const void* src,
                 std::size_t bytes) override;
  void windowSignal(void* window, int peer, int slot, std::uint64_t value, int op) override;
  void windowWaitSignal(void* window, int slot, std::uint64_t value) override;
  std::uint64_t windowReadSignal(void* window, int slot) override;
  void* windowPeerBase(void* window, int peer) override;
  const char* lastAlgorithm() const override { return lastAlgorithm_; }
  bool waitState(int* peer, double* seconds, char* op, std::size_t opLen) const override {
    return waiter_->waitState(peer, seconds, op, opLen);
  }

 private:
  // Runs one collective of `kind` as algorithm(Step), consuming the armed check: when this
  // rank's record is invalid only the check's step runs (no buffer, count or dtype is
  // touched); an algorithm that took no step (an empty message) gets one for the check.
  template <typename Algorithm>
  void collective(const char* op, int kind, Algorithm&& algorithm);
  void checkStep(int kind, const OpClock& clock);
  Backend(std::unique_ptr<Segment> segment, int rank, int size, std::int64_t timeoutMs,
          std::size_t bufferBytes, bool oversubscribed, const AllReduceTuning& allReduceTuning);
  void setUp();
  // A backend over a new segment of this one's members (split, shrink), with its settings.
  std::unique_ptr<Backend> child(std::unique_ptr<Segment> segment, int rank, int size) const;
  Channel& channel(int kind) { return *channels_[static_cast<std::size_t>(kind)]; }
  // Whether a collective moving `bytes` (as registered_algorithms.h counts them) takes the
  // registration handshake: the same answer on every rank (registry.h).
  bool registeredCandidate(std::size_t bytes) const {
    return size_ > 1 && bytes >= kRegisteredMinBytes && !registry_.empty();
  }
  // Logs (debug) the first use of a zero-copy path or fallback on this communicator, so a
  // user (and the tests) can see which path registered collectives take.
  void notePath(const char* what);
  // The window behind a handle, after checking it is one of this backend's.
  Window& window(void* handle, const char* op) const;

  std::unique_ptr<Segment> segment_;
  int rank_ = 0;
  int size_ = 1;
  std::int64_t timeoutMs_ = 0;
  std::int64_t reportMs_ = 0;  // EPCOMM_WAIT_REPORT_S in ms (0: no report)
  std::size_t bufferBytes_ = 0;
  // More ranks than the cpus their affinity masks hold together (agreed at init, so every
  // rank picks the same algorithms): steps are expensive, algorithms with fewer steps win
  // longer, and waits yield before they sleep (wait.h).
  bool oversubscribed_ = false;
  // How allReduce picks its algorithm (EPCOMM_SHM_ALLREDUCE and thresholds, agreed at init).
  AllReduceTuning allReduceTuning_;
  const char* lastAlgorithm_ = "";
  std::uint64_t shrinkRounds_ = 0;  // shrink calls made on this communicator
  void (*log_)(int level, const char* message) = nullptr;
  std::vector<const char*> notedPaths_;  // notes already logged (string literals)
  std::unique_ptr<Waiter> waiter_;
  Stream stream_;
  std::vector<std::unique_ptr<Channel>> channels_;
  // Chunks this rank posted to / consumed from each peer's mailbox (never reset).
  std::vector<std::uint64_t> sentChunks_;
  std::vector<std::uint64_t> receivedChunks_;
  // Windows (registered buffers among them) and the zero-copy algorithms' scratch.
  Registry registry_;
  RegisteredScratch registered_;
};

}  // namespace epcomm::shm
