#include "topology/cpu_affinity.h"

#include <hwloc.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "comm/error.h"
#include "comm/log.h"

namespace epcomm::topology {
namespace {

constexpr const char* kOp = "cpu affinity";

struct BitmapDeleter {
  void operator()(hwloc_bitmap_s* set) const { hwloc_bitmap_free(set); }
};
using Bitmap = std::unique_ptr<hwloc_bitmap_s, BitmapDeleter>;

Bitmap bitmapOf(const std::vector<int>& indices) {
  Bitmap set(hwloc_bitmap_alloc());
  if (!set) throw std::bad_alloc();
  for (int i : indices) hwloc_bitmap_set(set.get(), static_cast<unsigned>(i));
  return set;
}

}  // namespace

NicHint nicHintOf(const NetInterface& nic) {
  return {nic.numaNode, nic.localCpus};
}

void applyBinding(const Topology& topology, const RankBinding& binding, int rank) {
  if (binding.cpus.empty()) {
    throwError(ErrorCode::kSystemError, rank, kOp,
               "EPCOMM_CPU_AFFINITY=1: hwloc found no cores to bind to");
  }
  const Bitmap cpus = bitmapOf(binding.cpus);
  if (hwloc_set_cpubind(topology.handle(), cpus.get(), HWLOC_CPUBIND_PROCESS) != 0) {
    throwError(ErrorCode::kSystemError, rank, kOp,
               "EPCOMM_CPU_AFFINITY=1: binding to cpus " + formatIndexList(binding.cpus) +
                   " failed: " + std::strerror(errno) +
                   " (set EPCOMM_CPU_AFFINITY=0 to keep "
                   "the launcher's binding)");
  }
  if (binding.numaNodes.empty()) return;
  const Bitmap nodes = bitmapOf(binding.numaNodes);
  if (hwloc_set_membind(topology.handle(), nodes.get(), HWLOC_MEMBIND_BIND,
                        HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET) != 0) {
    log().warn(
        "EPCOMM_CPU_AFFINITY=1: binding memory to NUMA node {} failed: {}; memory "
        "stays unbound",
        formatIndexList(binding.numaNodes), std::strerror(errno));
  }
}

RankBinding bindLocalRank(const Config& config, int rank, const BindingGroup& group) {
  const Topology topology;
  NicHint hint;
  std::string nicText = "NIC locality unknown";
  std::vector<NetInterface> interfaces = listInterfaces();
  const SelectionRequest request = SelectionRequest::fromConfig(config, rank);
  try {
    const InterfaceSelection selection = selectInterface(interfaces, request);
    log().info("interface {} ({}) selected: {}", selection.name, selection.address,
               selection.reason);
    addLocality(interfaces, &topology);
    const NetInterface& nic = interfaces[selection.index];
    hint = nicHintOf(nic);
    if (!nic.localitySource.empty()) {
      nicText = "near " + nic.name +
                (nic.numaNode >= 0 ? " (NUMA node " + std::to_string(nic.numaNode) + ")"
                                   : " (cpus " + formatIndexList(nic.localCpus) + ")");
    } else {
      nicText = nic.name + " has no known locality";
    }
  } catch (const Error& e) {
    // An explicit choice that matches nothing is the user's mistake; the default finding
    // no interface (a namespace without one) only loses the NIC preference.
    if (!request.ifname.empty() || !request.ifIp.empty()) throw;
    log().warn(
        "EPCOMM_CPU_AFFINITY=1: no interface selected ({}); planning without NIC "
        "locality",
        e.what());
  }
  const MachineInfo whole = topology.machine();
  const MachineInfo machine = group.cpus.empty() ? whole : restrictTo(whole, group.cpus);
  const BindingPlan plan = planBinding(machine, group.size, hint);
  const RankBinding& mine = plan.ranks.at(static_cast<std::size_t>(group.index));
  std::string within = "the whole machine";
  if (machine.pus < whole.pus) within = "the cpus " + formatIndexList(group.cpus) + " it was given";
  applyBinding(topology, mine, rank);
  log().info("rank {} bound to {} ({} of {} ranks sharing {}, unit {}, {})", rank,
             describeBinding(mine), group.index, group.size, within, plan.unit, nicText);
  return mine;
}

}  // namespace epcomm::topology
