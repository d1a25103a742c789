// Which network interface the library uses (the rendezvous listens on its address; CPU
// affinity prefers the cores near it). NCCL's syntax for EPCOMM_SOCKET_IFNAME (aliases
// HCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME): a comma list of name prefixes ("eth,ib"); a
// leading '^' excludes them ("^docker,lo"); a leading '=' makes them exact names ("=eth0",
// "^=eth1"). EPCOMM_IF_IP (alias HCCL_IF_IP) picks the interface that holds that address and
// wins over the name filter. With neither: the first interface by name, other than docker*,
// lo* and virbr*, that is up with an address; then docker*; then loopback.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "topology/net_interface.h"

namespace epcomm::topology {

struct InterfaceSpec {
  bool exclude = false;
  bool exact = false;
  std::vector<std::string> names;

  // Parses NCCL's syntax; throws topology::Error (kInvalidArgument) naming `knob` when the
  // text names no interface ("", "^", "=", ",").
  static InterfaceSpec parse(std::string_view text, std::string_view knob);
  bool matches(std::string_view ifname) const;
};

// The settings a selection follows; empty strings mean "not set". comm fills it from its
// knobs (comm/src/topology_bridge.h).
struct SelectionRequest {
  std::string ifname;                                 // NCCL-syntax name filter
  std::string ifnameSource = "EPCOMM_SOCKET_IFNAME";  // the variable that supplied it
  std::string ifIp;                                   // numeric address
  std::string ifIpSource = "EPCOMM_IF_IP";
};

struct InterfaceSelection {
  std::size_t index = 0;  // into the list selected from
  std::string name;
  std::string address;  // what the library binds to (usableAddress, or EPCOMM_IF_IP)
  std::string reason;   // one line: which rule picked it
};

// Picks from `interfaces` (as listInterfaces returns them). Throws topology::Error
// (kInvalidArgument) when the request matches nothing usable; the message names the
// variable and its value and lists every interface with its state and addresses.
InterfaceSelection selectInterface(const std::vector<NetInterface>& interfaces,
                                   const SelectionRequest& request);

}  // namespace epcomm::topology
