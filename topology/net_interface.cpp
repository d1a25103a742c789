#include "topology/net_interface.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "topology/error.h"
#include "topology/topology.h"

namespace epcomm::topology {
namespace {

struct IfaddrsDeleter {
  void operator()(ifaddrs* list) const { freeifaddrs(list); }
};

bool isLinkLocalV6(const std::string& address) {
  in6_addr a{};
  if (inet_pton(AF_INET6, address.c_str(), &a) != 1) return false;
  return a.s6_addr[0] == 0xfe && (a.s6_addr[1] & 0xc0) == 0x80;
}

std::string readFirstLine(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::string line;
  if (in) std::getline(in, line);
  return line;
}

// "dddd:bb:dd.f"
bool looksLikePciBusId(const std::string& name) {
  return name.size() == 12 && name[4] == ':' && name[7] == ':' && name[10] == '.';
}

// The PCI device under /sys/class/net/<name>/device (it may sit under a virtio or other
// bus device), and the locality the kernel reports for it.
void addSysfsLocality(NetInterface& nic) {
  std::error_code ec;
  std::filesystem::path dir =
      std::filesystem::canonical("/sys/class/net/" + nic.name + "/device", ec);
  if (ec) return;
  for (int hops = 0; hops < 4 && !dir.empty() && dir != dir.root_path(); ++hops) {
    if (looksLikePciBusId(dir.filename().string())) break;
    dir = dir.parent_path();
  }
  if (!looksLikePciBusId(dir.filename().string())) return;
  nic.pciBusId = dir.filename().string();
  nic.localitySource = "sysfs";
  const std::string node = readFirstLine(dir / "numa_node");
  int value = -1;
  const std::from_chars_result parsed =
      std::from_chars(node.data(), node.data() + node.size(), value);
  if (parsed.ec == std::errc() && parsed.ptr == node.data() + node.size() && value >= 0) {
    nic.numaNode = value;
  }
  if (const auto cpus = parseCpuList(readFirstLine(dir / "local_cpulist"))) nic.localCpus = *cpus;
}

}  // namespace

std::vector<NetInterface> listInterfaces() {
  ifaddrs* raw = nullptr;
  if (getifaddrs(&raw) != 0) {
    fail(ErrorKind::kSystemError, "list interfaces",
         std::string("getifaddrs failed: ") + std::strerror(errno));
  }
  const std::unique_ptr<ifaddrs, IfaddrsDeleter> list(raw);
  std::map<std::string, NetInterface> byName;
  std::map<std::string, std::vector<std::string>> v6;
  for (const ifaddrs* ifa = list.get(); ifa != nullptr; ifa = ifa->ifa_next) {
    if (ifa->ifa_name == nullptr) continue;
    NetInterface& nic = byName[ifa->ifa_name];
    nic.name = ifa->ifa_name;
    nic.up = nic.up || (ifa->ifa_flags & IFF_UP) != 0;
    nic.loopback = nic.loopback || (ifa->ifa_flags & IFF_LOOPBACK) != 0;
    if (ifa->ifa_addr == nullptr) continue;
    char text[INET6_ADDRSTRLEN] = {};
    if (ifa->ifa_addr->sa_family == AF_INET) {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(ifa->ifa_addr);
      if (inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)) != nullptr) {
        nic.addresses.push_back(text);
      }
    } else if (ifa->ifa_addr->sa_family == AF_INET6) {
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(ifa->ifa_addr);
      if (inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text)) != nullptr) {
        v6[nic.name].push_back(text);
      }
    }
  }
  std::vector<NetInterface> out;
  for (auto& [name, nic] : byName) {
    for (std::string& a : v6[name]) nic.addresses.push_back(std::move(a));
    out.push_back(std::move(nic));
  }
  return out;  // std::map iterates by name
}

void addLocality(std::vector<NetInterface>& interfaces, const Topology* topology) {
  for (NetInterface& nic : interfaces) {
    if (nic.loopback) continue;
    if (topology != nullptr) {
      if (const std::optional<NicLocality> found = topology->nicLocality(nic.name)) {
        nic.pciBusId = found->pciBusId;
        nic.localCpus = found->cpus;
        nic.numaNode = found->numaNode;
        nic.localitySource = "hwloc";
        continue;
      }
    }
    addSysfsLocality(nic);
  }
}

std::string usableAddress(const NetInterface& nic) {
  for (const std::string& a : nic.addresses) {
    if (a.find(':') == std::string::npos) return a;
  }
  for (const std::string& a : nic.addresses) {
    if (!isLinkLocalV6(a)) return a;
  }
  return "";
}

}  // namespace epcomm::topology
