// Which host a rank runs on, as `auto` backend selection and localRank/localSize see it:
// the host name and the IPC namespace (several "hosts" on one machine, each in its own
// namespaces, differ there). Plain bytes, so ranks can all-gather and compare them.
#pragma once

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

HostIdentity thisHost();

}  // namespace epcomm
