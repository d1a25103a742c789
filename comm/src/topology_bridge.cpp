#include "comm/src/topology_bridge.h"

#include "comm/log.h"

namespace epcomm {

topology::SelectionRequest selectionRequest(const Config& config) {
  topology::SelectionRequest request;
  request.ifname = config.socketIfname;
  request.ifIp = config.ifIp;
  for (const KnobValue& v : config.values) {
    if (v.source == "default") continue;
    if (v.name == "EPCOMM_SOCKET_IFNAME") request.ifnameSource = v.source;
    if (v.name == "EPCOMM_IF_IP") request.ifIpSource = v.source;
  }
  return request;
}

topology::InterfaceSelection selectInterface(const Config& config, int rank) {
  const topology::InterfaceSelection selection = translateTopologyErrors(rank, [&] {
    return topology::selectInterface(topology::listInterfaces(), selectionRequest(config));
  });
  log().info("interface {} ({}) selected: {}", selection.name, selection.address, selection.reason);
  return selection;
}

topology::RankBinding bindLocalRank(const Config& config, int rank,
                                    const topology::BindingGroup& group) {
  const topology::BindReport report = translateTopologyErrors(
      rank, [&] { return topology::bindLocalRank(selectionRequest(config), group); });
  if (!report.selection.empty()) log().info("{}", report.selection);
  for (const std::string& w : report.warnings) log().warn("{}", w);
  log().info("rank {} bound to {}", rank, report.description);
  return report.binding;
}

}  // namespace epcomm
