// The network interfaces of this host (of this network namespace): names, state and
// addresses from getifaddrs, locality from hwloc or, where hwloc does not list the
// interface, from /sys/class/net/<if>/device.
#pragma once

#include <string>
#include <vector>

namespace epcomm::topology {

class Topology;

struct NetInterface {
  std::string name;
  std::vector<std::string> addresses;  // numeric; IPv4 first, then IPv6
  bool up = false;                     // IFF_UP
  bool loopback = false;               // IFF_LOOPBACK
  // Locality; numaNode -1, pciBusId and localCpus empty where unknown.
  int numaNode = -1;
  std::string pciBusId;
  std::vector<int> localCpus;  // OS PU indices
  std::string localitySource;  // "hwloc", "sysfs" or "" (unknown)
};

// Every interface, sorted by name, without locality. Throws epcomm::Error (kSystemError)
// when getifaddrs fails.
std::vector<NetInterface> listInterfaces();

// Fills in the locality of each interface: hwloc first (when `topology` is given), else sysfs.
void addLocality(std::vector<NetInterface>& interfaces, const Topology* topology);

// The address the library listens on for `nic`: its first IPv4 address, else its first IPv6
// address that is not link-local; "" when it has neither.
std::string usableAddress(const NetInterface& nic);

}  // namespace epcomm::topology
