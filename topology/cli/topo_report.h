// What epcomm-topo reports, gathered once and rendered as text or JSON. The JSON keys are
// documented in README.md (epcomm-topo) and checked by tests/topology.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "comm/config.h"
#include "topology/binding_plan.h"
#include "topology/interface_selection.h"
#include "topology/net_interface.h"
#include "topology/topology.h"

namespace epcomm::topology {

struct TopoReport {
  MachineInfo machine;
  std::string tree;
  std::vector<NetInterface> interfaces;  // with locality
  InterfaceSelection selection;
  int localRanks = 1;
  BindingPlan plan;
  Config config;
};

// Discovers everything. Throws epcomm::Error when the interface selection fails.
TopoReport gatherReport(const Config& config, int localRanks);

nlohmann::ordered_json reportJson(const TopoReport& report);
std::string reportText(const TopoReport& report);

// Every knob of the registry with its value and source (default, own name, or alias).
nlohmann::ordered_json envJson(const Config& config);
std::string envText(const Config& config);

}  // namespace epcomm::topology
