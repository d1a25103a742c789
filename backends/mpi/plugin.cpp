// Exports the mpi backend through the plugin ABI.
#include <climits>

#include "backends/mpi/backend.h"
#include "comm/backend_plugin.h"

// MPI counts and displacements are ints.
EPCOMM_EXPORT_BACKEND("mpi", EPCOMM_BACKEND_CAP_MULTI_HOST, INT_MAX, epcomm::mpi::Backend)
