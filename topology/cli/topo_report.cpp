#include "topology/cli/topo_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <iterator>

#include "comm/src/topology_bridge.h"

namespace epcomm::topology {
namespace {

using json = nlohmann::ordered_json;

json nullableInt(int value) {
  return value < 0 ? json(nullptr) : json(value);
}

json nullableText(const std::string& value) {
  return value.empty() ? json(nullptr) : json(value);
}

std::string plural(std::size_t n, const char* word) {
  return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}

std::string sizeText(std::uint64_t bytes) {
  if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) return fmt::format("{} MiB", bytes >> 20);
  if (bytes >= 1024 && bytes % 1024 == 0) return fmt::format("{} KiB", bytes >> 10);
  return fmt::format("{} B", bytes);
}

// An index, or "-" where none is known (negative).
std::string indexOrDash(int index) {
  return index < 0 ? std::string("-") : fmt::format("{}", index);
}

std::string padded(const std::string& text, std::size_t width) {
  return text.size() >= width ? text + " " : text + std::string(width - text.size(), ' ');
}

}  // namespace

TopoReport gatherReport(const Config& config, int localRanks) {
  TopoReport report;
  const Topology topology;
  report.machine = topology.machine();
  report.tree = topology.treeText();
  report.interfaces = listInterfaces();
  addLocality(report.interfaces, &topology);
  report.selection = selectInterface(report.interfaces, selectionRequest(config));
  report.localRanks = localRanks;
  report.plan = planBinding(report.machine, localRanks,
                            {report.interfaces[report.selection.index].numaNode,
                             report.interfaces[report.selection.index].localCpus});
  report.config = config;
  return report;
}

namespace {

std::string layerOf(const std::vector<KnobInfo>& rows, const std::string& name) {
  for (const KnobInfo& k : rows) {
    if (k.name == name) return std::string(k.layer);
  }
  return "";
}

}  // namespace

json envJson(const Config& config) {
  const std::vector<KnobInfo> rows = knobRegistry();
  json env = json::array();
  for (const KnobValue& v : config.values) {
    env.push_back({{"name", v.name},
                   {"layer", layerOf(rows, v.name)},
                   {"value", v.value},
                   {"source", v.source}});
  }
  return env;
}

std::string envText(const Config& config) {
  const std::vector<KnobInfo> rows = knobRegistry();
  std::size_t width = 0;
  for (const KnobValue& v : config.values) width = std::max(width, v.name.size());
  std::string out =
      "Configuration (layer, value, source: default, own name, or the alias that set it):\n";
  for (const KnobValue& v : config.values) {
    fmt::format_to(std::back_inserter(out), "  {}{}= {} [{}]\n", padded(v.name, width + 1),
                   padded(fmt::format("[{}]", layerOf(rows, v.name)), 11),
                   padded(v.value.empty() ? "(unset)" : v.value, 12), v.source);
  }
  return out;
}

json reportJson(const TopoReport& r) {
  json machine = {{"hostname", r.machine.hostname}, {"packages", r.machine.packages},
                  {"pus", r.machine.pus},           {"numa_nodes", json::array()},
                  {"cores", json::array()},         {"caches", json::array()}};
  for (const NumaNodeInfo& n : r.machine.numaNodes) {
    machine["numa_nodes"].push_back(
        {{"os_index", n.osIndex}, {"memory_bytes", n.memoryBytes}, {"cpus", n.pus}});
  }
  for (const CoreInfo& c : r.machine.cores) {
    machine["cores"].push_back({{"index", c.index},
                                {"package", nullableInt(c.package)},
                                {"numa", nullableInt(c.numaNode)},
                                {"cpus", c.pus}});
  }
  for (const CacheInfo& c : r.machine.caches) {
    machine["caches"].push_back(
        {{"level", c.level}, {"kind", c.kind}, {"bytes", c.bytes}, {"count", c.count}});
  }
  json interfaces = json::array();
  for (std::size_t i = 0; i < r.interfaces.size(); ++i) {
    const NetInterface& n = r.interfaces[i];
    interfaces.push_back({{"name", n.name},
                          {"addresses", n.addresses},
                          {"up", n.up},
                          {"loopback", n.loopback},
                          {"numa", nullableInt(n.numaNode)},
                          {"pci", nullableText(n.pciBusId)},
                          {"local_cpus", n.localCpus},
                          {"locality_source", nullableText(n.localitySource)},
                          {"selected", i == r.selection.index}});
  }
  json ranks = json::array();
  for (const RankBinding& b : r.plan.ranks) {
    ranks.push_back({{"local_rank", b.localRank},
                     {"cpus", b.cpus},
                     {"cores", b.cores},
                     {"numa_nodes", b.numaNodes},
                     {"shared", b.shared}});
  }
  return {{"machine", machine},
          {"interfaces", interfaces},
          {"selection",
           {{"interface", r.selection.name},
            {"address", r.selection.address},
            {"reason", r.selection.reason}}},
          {"plan",
           {{"local_ranks", r.localRanks},
            {"unit", r.plan.unit},
            {"nic_numa", nullableInt(r.plan.nicNumaNode)},
            {"applied_at_init", r.config.cpuAffinity},
            {"ranks", ranks}}},
          {"env", envJson(r.config)}};
}

std::string reportText(const TopoReport& r) {
  const MachineInfo& m = r.machine;
  std::string out;
  const auto put = std::back_inserter(out);
  fmt::format_to(put, "Machine {}: {}, {}, {}, {}\n", m.hostname,
                 plural(static_cast<std::size_t>(m.packages), "package"),
                 plural(m.numaNodes.size(), "NUMA node"), plural(m.cores.size(), "core"),
                 plural(static_cast<std::size_t>(m.pus), "PU"));
  std::vector<std::string> caches;
  for (const CacheInfo& c : m.caches) {
    caches.push_back(fmt::format("L{}{} {} x{}", c.level,
                                 c.kind == "unified" ? std::string() : " " + c.kind,
                                 sizeText(c.bytes), c.count));
  }
  if (!caches.empty()) fmt::format_to(put, "Caches: {}\n", fmt::join(caches, ", "));
  out += r.tree;

  out += "\nInterfaces (* selected):\n";
  std::size_t width = 0;
  for (const NetInterface& n : r.interfaces) width = std::max(width, n.name.size());
  for (std::size_t i = 0; i < r.interfaces.size(); ++i) {
    const NetInterface& n = r.interfaces[i];
    const std::string addresses = fmt::format("{}", fmt::join(n.addresses, " "));
    fmt::format_to(put, "{}{}{}{}  {}", i == r.selection.index ? "  * " : "    ",
                   padded(n.name, width + 1), n.up ? "up  " : "down", n.loopback ? " loopback" : "",
                   addresses.empty() ? "(no address)" : addresses);
    if (!n.localitySource.empty()) {
      fmt::format_to(put, "  [pci {}, numa {}, cpus {}, from {}]",
                     n.pciBusId.empty() ? "-" : n.pciBusId, indexOrDash(n.numaNode),
                     n.localCpus.empty() ? "-" : formatIndexList(n.localCpus), n.localitySource);
    }
    out += "\n";
  }
  fmt::format_to(put, "Selected: {} ({}): {}\n", r.selection.name, r.selection.address,
                 r.selection.reason);

  fmt::format_to(put, "\nBinding plan for {} (unit {}{}; {}):\n",
                 plural(static_cast<std::size_t>(r.localRanks), "local rank"), r.plan.unit,
                 r.plan.nicNumaNode >= 0
                     ? fmt::format(", NIC's NUMA node {} first", r.plan.nicNumaNode)
                     : std::string(),
                 r.config.cpuAffinity ? "applied at init: EPCOMM_CPU_AFFINITY=1"
                                      : "not applied: EPCOMM_CPU_AFFINITY=0");
  for (const RankBinding& b : r.plan.ranks) {
    fmt::format_to(put, "  local rank {}: {}\n", b.localRank, describeBinding(b));
  }
  out += '\n';
  out += envText(r.config);
  return out;
}

}  // namespace epcomm::topology
