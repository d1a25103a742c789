#include "comm/src/host_identity.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

namespace epcomm {

HostIdentity thisHost() {
  HostIdentity id;
  gethostname(id.hostname.data(), id.hostname.size() - 1);
  std::error_code ec;
  const std::string ns = std::filesystem::read_symlink("/proc/self/ns/ipc", ec).string();
  std::strncpy(id.ipcNamespace.data(), ns.c_str(), id.ipcNamespace.size() - 1);
  return id;
}

}  // namespace epcomm
