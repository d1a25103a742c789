// How the local ranks of one host share its cores (EPCOMM_CPU_AFFINITY). A pure function of
// the machine summary, so every local rank computes the same plan and takes its own line.
//
// The plan: cores are grouped by NUMA node, the node nearest the selected NIC first (when
// its locality is known), then by OS index. With at most as many ranks as nodes, each rank
// gets whole nodes. Otherwise each node gets a share of the ranks proportional to its cores
// (largest remainder), and splits its cores evenly among them in contiguous runs, so no rank
// straddles two nodes. Ranks are disjoint as long as there are enough cores; with more ranks
// than cores the unit becomes the PU (hyperthread), and with more ranks than PUs the ranks
// share PUs round-robin (`shared` is set).
#pragma once

#include <string>
#include <vector>

#include "topology/topology.h"

namespace epcomm::topology {

struct RankBinding {
  int localRank = 0;
  std::vector<int> cores;      // logical indices
  std::vector<int> cpus;       // OS PU indices (the sched_setaffinity set)
  std::vector<int> numaNodes;  // OS indices the rank's memory is bound to; empty: none known
  bool shared = false;         // another rank has some of these cpus
};

struct BindingPlan {
  std::string unit;      // "core", "pu" or "pu (shared)"
  int nicNumaNode = -1;  // the node put first, -1: NIC locality unknown
  std::vector<RankBinding> ranks;
};

// The NIC's locality as the plan uses it: its NUMA node, or else the PUs near it.
struct NicHint {
  int numaNode = -1;
  std::vector<int> cpus;
};

// Plans `localSize` ranks (>= 1) on `machine`. A machine with no cores yields ranks with
// empty sets.
BindingPlan planBinding(const MachineInfo& machine, int localSize, const NicHint& nic = {});

// "rank 1: cpus 2-3 (cores 1), memory on NUMA node 0" for logs and reports.
std::string describeBinding(const RankBinding& binding);

}  // namespace epcomm::topology
