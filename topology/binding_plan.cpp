#include "topology/binding_plan.h"

#include <algorithm>
#include <map>
#include <set>

namespace epcomm::topology {
namespace {

// One unit of binding: a core, or a PU when cores run short.
struct Unit {
  int core = 0;
  std::vector<int> cpus;
  int numaNode = -1;
};

struct Group {
  int numaNode = -1;
  std::vector<Unit> units;
};

std::vector<Unit> unitsOf(const MachineInfo& machine, bool byPu) {
  std::vector<Unit> units;
  for (const CoreInfo& core : machine.cores) {
    if (!byPu) {
      units.push_back({core.index, core.pus, core.numaNode});
      continue;
    }
    for (int pu : core.pus) units.push_back({core.index, {pu}, core.numaNode});
  }
  return units;
}

// Units grouped by NUMA node: the NIC's node first, then by OS index (-1, unknown, last).
std::vector<Group> groupsOf(const std::vector<Unit>& units, const NicHint& nic, int& nicNode) {
  std::map<int, Group> byNode;
  for (const Unit& u : units) {
    Group& g = byNode[u.numaNode];
    g.numaNode = u.numaNode;
    g.units.push_back(u);
  }
  nicNode = nic.numaNode;
  if (nicNode < 0 && !nic.cpus.empty()) {
    // The node with the most PUs near the NIC (none when the NIC is near all of them).
    const std::set<int> near(nic.cpus.begin(), nic.cpus.end());
    std::size_t best = 0;
    bool tie = false;
    for (const auto& [node, g] : byNode) {
      std::size_t n = 0;
      for (const Unit& u : g.units) {
        for (int c : u.cpus) n += near.count(c);
      }
      if (n > best) {
        best = n;
        nicNode = node;
        tie = false;
      } else if (n == best && n > 0) {
        tie = true;
      }
    }
    if (tie) nicNode = -1;
  }
  std::vector<Group> groups;
  if (auto it = byNode.find(nicNode); nicNode >= 0 && it != byNode.end()) {
    groups.push_back(std::move(it->second));
    byNode.erase(it);
  } else {
    nicNode = -1;
  }
  for (auto& [node, g] : byNode) {
    if (node >= 0) groups.push_back(std::move(g));
  }
  if (auto it = byNode.find(-1); it != byNode.end()) groups.push_back(std::move(it->second));
  return groups;
}

void addUnit(RankBinding& r, const Unit& u) {
  if (r.cores.empty() || r.cores.back() != u.core) r.cores.push_back(u.core);
  r.cpus.insert(r.cpus.end(), u.cpus.begin(), u.cpus.end());
  if (u.numaNode >= 0 &&
      std::find(r.numaNodes.begin(), r.numaNodes.end(), u.numaNode) == r.numaNodes.end()) {
    r.numaNodes.push_back(u.numaNode);
  }
}

// How many ranks each group gets: proportional to its units, largest remainder first.
std::vector<int> shares(const std::vector<Group>& groups, int ranks) {
  std::size_t total = 0;
  for (const Group& g : groups) total += g.units.size();
  std::vector<int> out(groups.size(), 0);
  std::vector<std::pair<double, std::size_t>> remainders;
  int given = 0;
  for (std::size_t i = 0; i < groups.size(); ++i) {
    const double exact = static_cast<double>(ranks) * static_cast<double>(groups[i].units.size()) /
                         static_cast<double>(total);
    out[i] = static_cast<int>(exact);
    given += out[i];
    remainders.emplace_back(-(exact - out[i]), i);  // larger remainder first, then group order
  }
  std::sort(remainders.begin(), remainders.end());
  for (std::size_t k = 0; given < ranks; k = (k + 1) % remainders.size()) {
    ++out[remainders[k].second];
    ++given;
  }
  return out;
}

}  // namespace

BindingPlan planBinding(const MachineInfo& machine, int localSize, const NicHint& nic) {
  BindingPlan plan;
  const int ranks = std::max(localSize, 1);
  std::size_t pus = 0;
  for (const CoreInfo& c : machine.cores) pus += c.pus.size();
  const bool byPu = static_cast<std::size_t>(ranks) > machine.cores.size();
  const bool shared = static_cast<std::size_t>(ranks) > pus;
  plan.unit = !byPu ? "core" : (shared ? "pu (shared)" : "pu");
  plan.ranks.resize(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) plan.ranks[static_cast<std::size_t>(r)].localRank = r;
  const std::vector<Unit> units = unitsOf(machine, byPu);
  if (units.empty()) return plan;
  std::vector<Group> groups = groupsOf(units, nic, plan.nicNumaNode);

  if (shared) {
    // Round-robin over the PUs in group order.
    std::vector<Unit> ordered;
    for (const Group& g : groups) ordered.insert(ordered.end(), g.units.begin(), g.units.end());
    for (int r = 0; r < ranks; ++r) {
      RankBinding& b = plan.ranks[static_cast<std::size_t>(r)];
      addUnit(b, ordered[static_cast<std::size_t>(r) % ordered.size()]);
      b.shared = true;
    }
    return plan;
  }
  const int numGroups = static_cast<int>(groups.size());
  if (ranks <= numGroups) {
    // Whole nodes per rank.
    for (int r = 0; r < ranks; ++r) {
      RankBinding& b = plan.ranks[static_cast<std::size_t>(r)];
      for (int g = r * numGroups / ranks; g < (r + 1) * numGroups / ranks; ++g) {
        for (const Unit& u : groups[static_cast<std::size_t>(g)].units) addUnit(b, u);
      }
    }
    return plan;
  }
  const std::vector<int> perGroup = shares(groups, ranks);
  int next = 0;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const int q = perGroup[g];
    if (q == 0) continue;
    const std::vector<Unit>& us = groups[g].units;
    const std::size_t base = us.size() / static_cast<std::size_t>(q);
    const std::size_t extra = us.size() % static_cast<std::size_t>(q);
    std::size_t at = 0;
    for (int k = 0; k < q; ++k, ++next) {
      const std::size_t n = base + (static_cast<std::size_t>(k) < extra ? 1 : 0);
      RankBinding& b = plan.ranks[static_cast<std::size_t>(next)];
      for (std::size_t i = 0; i < n; ++i) addUnit(b, us[at + i]);
      at += n;
    }
  }
  return plan;
}

std::string describeBinding(const RankBinding& binding) {
  std::string out =
      "cpus " + formatIndexList(binding.cpus) + " (cores " + formatIndexList(binding.cores) + ")";
  if (binding.numaNodes.empty()) {
    out += ", memory not bound (NUMA node unknown)";
  } else {
    out += std::string(", memory on NUMA node") + (binding.numaNodes.size() > 1 ? "s " : " ") +
           formatIndexList(binding.numaNodes);
  }
  if (binding.shared) out += ", sharing cpus with other ranks (more ranks than PUs)";
  return out;
}

}  // namespace epcomm::topology
