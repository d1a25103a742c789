// Two levels (DESIGN.md): when the ranks span hosts, a backend among the ranks of each host
// (shm) composed with a network backend (ucx; mpi under mpirun) among the hosts, behind the
// same backend interface, so the Communicator's API, errors and agreement are unchanged.
//
// It holds three backends: `inHost` over the ranks of this host (by local index), `rail`
// over the ranks with this rank's local index (one per host, by host), and `world`, the
// network backend over every rank. All-reduce, all-gather, reduce-scatter, broadcast,
// barrier and all-to-all(v) run the two-level algorithms (algorithms.h; all-to-all(v): the
// blocks inside a host through `inHost`, the rest over `world`); all-gather-v (and on uneven
// hosts all-gather and reduce-scatter) run on `world` after the check settled over the
// levels; windows live on `world` (two_level_windows.cpp); point to point between hosts uses
// `world`, inside a host `inHost`. A communicator on one host, or with one rank per host,
// runs everything on the one level that spans it. Errors name the communicator's ranks
// (levels.h: translateRanks) and the level that failed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "comm/backend_plugin.h"
#include "comm/config.h"
#include "comm/src/backend_handle.h"
#include "comm/src/bootstrap.h"
#include "comm/two_level/algorithms.h"
#include "comm/two_level/host_layout.h"
#include "comm/two_level/levels.h"

namespace epcomm::two_level {

// Creates the in-host backend over a bootstrap among the ranks of this host.
using InHostFactory = std::function<std::unique_ptr<BackendHandle>(Bootstrap& hostBootstrap,
                                                                   int localRank, int localSize)>;

// Collective over `world` (the network backend over every rank): splits it by host (to
// bootstrap the in-host backend) and by local index (the rails). hostOfRank: numberHosts.
std::unique_ptr<BackendHandle> createTwoLevelBackend(std::unique_ptr<BackendHandle> world,
                                                     std::vector<int> hostOfRank,
                                                     const InHostFactory& makeInHost,
                                                     const Config& config);

class TwoLevelBackend final : public Backend {
 public:
  // Only createTwoLevelBackend and split build one: this form (the plugin table's) throws.
  explicit TwoLevelBackend(const epcommBackendCreateArgs& args);
  TwoLevelBackend(std::unique_ptr<BackendHandle> world, std::unique_ptr<BackendHandle> inHost,
                  std::unique_ptr<BackendHandle> rail, HostLayout layout, std::size_t smallBytes,
                  int shareRails);

  int rank() const override { return levels_.rank; }
  int size() const override { return levels_.size; }
  void abort() override { abortWithReason(nullptr); }
  // Aborts every level, passing the reason on (comm/backend.h: abortWithReason).
  void abortWithReason(const char* reason) override;
  std::unique_ptr<Backend> split(int color, int key) override;
  // The survivors' two levels: the network level shrinks, then each host's, and the rails
  // are split again from the new network level (as split does).
  std::unique_ptr<Backend> shrink(int* keptRanks) override;

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

  void* windowCreate(std::size_t bytes, int numSignals, void** localBase) override;
  void windowDestroy(void* window) override;
  void windowPut(void* window, int peer, std::size_t offset, const void* src,
                 std::size_t bytes) override;
  void windowSignal(void* window, int peer, int slot, std::uint64_t value, int op) override;
  void windowWaitSignal(void* window, int slot, std::uint64_t value) override;
  std::uint64_t windowReadSignal(void* window, int slot) override;
  void* windowPeerBase(void* window, int peer) override;
  const char* lastAlgorithm() const override;
  // The level that waits, its peer in the communicator's numbering and the level named.
  bool waitState(int* peer, double* seconds, char* op, std::size_t opLen) const override;

  // The plugin-ABI table for these backends (capabilities from the levels').
  static std::unique_ptr<BackendHandle> wrap(std::unique_ptr<TwoLevelBackend> backend,
                                             std::string name);

 private:
  // The one backend that spans the communicator (one host: inHost; one rank per host:
  // world), or nullptr when both levels are needed.
  BackendHandle* oneLevel() const;
  // The backend a flat collective runs on: oneLevel(), else world.
  BackendHandle* activeFlat() const;
  // The backend that holds windows: inHost on one host, else world (two_level_windows.cpp).
  BackendHandle* windowLevel() const;
  // Runs fn on one level with the call's check (if armed) passed on; errors translated.
  template <typename Fn>
  void onLevel(Level level, BackendHandle* backend, Fn&& fn) {
    if (check_) backend->setCallCheck(*check_);
    check_.reset();
    try {
      const LevelLog logAs(levels_, level);
      fn();
    } catch (const Error& e) {
      throw levelError(levels_, level, e);
    }
  }
  Level levelOf(const BackendHandle* backend) const;
  // A two-level backend over a new network level and this host's new in-host level (split,
  // shrink): hosts numbered again and the rails split from `world`. Collective over world.
  std::unique_ptr<TwoLevelBackend> over(std::unique_ptr<BackendHandle> world,
                                        std::unique_ptr<BackendHandle> inHost);
  // A collective the network backend runs over every rank, after the check (when armed)
  // settled over the levels in the shape every armed call has (levels.h).
  template <typename Fn>
  void checkedFlat(const char* op, Fn&& fn) {
    named("flat");
    if (BackendHandle* one = oneLevel()) return onLevel(levelOf(one), one, fn);
    if (const std::optional<epcommCallCheck> check = std::exchange(check_, std::nullopt)) {
      Steps steps(levels_, op, check);
      barrierLevels(levels_, steps);
    }
    onLevel(Level::kWorld, world_.get(), fn);
  }
  // All-to-all(v) across hosts: the blocks inside a host through shared memory
  // (algorithms.h: allToAllVSplit), after the check settled as checkedFlat settles it.
  void splitAllToAll(const char* op, const void* send, const size_t* sendCounts,
                     const size_t* sendDispls, void* recv, const size_t* recvCounts,
                     const size_t* recvDispls, int dtype);
  void named(const char* algorithm);

  std::unique_ptr<BackendHandle> world_;
  std::unique_ptr<BackendHandle> inHost_;
  std::unique_ptr<BackendHandle> rail_;
  Levels levels_;
  Scratch scratch_;
  std::size_t smallBytes_ = 0;
  int shareRailsKnob_ = 0;  // EPCOMM_TWO_LEVEL_RAILS (0: every local rank)
  std::optional<epcommCallCheck> check_;
  const char* algorithm_ = "";
  mutable std::string algorithmText_;
};

}  // namespace epcomm::two_level
