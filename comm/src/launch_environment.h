// What the launch environment says: ranks given by mpirun or a PMI launcher, an environment
// that names several ranks but no way to reach them (torchrun's), and the interface choice
// handed to Open MPI before MPI_Init.
#pragma once

#include <string>

#include "comm/config.h"

namespace epcomm {

struct LauncherRanks {
  int rank = -1;
  int size = -1;  // -1: not launched by mpirun or a PMI launcher
};

// Ranks given by mpirun (Open MPI), or by a PMI launcher.
LauncherRanks launcherRanks();

// Where the environment says this process is one of several ranks but gives no way to
// reach them (torchrun / the engines' MASTER_ADDR + RANK + WORLD_SIZE, srun), the reason;
// empty where one rank is what it says.
std::string unreachableWorld(const Config& config);

// Under mpirun: validates the user's interface selection and hands it to Open MPI's btl/tcp
// (OMPI_MCA_btl_tcp_if_include) unless the user set Open MPI's own; logs which carries data.
void handInterfaceToOpenMpi(const Config& config, int rank);

// The network device the ucx backend should use: the interface the user selected
// (EPCOMM_SOCKET_IFNAME / EPCOMM_IF_IP and aliases; validated, an error naming the knob when
// it matches nothing), or "" when none was selected or the user set UCX's own
// UCX_NET_DEVICES / UCX_TLS, which then win. Logs which.
std::string ucxNetDevice(const Config& config, int rank);

}  // namespace epcomm
