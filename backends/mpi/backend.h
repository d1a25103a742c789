// The mpi backend: every collective maps to Open MPI's own. Carries the library across
// nodes (mpirun -H a,b ...). bf16/f16 reductions are carried in f32 (converted on the way
// in and out) so they accumulate in f32 as on every backend; avg is sum / size.
//
// Contracts beyond comm/backend.h: every rank must have been launched by one mpirun (a
// singleton MPI process can only form a one-rank communicator); blocking MPI calls cannot
// be interrupted, so abort() fails later calls, not one in progress, and a call that
// passes EPCOMM_TIMEOUT_MS is reported and aborts the MPI job (watchdog.h); counts above
// INT_MAX elements per call are refused (maxCountPerCall). Windows (window.h) wait by
// polling under their own deadline, so a window wait past EPCOMM_TIMEOUT_MS fails with
// kTimeout instead of ending the job; only their create / destroy collectives are watched.
#pragma once

#include <mpi.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "backends/mpi/call_check.h"
#include "backends/mpi/watchdog.h"
#include "backends/mpi/window.h"
#include "comm/backend_plugin.h"

namespace epcomm::mpi {

class Backend final : public epcomm::Backend {
 public:
  explicit Backend(const epcommBackendCreateArgs& args);
  ~Backend() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void abort() override;
  // Settled by the next collective (call_check.h); all-reduces within
  // EPCOMM_MPI_CHECK_FOLD_BYTES carry their data in the same MPI call.
  void setCallCheck(const epcommCallCheck* check) override;
  // All-reduce: "check-folded" (the data travelled in the call check's message) or
  // "MPI_Allreduce".
  const char* lastAlgorithm() const override { return lastAlgorithm_; }
  bool waitState(int* peer, double* seconds, char* op, std::size_t opLen) const override {
    return clock_->waitState(peer, seconds, op, opLen);
  }
  std::unique_ptr<epcomm::Backend> split(int color, int key) override;

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

  // Symmetric windows (window.h): shared memory on one node, messages otherwise.
  void* windowCreate(size_t bytes, int numSignals, void** localBase) override;
  void windowDestroy(void* window) override;
  void windowPut(void* window, int peer, size_t offset, const void* src, size_t bytes) override;
  void windowSignal(void* window, int peer, int slot, std::uint64_t value, int op) override;
  void windowWaitSignal(void* window, int slot, std::uint64_t value) override;
  std::uint64_t windowReadSignal(void* window, int slot) override;
  void* windowPeerBase(void* window, int peer) override;

 private:
  Backend(MPI_Comm comm, int rank, int size, std::int64_t timeoutMs, std::int64_t reportMs,
          void (*log)(int, const char*), std::string windowKnob, std::size_t foldBytes);
  // Throws epcomm::Error naming op when rc is not MPI_SUCCESS.
  void check(int rc, const char* op) const;
  void checkLive(const char* op) const;
  Window& window(void* handle, const char* op);
  int toInt(size_t n, const char* op) const;
  std::vector<int> toInts(const size_t* values, const char* op) const;
  float* scratch(size_t count);

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::atomic<bool> aborted_{false};
  std::int64_t timeoutMs_ = 0;
  std::int64_t reportMs_ = 0;  // EPCOMM_WAIT_REPORT_S in ms (0: no report)
  void (*log_)(int, const char*) = nullptr;
  std::string windowKnob_ = "auto";  // EPCOMM_MPI_WINDOW, through the ABI at create
  std::size_t foldBytes_ = 64;       // EPCOMM_MPI_CHECK_FOLD_BYTES, agreed at init
  const char* lastAlgorithm_ = "";
  std::unique_ptr<CallClock> clock_;
  std::unique_ptr<CallCheck> callCheck_;  // uses comm_
  std::unique_ptr<float[]> scratch_;
  size_t scratchCount_ = 0;
  // Windows: the context they borrow, the transport (chosen by the first windowCreate),
  // and the live windows by handle. Declared last: windows go before the communicator.
  WindowContext windowContext_;
  std::optional<WindowTransport> windowTransport_;
  std::unordered_map<void*, std::unique_ptr<Window>> windows_;
};

}  // namespace epcomm::mpi
