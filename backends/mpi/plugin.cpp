// Exports the mpi backend through the plugin ABI.
#include "backends/mpi/backend.h"
#include "comm/backend_plugin.h"

EPCOMM_EXPORT_BACKEND("mpi", EPCOMM_BACKEND_CAP_MULTI_HOST, epcomm::mpi::Backend)
