// EPCOMM_CPU_AFFINITY: binds this process to its line of the host's binding plan. Called once
// per process by communicator init (comm/communicator.cpp), with the rank's place on its host.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "topology/binding_plan.h"
#include "topology/interface_selection.h"
#include "topology/net_interface.h"
#include "topology/topology.h"

namespace epcomm::topology {

// The plan's view of an interface's locality.
NicHint nicHintOf(const NetInterface& nic);

// Binds every thread of this process to binding.cpus, and the memory of the calling thread
// (and of the threads it starts later) to binding.numaNodes. Throws topology::Error
// (kSystemError) when the cpu binding fails; returns a warning when the OS refuses the
// memory binding (memory then stays unbound).
std::optional<std::string> applyBinding(const Topology& topology, const RankBinding& binding);

// The ranks of one host that were given the same cpus (by the launcher, taskset, the engine,
// or nobody: the whole machine), and this rank's place among them.
struct BindingGroup {
  std::vector<int> cpus;  // OS PU indices the group shares; empty: the whole machine
  int index = 0;          // this rank's place in the group
  int size = 1;           // ranks in the group
};

// What bindLocalRank did, for the caller to log.
struct BindReport {
  RankBinding binding;                // applied
  std::string selection;              // "interface X (addr) selected: reason", or ""
  std::string description;            // "cpus 2-3 (cores 1), memory on ... (0 of 2 ranks ...)"
  std::vector<std::string> warnings;  // no interface to plan by, memory left unbound
};

// The whole step for one rank: discovers the machine, selects the interface as `request`
// says (an explicit filter or address that matches nothing is an error), plans the group's
// ranks on the group's cpus only (a rank is never moved out of the cpus it was given) and
// applies line `group.index`.
BindReport bindLocalRank(const SelectionRequest& request, const BindingGroup& group);

}  // namespace epcomm::topology
