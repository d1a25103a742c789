// Creating a communicator's backend: which one EPCOMM_BACKEND picks for the ranks (auto:
// decided alike on every rank over the bootstrap), a plugin created by name over a
// bootstrap, and the two-level composition (comm/two_level) when the ranks span hosts.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "comm/config.h"
#include "comm/src/backend_handle.h"
#include "comm/src/bootstrap.h"

namespace epcomm {

// Bootstrap through a running backend's all-gather (under mpirun: the mpi backend).
class BackendBootstrap final : public Bootstrap {
 public:
  explicit BackendBootstrap(BackendHandle& backend) : backend_(backend) {}
  void allGather(const void* send, void* recv, std::size_t bytes) override;

 private:
  BackendHandle& backend_;
};

// What EPCOMM_BACKEND picks. One level: `network` is empty and `local` is the backend. Two
// levels ("shm+ucx", auto across hosts): `local` among the ranks of each host, `network`
// among hosts.
struct BackendChoice {
  std::string local;
  std::string network;
  std::vector<int> hostOfRank;  // each rank's host (numberHosts); filled for two levels
  bool twoLevel() const { return !network.empty(); }
  std::string name() const { return twoLevel() ? local + "+" + network : local; }
};

// Collective over `bootstrap` when EPCOMM_BACKEND is auto or names two levels (the ranks
// exchange their host identities); throws kInvalidUsage when auto finds no backend that
// reaches every rank.
BackendChoice chooseBackend(const Config& config, Bootstrap& bootstrap, int rank, int size);

// The plugin `name`, created over `bootstrap` (nullptr: the plugin bootstraps itself, as mpi
// under mpirun). Throws with the plugin's message.
std::unique_ptr<BackendHandle> createBackend(const std::string& name, Bootstrap* bootstrap,
                                             int rank, int size, const Config& config);

// The backend of `choice`, collective over `bootstrap`. `network`, when given, is the
// network level already running over every rank (the mpi backend under mpirun).
std::unique_ptr<BackendHandle> createChosenBackend(const BackendChoice& choice,
                                                   Bootstrap& bootstrap, int rank, int size,
                                                   const Config& config,
                                                   std::unique_ptr<BackendHandle> network = {});

}  // namespace epcomm
