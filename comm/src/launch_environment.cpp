#include "comm/src/launch_environment.h"

#include <fmt/format.h>

#include <cstdlib>
#include <limits>
#include <optional>

#include "comm/log.h"
#include "comm/src/topology_bridge.h"

namespace epcomm {
namespace {

int envInt(const char* name) {
  const std::optional<std::string> v = environmentValue(name);
  const std::optional<std::int64_t> x = v ? parseInteger(*v) : std::nullopt;
  return (x && *x >= 0 && *x <= std::numeric_limits<int>::max()) ? static_cast<int>(*x) : -1;
}

}  // namespace

LauncherRanks launcherRanks() {
  LauncherRanks r{envInt("OMPI_COMM_WORLD_RANK"), envInt("OMPI_COMM_WORLD_SIZE")};
  if (r.rank < 0 || r.size <= 0) r = {envInt("PMI_RANK"), envInt("PMI_SIZE")};
  if (r.rank < 0 || r.size <= 0 || r.rank >= r.size) return {};
  return r;
}

std::string unreachableWorld(const Config& config) {
  std::string said;
  if (config.initSize > 1) {
    said = fmt::format("EPCOMM_SIZE or WORLD_SIZE is {}", config.initSize);
  } else if (const int n = envInt("SLURM_NTASKS"); n > 1) {
    said = fmt::format("SLURM_NTASKS is {}", n);
  } else if (const int local = envInt("LOCAL_WORLD_SIZE"); local > 1) {
    said = fmt::format("LOCAL_WORLD_SIZE is {}", local);
  } else {
    return {};
  }
  const std::optional<std::string> master = environmentValue("MASTER_ADDR");
  return fmt::format(
      "the environment says this is one of several ranks ({}{}) but names no way to reach them: "
      "set EPCOMM_INIT_ADDR=host:port (rank 0 listens there; e.g. MASTER_ADDR with a free port "
      "other than MASTER_PORT, which torch's store holds) with EPCOMM_RANK/RANK and "
      "EPCOMM_SIZE/WORLD_SIZE, or bootstrap through the caller's all-gather "
      "(Communicator::init(allGather, rank, size), epcommCommInitRankOob) or a UniqueId, or "
      "launch with mpirun",
      said, master ? ", MASTER_ADDR=" + *master : std::string());
}

// Under mpirun, data between hosts travels through Open MPI's btl/tcp. A selection the user
// made (EPCOMM_SOCKET_IFNAME / EPCOMM_IF_IP and their HCCL/GLOO aliases) is validated on
// every rank (an error naming the knob when it matches nothing) and handed to Open MPI as
// btl_tcp_if_include through its environment, which MPI_Init reads, unless the user set
// Open MPI's own parameter (mpirun --mca, OMPI_MCA_*), which then wins.
void handInterfaceToOpenMpi(const Config& config, int rank) {
  const std::optional<std::string> include = environmentValue("OMPI_MCA_btl_tcp_if_include");
  const std::optional<std::string> exclude = environmentValue("OMPI_MCA_btl_tcp_if_exclude");
  if (config.socketIfname.empty() && config.ifIp.empty()) {
    log().info(
        "mpi: data between hosts over Open MPI's own interface choice ({}); set "
        "EPCOMM_SOCKET_IFNAME or EPCOMM_IF_IP to choose",
        include   ? "btl_tcp_if_include=" + *include
        : exclude ? "btl_tcp_if_exclude=" + *exclude
                  : std::string("every interface but loopback"));
    return;
  }
  const topology::InterfaceSelection nic = selectInterface(config, rank);
  if (include || exclude) {
    log().info(
        "mpi: data between hosts as Open MPI's {}={} says (set by the user, so the "
        "selected interface {} is not handed to it)",
        include ? "btl_tcp_if_include" : "btl_tcp_if_exclude", include ? *include : *exclude,
        nic.name);
    return;
  }
  setenv("OMPI_MCA_btl_tcp_if_include", nic.name.c_str(), 1);
  log().info(
      "mpi: data between hosts over interface {} ({}): handed to Open MPI as "
      "btl_tcp_if_include (effective unless MPI was initialised before epcomm)",
      nic.name, nic.address);
}

std::string ucxNetDevice(const Config& config, int rank) {
  const std::optional<std::string> devices = environmentValue("UCX_NET_DEVICES");
  const std::optional<std::string> tls = environmentValue("UCX_TLS");
  if (config.socketIfname.empty() && config.ifIp.empty()) {
    log().info(
        "ucx: network devices as UCX chooses ({}); set EPCOMM_SOCKET_IFNAME or "
        "EPCOMM_IF_IP to choose",
        devices ? "UCX_NET_DEVICES=" + *devices : std::string("every usable device"));
    return "";
  }
  const topology::InterfaceSelection nic = selectInterface(config, rank);
  if (devices || tls) {
    log().info(
        "ucx: devices as UCX's own {}={} says (set by the user, so the selected "
        "interface {} is not handed to it)",
        devices ? "UCX_NET_DEVICES" : "UCX_TLS", devices ? *devices : *tls, nic.name);
    return "";
  }
  log().info("ucx: data between hosts over interface {} ({}): UCX_NET_DEVICES={}", nic.name,
             nic.address, nic.name);
  return nic.name;
}

}  // namespace epcomm
