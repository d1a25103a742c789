// The ucx backend: ranks on any number of hosts, started any way epcomm supports (no
// mpirun needed). UCX carries the bytes (TCP here; RDMA verbs, RoCE and shared memory on
// real clusters, as UCX chooses); the collectives are epcomm's own algorithms over UCX
// tagged messages (algorithms.h), chosen by size (tuning below); windows are UCX memory
// registrations (window.h).
//
// Contracts beyond comm/backend.h: a communicator and its splits share one UCX worker
// (worker.h); each communicator tags its messages with its own context id, agreed at split.
// A lost peer fails every wait of every communicator it belongs to with kPeerLost naming it
// (UCX's peer error handling), a wait past EPCOMM_TIMEOUT_MS with kTimeout naming the ranks
// it waited for; abort() fails this communicator's pending and later calls.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "backends/ucx/call_check.h"
#include "backends/ucx/transport.h"
#include "backends/ucx/worker.h"
#include "comm/backend_plugin.h"

namespace epcomm::ucx {

class Window;

// The knobs that shape the algorithms (agreed at init: every rank must choose alike).
struct Tuning {
  enum class AllReduce { kAuto, kRecursiveDoubling, kRing };
  AllReduce allReduce = AllReduce::kAuto;
  std::size_t smallBytes = 64 << 10;   // EPCOMM_UCX_SMALL_BYTES: latency algorithms up to here
  std::size_t chunkBytes = 256 << 10;  // EPCOMM_UCX_CHUNK_BYTES: pipeline chunk
  std::size_t foldBytes = 1024;        // EPCOMM_UCX_CHECK_FOLD_BYTES: all-reduce in the check
};

class Backend final : public epcomm::Backend {
 public:
  explicit Backend(const epcommBackendCreateArgs& args);
  ~Backend() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void abort() override { aborted_.store(true, std::memory_order_release); }
  // Also tells every other member why (worker.h: notifyAbort), so their waits fail naming
  // this rank and the reason instead of waiting for it.
  void abortWithReason(const char* reason) override;
  std::unique_ptr<epcomm::Backend> split(int color, int key) override;
  // The survivors' communicator (shrink.cpp): a coordinator, the lowest rank not known lost,
  // collects the survivors over the shared worker and tells them who they are.
  std::unique_ptr<epcomm::Backend> shrink(int* keptRanks) override;
  // Settled by the next collective (call_check.h); all-reduces within
  // EPCOMM_UCX_CHECK_FOLD_BYTES carry their data in the check's own exchange.
  void setCallCheck(const epcommCallCheck* check) override { callCheck_.arm(check); }
  // "check-folded", "recursive_doubling", "ring", "bruck", "binomial", "pairwise",
  // "dissemination".
  const char* lastAlgorithm() const override { return lastAlgorithm_; }
  bool waitState(int* peer, double* seconds, char* op, std::size_t opLen) const override {
    return waitRecord_.read(peer, seconds, op, opLen);
  }

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

  void* windowCreate(size_t bytes, int numSignals, void** localBase) override;
  void windowDestroy(void* window) override;
  void windowPut(void* window, int peer, size_t offset, const void* src, size_t bytes) override;
  void windowSignal(void* window, int peer, int slot, std::uint64_t value, int op) override;
  void windowWaitSignal(void* window, int slot, std::uint64_t value) override;
  std::uint64_t windowReadSignal(void* window, int slot) override;

 private:
  class CallTransport;
  friend class CallTransport;

  Backend(std::shared_ptr<Worker> worker, std::vector<int> members, int rank, std::uint16_t context,
          const Tuning& tuning);
  WaitScope scope(const char* op) const;
  // Settles an armed call check before the collective touches its arguments.
  void settle(const char* op);
  // Fails fast when this communicator was aborted.
  void checkLive(const char* op) const;
  // checkLive, and a send/recv tag within the tag's payload bits.
  void checkPointToPoint(int tag, const char* op) const;
  Window& window(void* handle, const char* op);
  void* scratch(std::size_t bytes, int slot);
  // Per-rank byte layouts for the algorithms: four arrays of size() entries (slots 0-3),
  // kept across calls so a collective allocates nothing for them.
  std::size_t* layout(int slot);
  // sizes[r] = bytes, displs[r] = r * bytes.
  void uniformBlocks(std::size_t bytes, std::size_t* sizes, std::size_t* displs) const;
  // out[r] = counts[r] * elementSize; returns out.
  std::size_t* inBytes(const std::size_t* counts, std::size_t elementSize, std::size_t* out) const;

  std::shared_ptr<Worker> worker_;
  std::vector<int> world_;         // this communicator's rank -> world rank
  std::vector<int> worldToLocal_;  // world rank -> this communicator's rank, or -1
  int rank_ = 0;
  int size_ = 1;
  std::uint16_t context_ = 0;
  std::uint32_t sequence_ = 0;  // collective calls so far (tags)
  Tuning tuning_;
  kernels::Isa isa_;
  CallCheck callCheck_;
  std::atomic<bool> aborted_{false};
  const char* lastAlgorithm_ = "";
  std::uint64_t shrinkRounds_ = 0;  // shrink calls made on this communicator
  mutable WaitRecord waitRecord_;   // the wait in progress (waitState)
  std::vector<unsigned char> scratch_[2];
  std::vector<std::size_t> layout_;
  std::unordered_map<void*, std::unique_ptr<Window>> windows_;
};

}  // namespace epcomm::ucx
