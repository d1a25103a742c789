// EPCOMM_CPU_AFFINITY at init: once every rank's place on its host is known, bind it to its
// share of the cpus (topology/). Only the communicators made by init bind, not split's
// children.
#pragma once

#include <memory>

#include "comm/communicator.h"

namespace epcomm {

// Collective over comm when comm->config().cpuAffinity; returns comm.
std::unique_ptr<Communicator> bindIfAsked(std::unique_ptr<Communicator> comm);

}  // namespace epcomm
