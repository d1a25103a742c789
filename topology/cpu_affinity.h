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

// The whole step for one rank: discovers the machine, selects the interface as `config`
// says (an explicit EPCOMM_SOCKET_IFNAME / EPCOMM_IF_IP that matches nothing is an error),
// plans `localSize` ranks, applies line `localRank` and logs "rank R bound to cpus ..." at
// info level. Returns the binding applied.
RankBinding bindLocalRank(const Config& config, int rank, int localRank, int localSize);

}  // namespace epcomm::topology
