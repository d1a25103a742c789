// EPCOMM_CPU_AFFINITY: binds this process to its line of the host's binding plan. Called once
// per process by communicator init (comm/communicator.cpp), with the rank's place on its host.
#pragma once

#include "comm/config.h"
#include "topology/binding_plan.h"
#include "topology/interface_selection.h"
#include "topology/net_interface.h"
#include "topology/topology.h"

namespace epcomm::topology {

// The plan's view of an interface's locality.
NicHint nicHintOf(const NetInterface& nic);

// Binds every thread of this process to binding.cpus, and the memory of the calling thread
// (and of the threads it starts later) to binding.numaNodes. Throws epcomm::Error
// (kSystemError) when the cpu binding fails; a memory binding the OS refuses is a warning.
void applyBinding(const Topology& topology, const RankBinding& binding, int rank);

// The ranks of one host that were given the same cpus (by the launcher, taskset, the engine,
// or nobody: the whole machine), and this rank's place among them.
struct BindingGroup {
  std::vector<int> cpus;  // OS PU indices the group shares; empty: the whole machine
  int index = 0;          // this rank's place in the group
  int size = 1;           // ranks in the group
};

// The whole step for one rank: discovers the machine, selects the interface as `config`
// says (an explicit EPCOMM_SOCKET_IFNAME / EPCOMM_IF_IP that matches nothing is an error),
// plans the group's ranks on the group's cpus only (a rank is never moved out of the cpus it
// was given), applies line `group.index` and logs "rank R bound to cpus ..." at info level.
// Returns the binding applied.
RankBinding bindLocalRank(const Config& config, int rank, const BindingGroup& group);

}  // namespace epcomm::topology
