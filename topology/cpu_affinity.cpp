#include "topology/cpu_affinity.h"

#include <hwloc.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "topology/error.h"

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

std::optional<std::string> applyBinding(const Topology& topology, const RankBinding& binding) {
  if (binding.cpus.empty()) {
    fail(ErrorKind::kSystemError, kOp, "EPCOMM_CPU_AFFINITY=1: hwloc found no cores to bind to");
  }
  const Bitmap cpus = bitmapOf(binding.cpus);
  if (hwloc_set_cpubind(topology.handle(), cpus.get(), HWLOC_CPUBIND_PROCESS) != 0) {
    fail(ErrorKind::kSystemError, kOp,
         "EPCOMM_CPU_AFFINITY=1: binding to cpus " + formatIndexList(binding.cpus) +
             " failed: " + std::strerror(errno) +
             " (set EPCOMM_CPU_AFFINITY=0 to keep "
             "the launcher's binding)");
  }
  if (binding.numaNodes.empty()) return std::nullopt;
  const Bitmap nodes = bitmapOf(binding.numaNodes);
  if (hwloc_set_membind(topology.handle(), nodes.get(), HWLOC_MEMBIND_BIND,
                        HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET) != 0) {
    return "EPCOMM_CPU_AFFINITY=1: binding memory to NUMA node " +
           formatIndexList(binding.numaNodes) + " failed: " + std::strerror(errno) +
           "; memory stays unbound";
  }
  return std::nullopt;
}

BindReport bindLocalRank(const SelectionRequest& request, const BindingGroup& group) {
  BindReport report;
  const Topology topology;
  NicHint hint;
  std::string nicText = "NIC locality unknown";
  std::vector<NetInterface> interfaces = listInterfaces();
  try {
    const InterfaceSelection selection = selectInterface(interfaces, request);
    report.selection = "interface " + selection.name + " (" + selection.address +
                       ") selected: " + selection.reason;
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
    report.warnings.push_back(std::string("EPCOMM_CPU_AFFINITY=1: no interface selected (") +
                              e.what() + "); planning without NIC locality");
  }
  const MachineInfo whole = topology.machine();
  const MachineInfo machine = group.cpus.empty() ? whole : restrictTo(whole, group.cpus);
  const BindingPlan plan = planBinding(machine, group.size, hint);
  report.binding = plan.ranks.at(static_cast<std::size_t>(group.index));
  std::string within = "the whole machine";
  if (machine.pus < whole.pus) {
    within = "the cpus " + formatIndexList(group.cpus) + " it was given";
  }
  if (auto warning = applyBinding(topology, report.binding)) report.warnings.push_back(*warning);
  report.description = describeBinding(report.binding) + " (" + std::to_string(group.index) +
                       " of " + std::to_string(group.size) + " ranks sharing " + within +
                       ", unit " + plan.unit + ", " + nicText + ")";
  return report;
}

}  // namespace epcomm::topology
