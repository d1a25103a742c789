// Which host a rank runs on, as `auto` backend selection, localRank/localSize and the shm
// backend's one-host check see it: the host name and the IPC namespace (several "hosts" on
// one machine, each in its own namespaces, differ there). Plain bytes, so ranks can
// all-gather and compare them. Header-only: backend plugins use it without libepcomm.
#pragma once

#include <unistd.h>

#include <array>
#include <cstddef>
#include <vector>

namespace epcomm {

struct HostIdentity {
  std::array<char, 96> hostname{};
  std::array<char, 32> ipcNamespace{};  // the /proc/self/ns/ipc link, e.g. "ipc:[4026531839]"

  bool operator==(const HostIdentity& o) const {
    return hostname == o.hostname && ipcNamespace == o.ipcNamespace;
  }
  bool operator!=(const HostIdentity& o) const { return !(*this == o); }
};

inline HostIdentity thisHost() {
  HostIdentity id;
  gethostname(id.hostname.data(), id.hostname.size() - 1);
  if (readlink("/proc/self/ns/ipc", id.ipcNamespace.data(), id.ipcNamespace.size() - 1) < 0) {
    id.ipcNamespace[0] = '\0';
  }
  return id;
}

// Each rank's host index, given every rank's identity in rank order: hosts are numbered
// 0 .. H-1 in the order of their lowest rank (Communicator::host()).
inline std::vector<int> numberHosts(const std::vector<HostIdentity>& all) {
  std::vector<int> host(all.size(), -1);
  int next = 0;
  for (std::size_t r = 0; r < all.size(); ++r) {
    for (std::size_t q = 0; q < r && host[r] < 0; ++q) {
      if (all[q] == all[r]) host[r] = host[q];
    }
    if (host[r] < 0) host[r] = next++;
  }
  return host;
}

}  // namespace epcomm
