#include "topology/topology.h"

#include <hwloc.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <map>
#include <memory>
#include <tuple>

#include "topology/error.h"

namespace epcomm::topology {
namespace {

constexpr const char* kOp = "topology";

std::vector<int> bitmapToList(hwloc_const_bitmap_t set) {
  std::vector<int> out;
  if (set == nullptr) return out;
  unsigned index = 0;
  hwloc_bitmap_foreach_begin(index, set) out.push_back(static_cast<int>(index));
  hwloc_bitmap_foreach_end();
  return out;
}

// The OS index of the single NUMA node whose cpuset contains `cpus`, else -1.
int numaNodeOf(hwloc_topology_t topology, hwloc_const_cpuset_t cpus) {
  if (cpus == nullptr || hwloc_bitmap_iszero(cpus)) return -1;
  int found = -1;
  hwloc_obj_t node = nullptr;
  while ((node = hwloc_get_next_obj_by_type(topology, HWLOC_OBJ_NUMANODE, node)) != nullptr) {
    if (node->cpuset == nullptr || !hwloc_bitmap_isincluded(cpus, node->cpuset)) continue;
    if (found >= 0) return -1;  // nested or duplicate nodes: ambiguous
    found = static_cast<int>(node->os_index);
  }
  return found;
}

std::string cacheKind(const hwloc_obj_t cache) {
  switch (cache->attr->cache.type) {
    case HWLOC_OBJ_CACHE_DATA: return "data";
    case HWLOC_OBJ_CACHE_INSTRUCTION: return "instruction";
    default: return "unified";
  }
}

std::string humanBytes(std::uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  double value = static_cast<double>(bytes);
  while (value >= 1024.0 && unit < 4) {
    value /= 1024.0;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof(text),
                value == static_cast<std::uint64_t>(value) ? "%.0f %s" : "%.1f %s", value,
                units[unit]);
  return text;
}

std::string describe(hwloc_obj_t obj) {
  char type[64] = {};
  hwloc_obj_type_snprintf(type, sizeof(type), obj, 0);
  std::string line = type;
  if (obj->type == HWLOC_OBJ_PU || obj->type == HWLOC_OBJ_NUMANODE) {
    line += " P#" + std::to_string(obj->os_index);
  } else if (obj->type != HWLOC_OBJ_MACHINE) {
    line += " L#" + std::to_string(obj->logical_index);
  }
  if (obj->type == HWLOC_OBJ_NUMANODE) {
    line += " (" + humanBytes(obj->attr->numanode.local_memory) + ")";
  } else if (hwloc_obj_type_is_cache(obj->type)) {
    line += " (" + humanBytes(obj->attr->cache.size) + ")";
  }
  if (obj->cpuset != nullptr && obj->type != HWLOC_OBJ_PU) {
    line += " cpus " + formatIndexList(bitmapToList(obj->cpuset));
  }
  return line;
}

void appendTree(hwloc_obj_t obj, int depth, std::string& out) {
  out.append(static_cast<std::size_t>(depth) * 2, ' ');
  out += describe(obj);
  out += '\n';
  for (hwloc_obj_t m = obj->memory_first_child; m != nullptr; m = m->next_sibling) {
    appendTree(m, depth + 1, out);
  }
  for (hwloc_obj_t c = obj->first_child; c != nullptr; c = c->next_sibling) {
    appendTree(c, depth + 1, out);
  }
}

std::string hostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown-host";
  return buf;
}

}  // namespace

Topology::Topology() {
  if (hwloc_topology_init(&topology_) != 0) {
    topology_ = nullptr;
    fail(ErrorKind::kSystemError, kOp, "hwloc_topology_init failed");
  }
  // I/O devices are hidden unless asked for; "important" keeps PCI devices with an OS
  // device (NICs) and their bridges.
  hwloc_topology_set_io_types_filter(topology_, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  if (hwloc_topology_load(topology_) != 0) {
    hwloc_topology_destroy(topology_);
    topology_ = nullptr;
    fail(ErrorKind::kSystemError, kOp, "hwloc_topology_load failed");
  }
}

Topology::~Topology() {
  if (topology_ != nullptr) hwloc_topology_destroy(topology_);
}

MachineInfo Topology::machine() const {
  MachineInfo info;
  info.hostname = hostName();
  info.packages = hwloc_get_nbobjs_by_type(topology_, HWLOC_OBJ_PACKAGE);
  info.pus = hwloc_get_nbobjs_by_type(topology_, HWLOC_OBJ_PU);
  hwloc_obj_t obj = nullptr;
  while ((obj = hwloc_get_next_obj_by_type(topology_, HWLOC_OBJ_NUMANODE, obj)) != nullptr) {
    info.numaNodes.push_back({static_cast<int>(obj->os_index), obj->attr->numanode.local_memory,
                              bitmapToList(obj->cpuset)});
  }
  std::sort(info.numaNodes.begin(), info.numaNodes.end(),
            [](const auto& a, const auto& b) { return a.osIndex < b.osIndex; });
  // A machine without Core objects (rare): every PU counts as a core.
  const hwloc_obj_type_t coreType =
      hwloc_get_nbobjs_by_type(topology_, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
  obj = nullptr;
  while ((obj = hwloc_get_next_obj_by_type(topology_, coreType, obj)) != nullptr) {
    CoreInfo core;
    core.index = static_cast<int>(obj->logical_index);
    const hwloc_obj_t package = hwloc_get_ancestor_obj_by_type(topology_, HWLOC_OBJ_PACKAGE, obj);
    core.package = package ? static_cast<int>(package->logical_index) : -1;
    core.numaNode = numaNodeOf(topology_, obj->cpuset);
    core.pus = bitmapToList(obj->cpuset);
    if (!core.pus.empty()) info.cores.push_back(std::move(core));
  }
  std::map<std::tuple<int, std::string, std::uint64_t>, int> caches;
  for (int depth = 0; depth < hwloc_topology_get_depth(topology_); ++depth) {
    const hwloc_obj_type_t type = hwloc_get_depth_type(topology_, depth);
    if (!hwloc_obj_type_is_cache(type)) continue;
    obj = nullptr;
    while ((obj = hwloc_get_next_obj_by_depth(topology_, depth, obj)) != nullptr) {
      ++caches[{static_cast<int>(obj->attr->cache.depth), cacheKind(obj), obj->attr->cache.size}];
    }
  }
  for (const auto& [key, count] : caches) {
    info.caches.push_back({std::get<0>(key), std::get<1>(key), std::get<2>(key), count});
  }
  return info;
}

std::string Topology::treeText() const {
  std::string out;
  appendTree(hwloc_get_root_obj(topology_), 0, out);
  return out;
}

std::optional<NicLocality> Topology::nicLocality(std::string_view ifname) const {
  hwloc_obj_t osdev = nullptr;
  while ((osdev = hwloc_get_next_osdev(topology_, osdev)) != nullptr) {
    if (osdev->attr->osdev.type != HWLOC_OBJ_OSDEV_NETWORK &&
        osdev->attr->osdev.type != HWLOC_OBJ_OSDEV_OPENFABRICS) {
      continue;
    }
    if (osdev->name == nullptr || ifname != osdev->name) continue;
    NicLocality locality;
    for (hwloc_obj_t up = osdev->parent; up != nullptr; up = up->parent) {
      if (up->type != HWLOC_OBJ_PCI_DEVICE) continue;
      char busId[32];
      std::snprintf(busId, sizeof(busId), "%04x:%02x:%02x.%01x", up->attr->pcidev.domain,
                    up->attr->pcidev.bus, up->attr->pcidev.dev, up->attr->pcidev.func);
      locality.pciBusId = busId;
      break;
    }
    const hwloc_obj_t near = hwloc_get_non_io_ancestor_obj(topology_, osdev);
    if (near != nullptr && near->cpuset != nullptr) {
      locality.cpus = bitmapToList(near->cpuset);
      locality.numaNode = numaNodeOf(topology_, near->cpuset);
    }
    return locality;
  }
  return std::nullopt;
}

MachineInfo restrictTo(MachineInfo machine, const std::vector<int>& cpus) {
  const auto allowed = [&](int pu) {
    return std::find(cpus.begin(), cpus.end(), pu) != cpus.end();
  };
  const auto keepAllowed = [&](std::vector<int>& pus) {
    pus.erase(std::remove_if(pus.begin(), pus.end(), [&](int pu) { return !allowed(pu); }),
              pus.end());
  };
  for (CoreInfo& core : machine.cores) keepAllowed(core.pus);
  machine.cores.erase(std::remove_if(machine.cores.begin(), machine.cores.end(),
                                     [](const CoreInfo& c) { return c.pus.empty(); }),
                      machine.cores.end());
  for (NumaNodeInfo& node : machine.numaNodes) keepAllowed(node.pus);
  machine.pus = 0;
  for (const CoreInfo& core : machine.cores) machine.pus += static_cast<int>(core.pus.size());
  return machine;
}

std::vector<int> processCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

std::string formatIndexList(std::vector<int> items, std::string_view separator,
                            std::size_t maxChars) {
  std::sort(items.begin(), items.end());
  items.erase(std::unique(items.begin(), items.end()), items.end());
  std::string out;
  for (std::size_t i = 0; i < items.size();) {
    std::size_t j = i;
    while (j + 1 < items.size() && items[j + 1] == items[j] + 1) ++j;
    if (!out.empty()) out += separator;
    if (maxChars > 0 && out.size() > maxChars) {
      out += "...";
      break;
    }
    out += std::to_string(items[i]);
    if (j > i) out += '-' + std::to_string(items[j]);
    i = j + 1;
  }
  return out;
}

std::optional<std::vector<int>> parseCpuList(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  std::vector<int> out;
  constexpr int kMaxCpu = 1 << 20;
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    const std::size_t dash = item.find('-');
    int lo = 0;
    int hi = 0;
    const std::string_view first = item.substr(0, dash);
    auto [p1, e1] = std::from_chars(first.data(), first.data() + first.size(), lo);
    if (first.empty() || e1 != std::errc() || p1 != first.data() + first.size())
      return std::nullopt;
    hi = lo;
    if (dash != std::string_view::npos) {
      const std::string_view second = item.substr(dash + 1);
      auto [p2, e2] = std::from_chars(second.data(), second.data() + second.size(), hi);
      if (second.empty() || e2 != std::errc() || p2 != second.data() + second.size()) {
        return std::nullopt;
      }
    }
    if (lo < 0 || hi < lo || hi >= kMaxCpu) return std::nullopt;
    for (int c = lo; c <= hi; ++c) out.push_back(c);
  }
  return out;
}

}  // namespace epcomm::topology
