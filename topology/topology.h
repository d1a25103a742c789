// The machine as hwloc sees it. Topology owns one loaded hwloc topology (RAII: destroyed
// with the object), loaded with I/O devices kept so that network interfaces have their PCI
// locality, and restricted to the PUs and NUMA nodes this process is allowed to use (cgroup
// cpusets), not to its current binding. MachineInfo is a plain summary for planning and
// reports; tests build it by hand.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct hwloc_topology;  // hwloc.h stays out of this header

namespace epcomm::topology {

struct CoreInfo {
  int index = 0;         // hwloc logical index
  int package = -1;      // logical index of its package, -1: none
  int numaNode = -1;     // OS index of its NUMA node, -1: none
  std::vector<int> pus;  // OS indices (the CPU numbers of sched_setaffinity)
};

struct NumaNodeInfo {
  int osIndex = 0;
  std::uint64_t memoryBytes = 0;
  std::vector<int> pus;  // OS indices of the PUs local to this node
};

// One cache level and kind, with how many instances the machine has.
struct CacheInfo {
  int level = 0;
  std::string kind;  // "unified", "data" or "instruction"
  std::uint64_t bytes = 0;
  int count = 0;
};

struct MachineInfo {
  std::string hostname;
  int packages = 0;
  int pus = 0;
  std::vector<NumaNodeInfo> numaNodes;  // by OS index
  std::vector<CoreInfo> cores;          // by logical index
  std::vector<CacheInfo> caches;        // by level, then kind
};

// Where hwloc places a network interface.
struct NicLocality {
  std::string pciBusId;   // "0000:3b:00.0", empty when not on a PCI device
  std::vector<int> cpus;  // OS PU indices of its first non-I/O ancestor
  int numaNode = -1;      // OS index of the NUMA node of those cpus, -1: several or none
};

class Topology {
 public:
  // Discovers the machine. Throws epcomm::Error (kSystemError) naming the hwloc call that
  // failed.
  Topology();
  ~Topology();
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;

  hwloc_topology* handle() const noexcept { return topology_; }

  MachineInfo machine() const;
  // An indented tree: Machine, Package, NUMA node, caches, Core, PU (I/O devices left out).
  std::string treeText() const;
  // What hwloc knows about the interface named `ifname`; nullopt when it does not list it
  // (virtual interfaces, or I/O discovery unavailable).
  std::optional<NicLocality> nicLocality(std::string_view ifname) const;

 private:
  hwloc_topology* topology_ = nullptr;
};

// The machine as seen by a process confined to `cpus` (OS PU indices): other PUs, the cores
// left without PUs and the NUMA nodes' PUs outside `cpus` are dropped.
MachineInfo restrictTo(MachineInfo machine, const std::vector<int>& cpus);

// The cpus (OS PU indices) this process may run on now (sched_getaffinity); empty when the
// kernel does not say.
std::vector<int> processCpus();

// "0-3,8,10-11" from indices (any order, duplicates allowed; CPU lists, rank lists); ""
// for none. `maxChars` > 0 ends a longer list with "...".
std::string formatIndexList(std::vector<int> items, std::string_view separator = ",",
                            std::size_t maxChars = 0);
// The inverse, for the kernel's cpulist files; nullopt when malformed.
std::optional<std::vector<int>> parseCpuList(std::string_view text);

}  // namespace epcomm::topology
