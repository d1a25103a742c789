// One backend instance behind the plugin ABI: owns the plugin's state, turns result codes
// into epcomm::Error. Arguments are passed through unchecked (the Communicator checks them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/backend.h"
#include "comm/error.h"

namespace epcomm {

class BackendHandle {
 public:
  BackendHandle(const epcommBackendV1* table, void* state, std::string name, int rank, int size);
  ~BackendHandle();
  BackendHandle(const BackendHandle&) = delete;
  BackendHandle& operator=(const BackendHandle&) = delete;

  // Creates an instance; throws with the plugin's message on failure.
  static std::unique_ptr<BackendHandle> create(const epcommBackendV1* table,
                                               const epcommBackendCreateArgs& args);

  const std::string& name() const { return name_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  bool hasCapability(std::uint64_t bit) const { return (table_->capabilities & bit) != 0; }
  // The most elements one call may pass; SIZE_MAX when the backend sets no limit.
  std::size_t maxCountPerCall() const {
    return table_->maxCountPerCall ? static_cast<std::size_t>(table_->maxCountPerCall) : SIZE_MAX;
  }

  // Each throws epcomm::Error naming `op` on a non-success result.
  // Aborts; with a reason (this rank's error) where the plugin can tell its peers.
  void abort(const char* reason = nullptr);
  std::unique_ptr<BackendHandle> split(int color, int key);
  // Whether the plugin has EPCOMM_BACKEND_CAP_SHRINK and a table long enough for it.
  bool canShrink() const;
  // The survivors' backend (comm/backend.h: shrink); keptRanks gets each new rank's rank here.
  std::unique_ptr<BackendHandle> shrink(std::vector<int>& keptRanks);
  void allReduce(const void* send, void* recv, std::size_t count, int dtype, int op);
  void allGather(const void* send, void* recv, std::size_t sendCount, int dtype);
  void allGatherV(const void* send, std::size_t sendCount, void* recv, const std::size_t* counts,
                  const std::size_t* displs, int dtype);
  void reduceScatter(const void* send, void* recv, std::size_t recvCount, int dtype, int op);
  void broadcast(const void* send, void* recv, std::size_t count, int dtype, int root);
  void barrier();
  void allToAll(const void* send, void* recv, std::size_t countPerRank, int dtype);
  void allToAllV(const void* send, const std::size_t* sendCounts, const std::size_t* sendDispls,
                 void* recv, const std::size_t* recvCounts, const std::size_t* recvDispls,
                 int dtype);
  void send(const void* buf, std::size_t count, int dtype, int peer, int tag);
  void recv(void* buf, std::size_t count, int dtype, int peer, int tag);
  // Arms the check the next collective carries (EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY).
  void setCallCheck(const epcommCallCheck& check);

  // Symmetric windows (comm/backend.h): present when the plugin has
  // EPCOMM_BACKEND_CAP_WINDOWS and a table long enough to hold them.
  bool hasWindows() const;
  void* windowCreate(std::size_t bytes, int numSignals, void** localBase);
  void windowDestroy(void* window);
  void windowPut(void* window, int peer, std::size_t offset, const void* src, std::size_t bytes);
  void windowSignal(void* window, int peer, int slot, std::uint64_t value, int op);
  void windowWaitSignal(void* window, int slot, std::uint64_t value);
  std::uint64_t windowReadSignal(void* window, int slot);
  // Peer's window data mapped here, or nullptr (also for plugins without the entry).
  void* windowPeerBase(void* window, int peer);
  // What a call waits for now (comm/backend.h: waitState); waiting false when none does or
  // the plugin does not say.
  struct WaitState {
    bool waiting = false;
    int peer = -1;
    double seconds = 0;
    std::string op;
  };
  WaitState waitState() const;
  // The plugin's name for the algorithm its last collective ran; "" when it does not say.
  const char* lastAlgorithm() const;

 private:
  void check(int result, const char* op) const;

  const epcommBackendV1* table_;
  void* state_;
  std::string name_;
  int rank_;
  int size_;
};

}  // namespace epcomm
