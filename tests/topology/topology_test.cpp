// topology/ without privileges: NCCL-syntax interface specs and the selection rules on
// synthetic interface lists, the knobs and their aliases, binding plans on synthetic
// machines, cpulists, and hwloc discovery of this machine.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "comm/config.h"
#include "comm/error.h"
#include "comm/src/topology_bridge.h"
#include "tests/common/env_guard.h"
#include "topology/binding_plan.h"
#include "topology/interface_selection.h"
#include "topology/net_interface.h"
#include "topology/topology.h"

namespace epcomm::topology {
namespace {

NetInterface nic(std::string name, std::vector<std::string> addresses, bool up = true,
                 bool loopback = false) {
  NetInterface n;
  n.name = std::move(name);
  n.addresses = std::move(addresses);
  n.up = up;
  n.loopback = loopback;
  return n;
}

// As listInterfaces returns them: sorted by name.
std::vector<NetInterface> host() {
  return {nic("docker0", {"172.17.0.1"}),
          nic("dum0", {"198.51.100.1"}),
          nic("dum1", {"198.51.100.17", "fe80::1"}),
          nic("dum2", {"198.51.100.33", "2001:db8::2"}),
          nic("eth9", {"198.51.100.49"}, false),
          nic("ib0", {"203.0.113.1"}),
          nic("lo", {"127.0.0.1", "::1"}, true, true),
          nic("nov4", {"fe80::7", "2001:db8::7"}),
          nic("virbr0", {"192.0.2.1"})};
}

std::string pickName(const std::string& ifname, const std::string& ifIp = "",
                     std::vector<NetInterface> interfaces = host()) {
  SelectionRequest r;
  r.ifname = ifname;
  r.ifnameSource = "EPCOMM_SOCKET_IFNAME";
  r.ifIp = ifIp;
  r.ifIpSource = "EPCOMM_IF_IP";
  return selectInterface(interfaces, r).name;
}

std::string failure(const std::string& ifname, const std::string& ifIp = "") {
  try {
    pickName(ifname, ifIp);
  } catch (const Error& e) {  // topology::Error
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    return e.what();
  }
  ADD_FAILURE() << "\"" << ifname << "\" / \"" << ifIp << "\" selected something";
  return "";
}

TEST(InterfaceSpec, ParsesNcclSyntax) {
  InterfaceSpec s = InterfaceSpec::parse("eth", "K");
  EXPECT_FALSE(s.exclude);
  EXPECT_FALSE(s.exact);
  EXPECT_EQ(s.names, std::vector<std::string>{"eth"});
  EXPECT_TRUE(s.matches("eth0"));
  EXPECT_FALSE(s.matches("et"));
  s = InterfaceSpec::parse("^docker,lo", "K");
  EXPECT_TRUE(s.exclude);
  EXPECT_FALSE(s.matches("docker0"));
  EXPECT_FALSE(s.matches("lo"));
  EXPECT_TRUE(s.matches("eth0"));
  s = InterfaceSpec::parse("=eth0", "K");
  EXPECT_TRUE(s.exact);
  EXPECT_TRUE(s.matches("eth0"));
  EXPECT_FALSE(s.matches("eth01"));
  s = InterfaceSpec::parse("^=eth1", "K");
  EXPECT_TRUE(s.exclude && s.exact);
  EXPECT_FALSE(s.matches("eth1"));
  EXPECT_TRUE(s.matches("eth10"));
  s = InterfaceSpec::parse("a,,b,", "K");
  EXPECT_EQ(s.names, (std::vector<std::string>{"a", "b"}));
  for (const char* bad : {"", "^", "=", "^=", ",", "^=,,"}) {
    try {
      InterfaceSpec::parse(bad, "GLOO_SOCKET_IFNAME");
      ADD_FAILURE() << "\"" << bad << "\" accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("GLOO_SOCKET_IFNAME=\"" + std::string(bad) + "\""),
                std::string::npos)
          << e.what();
    }
  }
}

TEST(InterfaceSelection, EverySyntaxForm) {
  EXPECT_EQ(pickName("=dum1"), "dum1");
  EXPECT_EQ(pickName("ib"), "ib0");
  EXPECT_EQ(pickName("^dum0,dum1,ib0,lo,docker"), "dum2");
  EXPECT_EQ(pickName("dum"), "dum0");        // first match by name
  EXPECT_EQ(pickName("^=dum0"), "docker0");  // exclude exact: everything else, by name
  EXPECT_EQ(pickName("^=docker0,dum0"), "dum1");
  EXPECT_EQ(pickName("xx,dum2"), "dum2");      // comma list of prefixes
  EXPECT_EQ(pickName("=nothere,ib0"), "ib0");  // '=' applies to the whole list
  EXPECT_EQ(pickName("lo"), "lo");
  EXPECT_EQ(pickName("nov"), "nov4");  // IPv6 only, not link-local
}

TEST(InterfaceSelection, AddressPicksAndWinsOverTheNameFilter) {
  EXPECT_EQ(pickName("", "203.0.113.1"), "ib0");
  EXPECT_EQ(pickName("=dum0", "198.51.100.33"), "dum2");
  EXPECT_EQ(pickName("", "2001:db8:0::2"), "dum2");  // compared as addresses, not text
  SelectionRequest r;
  r.ifIp = "2001:db8::2";
  r.ifIpSource = "HCCL_IF_IP";
  const InterfaceSelection s = selectInterface(host(), r);
  EXPECT_EQ(s.address, "2001:db8::2");  // exactly the address asked for
  EXPECT_NE(s.reason.find("HCCL_IF_IP=2001:db8::2"), std::string::npos) << s.reason;
}

TEST(InterfaceSelection, DefaultOrderIsNccls) {
  std::vector<NetInterface> list = host();
  EXPECT_EQ(pickName("", "", list), "dum0");
  // Only docker, virbr and loopback left: docker first, never virbr.
  std::erase_if(list, [](const NetInterface& n) {
    return n.name != "docker0" && n.name != "lo" && n.name != "virbr0";
  });
  EXPECT_EQ(pickName("", "", list), "docker0");
  std::erase_if(list, [](const NetInterface& n) { return n.name == "docker0"; });
  EXPECT_EQ(pickName("", "", list), "lo");
  list.clear();
  EXPECT_THROW(pickName("", "", list), Error);
  // Down or address-less interfaces are skipped.
  list = {nic("a0", {}), nic("b0", {"198.51.100.9"}, false), nic("c0", {"fe80::1"}),
          nic("lo", {"127.0.0.1"}, true, true)};
  EXPECT_EQ(pickName("", "", list), "lo");
}

TEST(InterfaceSelection, ErrorsNameTheSettingAndListInterfaces) {
  std::string what = failure("=nosuch");
  EXPECT_NE(what.find("EPCOMM_SOCKET_IFNAME=\"=nosuch\""), std::string::npos) << what;
  for (const char* listed :
       {"dum0 (up, 198.51.100.1)", "eth9 (down, 198.51.100.49)", "lo (up, loopback, 127.0.0.1"}) {
    EXPECT_NE(what.find(listed), std::string::npos) << listed << " not in: " << what;
  }
  what = failure("eth");  // eth9 matches but is down
  EXPECT_NE(what.find("matches no interface that is up with an address"), std::string::npos);
  what = failure("=dum");  // exact is not a prefix
  EXPECT_NE(what.find("=dum\""), std::string::npos) << what;
  what = failure("", "192.0.2.99");
  EXPECT_NE(what.find("EPCOMM_IF_IP=192.0.2.99 is the address of no interface"), std::string::npos)
      << what;
  what = failure("", "not-an-ip");
  EXPECT_NE(what.find("not a numeric"), std::string::npos) << what;
}

using test::EnvGuard;

std::string sourceOf(const Config& c, const std::string& knob) {
  for (const KnobValue& v : c.values) {
    if (v.name == knob) return v.source;
  }
  return "";
}

TEST(TopologyKnobs, AliasesAndOwnNames) {
  {
    EnvGuard env;
    env.set("GLOO_SOCKET_IFNAME", "=dum0");
    env.set("HCCL_IF_IP", "198.51.100.17");
    env.set("SGLANG_SET_CPU_AFFINITY", "true");
    const Config c = Config::fromEnvironment();
    EXPECT_EQ(c.socketIfname, "=dum0");
    EXPECT_EQ(c.ifIp, "198.51.100.17");
    EXPECT_TRUE(c.cpuAffinity);
    EXPECT_EQ(sourceOf(c, "EPCOMM_SOCKET_IFNAME"), "GLOO_SOCKET_IFNAME");
    EXPECT_EQ(sourceOf(c, "EPCOMM_IF_IP"), "HCCL_IF_IP");
    EXPECT_EQ(sourceOf(c, "EPCOMM_CPU_AFFINITY"), "SGLANG_SET_CPU_AFFINITY");
    const SelectionRequest r = selectionRequest(c);
    EXPECT_EQ(r.ifnameSource, "GLOO_SOCKET_IFNAME");
    EXPECT_EQ(selectInterface(host(), r).name, "dum1");  // the address wins
    env.set("HCCL_SOCKET_IFNAME", "ib");                 // HCCL_ comes before GLOO_
    EXPECT_EQ(Config::fromEnvironment().socketIfname, "ib");
    env.set("EPCOMM_SOCKET_IFNAME", "=dum2");  // own name wins
    env.set("EPCOMM_CPU_AFFINITY", "0");
    const Config own = Config::fromEnvironment();
    EXPECT_EQ(own.socketIfname, "=dum2");
    EXPECT_FALSE(own.cpuAffinity);
  }
  const Config d = Config::fromEnvironment();
  EXPECT_TRUE(d.socketIfname.empty());
  EXPECT_TRUE(d.ifIp.empty());
  EXPECT_FALSE(d.cpuAffinity);
}

// A machine of `nodes` NUMA nodes x `coresPerNode` cores x `pusPerCore` PUs, numbered
// consecutively.
MachineInfo machine(int nodes, int coresPerNode, int pusPerCore = 1) {
  MachineInfo m;
  m.packages = 1;
  int pu = 0;
  for (int n = 0; n < nodes; ++n) {
    NumaNodeInfo node;
    node.osIndex = n;
    for (int c = 0; c < coresPerNode; ++c) {
      CoreInfo core;
      core.index = static_cast<int>(m.cores.size());
      core.package = 0;
      core.numaNode = n;
      for (int p = 0; p < pusPerCore; ++p) core.pus.push_back(pu++);
      node.pus.insert(node.pus.end(), core.pus.begin(), core.pus.end());
      m.cores.push_back(core);
    }
    m.numaNodes.push_back(node);
  }
  m.pus = pu;
  return m;
}

// A process given cpus 2-5 of a 2 x 4 machine: the plan divides only those.
TEST(BindingPlan, DividesOnlyTheCpusGiven) {
  const MachineInfo given = restrictTo(machine(2, 4), {2, 3, 4, 5});
  EXPECT_EQ(given.pus, 4);
  ASSERT_EQ(given.cores.size(), 4u);
  EXPECT_EQ(given.numaNodes[0].pus, (std::vector<int>{2, 3}));
  const BindingPlan plan = planBinding(given, 2);
  for (const RankBinding& r : plan.ranks) {
    ASSERT_FALSE(r.cpus.empty());
    for (int cpu : r.cpus) EXPECT_TRUE(cpu >= 2 && cpu <= 5) << cpu;
  }
  EXPECT_NE(plan.ranks[0].cpus, plan.ranks[1].cpus);
}

void expectDisjointAndComplete(const BindingPlan& plan, int ranks) {
  ASSERT_EQ(plan.ranks.size(), static_cast<std::size_t>(ranks));
  std::set<int> seen;
  for (const RankBinding& r : plan.ranks) {
    EXPECT_FALSE(r.cpus.empty()) << "local rank " << r.localRank;
    EXPECT_FALSE(r.shared);
    for (int c : r.cpus) EXPECT_TRUE(seen.insert(c).second) << "cpu " << c << " twice";
  }
}

TEST(BindingPlan, TwoCoresTwoRanksOneCoreEach) {
  const BindingPlan plan = planBinding(machine(1, 2), 2);
  expectDisjointAndComplete(plan, 2);
  EXPECT_EQ(plan.unit, "core");
  EXPECT_EQ(plan.ranks[0].cpus, std::vector<int>{0});
  EXPECT_EQ(plan.ranks[1].cpus, std::vector<int>{1});
  EXPECT_EQ(plan.ranks[1].numaNodes, std::vector<int>{0});
}

TEST(BindingPlan, RanksSplitNumaNodesEvenly) {
  BindingPlan plan = planBinding(machine(2, 4), 4);
  expectDisjointAndComplete(plan, 4);
  EXPECT_EQ(plan.ranks[0].cpus, (std::vector<int>{0, 1}));
  EXPECT_EQ(plan.ranks[3].cpus, (std::vector<int>{6, 7}));
  EXPECT_EQ(plan.ranks[3].numaNodes, std::vector<int>{1});
  // Three ranks: no rank straddles the two nodes.
  plan = planBinding(machine(2, 4), 3);
  expectDisjointAndComplete(plan, 3);
  for (const RankBinding& r : plan.ranks) EXPECT_EQ(r.numaNodes.size(), 1u);
  // Fewer ranks than nodes: whole nodes.
  plan = planBinding(machine(2, 4), 1);
  EXPECT_EQ(plan.ranks[0].cpus.size(), 8u);
  EXPECT_EQ(plan.ranks[0].numaNodes, (std::vector<int>{0, 1}));
  plan = planBinding(machine(4, 2), 2);
  expectDisjointAndComplete(plan, 2);
  EXPECT_EQ(plan.ranks[0].numaNodes, (std::vector<int>{0, 1}));
  // Uneven: 5 cores, 2 ranks -> 3 + 2.
  plan = planBinding(machine(1, 5), 2);
  EXPECT_EQ(plan.ranks[0].cores.size(), 3u);
  EXPECT_EQ(plan.ranks[1].cores.size(), 2u);
}

TEST(BindingPlan, TheNicsNodeComesFirst) {
  BindingPlan plan = planBinding(machine(2, 4), 2, {1, {}});
  EXPECT_EQ(plan.nicNumaNode, 1);
  EXPECT_EQ(plan.ranks[0].numaNodes, std::vector<int>{1});
  EXPECT_EQ(plan.ranks[0].cpus, (std::vector<int>{4, 5, 6, 7}));
  // Known by cpus only.
  plan = planBinding(machine(2, 4), 4, {-1, {4, 5, 6, 7}});
  EXPECT_EQ(plan.nicNumaNode, 1);
  EXPECT_EQ(plan.ranks[0].cpus, (std::vector<int>{4, 5}));
  // Near every cpu (a VM): no preference.
  plan = planBinding(machine(2, 4), 2, {-1, {0, 1, 2, 3, 4, 5, 6, 7}});
  EXPECT_EQ(plan.nicNumaNode, -1);
  EXPECT_EQ(plan.ranks[0].numaNodes, std::vector<int>{0});
}

TEST(BindingPlan, MoreRanksThanCoresUsePusThenShare) {
  BindingPlan plan = planBinding(machine(1, 2, 2), 3);
  EXPECT_EQ(plan.unit, "pu");
  expectDisjointAndComplete(plan, 3);
  plan = planBinding(machine(1, 2), 5);
  EXPECT_EQ(plan.unit, "pu (shared)");
  for (const RankBinding& r : plan.ranks) {
    EXPECT_EQ(r.cpus.size(), 1u);
    EXPECT_TRUE(r.shared);
  }
  EXPECT_NE(describeBinding(plan.ranks[0]).find("sharing"), std::string::npos);
  plan = planBinding(MachineInfo{}, 2);  // nothing known: empty lines, no crash
  EXPECT_EQ(plan.ranks.size(), 2u);
  EXPECT_TRUE(plan.ranks[0].cpus.empty());
}

TEST(CpuList, FormatsAndParses) {
  EXPECT_EQ(formatIndexList({3, 0, 1, 2, 8, 10, 11, 1}), "0-3,8,10-11");
  EXPECT_EQ(formatIndexList({}), "");
  EXPECT_EQ(parseCpuList("0-3,8,10-11\n"), (std::vector<int>{0, 1, 2, 3, 8, 10, 11}));
  EXPECT_EQ(parseCpuList(""), std::vector<int>{});
  for (const char* bad : {"a", "3-1", "1-", "-1", "1,,2", "1-2-3"}) {
    EXPECT_FALSE(parseCpuList(bad).has_value()) << bad;
  }
}

TEST(Discovery, ThisMachine) {
  const Topology topology;
  const MachineInfo m = topology.machine();
  EXPECT_GE(m.pus, 1);
  ASSERT_FALSE(m.cores.empty());
  std::size_t pus = 0;
  for (const CoreInfo& c : m.cores) pus += c.pus.size();
  EXPECT_EQ(pus, static_cast<std::size_t>(m.pus));
  EXPECT_NE(topology.treeText().find("PU P#"), std::string::npos);
  EXPECT_FALSE(topology.nicLocality("no-such-interface").has_value());
  std::vector<NetInterface> interfaces = listInterfaces();
  addLocality(interfaces, &topology);
  EXPECT_TRUE(std::is_sorted(interfaces.begin(), interfaces.end(),
                             [](const auto& a, const auto& b) { return a.name < b.name; }));
  const auto lo = std::find_if(interfaces.begin(), interfaces.end(),
                               [](const NetInterface& n) { return n.loopback; });
  ASSERT_NE(lo, interfaces.end());
  EXPECT_NE(std::find(lo->addresses.begin(), lo->addresses.end(), "127.0.0.1"),
            lo->addresses.end());
  // The plan over this machine is disjoint for as many ranks as it has cores.
  expectDisjointAndComplete(planBinding(m, static_cast<int>(m.cores.size())),
                            static_cast<int>(m.cores.size()));
}

}  // namespace
}  // namespace epcomm::topology
