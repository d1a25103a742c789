// Exports the mpi backend through the plugin ABI.
#include <climits>

#include "backends/mpi/backend.h"
#include "comm/backend_plugin.h"

// MPI counts and displacements are ints. Windows: shared memory on one node, two-sided
// messages across nodes (backends/mpi/window.h).
EPCOMM_EXPORT_BACKEND("mpi", EPCOMM_BACKEND_CAP_MULTI_HOST | EPCOMM_BACKEND_CAP_WINDOWS, INT_MAX,
                      epcomm::mpi::Backend)
