// A symmetric window of the ucx backend (contracts in comm/backend.h): this rank's memory,
// registered with UCX (ucp_mem_map), and every peer's remote key. put = RMA put; signal = a
// remote 64-bit atomic issued after a worker fence, so it lands after every earlier put of
// this rank (UCX 1.13's fence orders operations per transport interface: with several RMA
// lanes to one peer, as multi-rail RDMA may use, a per-endpoint flush would be the safe
// order; over TCP there is one lane); waitSignal progresses the worker (which is what lands
// software-emulated RMA over TCP) until the slot reaches the value or the deadline passes.
#pragma once

#include <ucp/api/ucp.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "backends/ucx/worker.h"

namespace epcomm::ucx {

class Window {
 public:
  // Allocates and registers bytes + numSignals slots (zeroed, 64-byte aligned).
  Window(Worker& worker, std::size_t bytes, int numSignals, int rank);
  ~Window();
  Window(const Window&) = delete;
  Window& operator=(const Window&) = delete;

  void* base() const { return base_; }
  // What a peer needs to reach this window: the data and signal addresses and the packed
  // remote key.
  std::vector<unsigned char> packedKey() const;
  // Unpacks every member's key (keys[r] from packedKey() on rank r; world[r] its world rank).
  void connect(const std::vector<std::vector<unsigned char>>& keys, const std::vector<int>& world,
               int rank);

  void put(int peer, std::size_t offset, const void* src, std::size_t bytes,
           const WaitScope& scope);
  void signal(int peer, int slot, std::uint64_t value, int op, const WaitScope& scope);
  void waitSignal(int slot, std::uint64_t value, const WaitScope& scope);
  std::uint64_t readSignal(int slot) const;
  // Completes every operation this rank issued on the worker at their targets.
  void flush(const WaitScope& scope);
  // Keeps the memory registered and allocated past destruction (a window not destroyed
  // collectively: peers may still write it).
  void abandon() { abandoned_ = true; }

 private:
  struct Remote {
    std::uint64_t data = 0;
    std::uint64_t signals = 0;
    ucp_rkey_h rkey = nullptr;
    int world = -1;
  };

  Worker& worker_;
  std::size_t bytes_;
  int numSignals_;
  unsigned char* memory_ = nullptr;
  void* base_ = nullptr;
  std::uint64_t* signals_ = nullptr;
  ucp_mem_h memh_ = nullptr;
  std::vector<Remote> remotes_;
  // A SET signal's swap reply: lives with the window, so a swap that completes after its
  // wait failed still writes owned memory.
  std::uint64_t reply_ = 0;
  bool abandoned_ = false;
};

}  // namespace epcomm::ucx
