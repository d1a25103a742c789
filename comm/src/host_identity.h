// Which host a rank runs on, as `auto` backend selection, localRank/localSize and the shm
// backend's one-host check see it: the host name and the IPC namespace (several "hosts" on
// one machine, each in its own namespaces, differ there). Plain bytes, so ranks can
// all-gather and compare them. Header-only: backend plugins use it without libepcomm.
#pragma once

#include <unistd.h>

#include <array>

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

}  // namespace epcomm
