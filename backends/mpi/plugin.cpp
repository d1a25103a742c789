// Exports the mpi backend through the plugin ABI.
#include <climits>

#include "backends/mpi/backend.h"
#include "comm/backend_plugin.h"

namespace {

// The mpi backend's knobs (read at create through the ABI, comm/backend.h).
const epcommBackendKnob kMpiKnobs[] = {
    {"EPCOMM_MPI_WINDOW", nullptr, EPCOMM_KNOB_CHOICE, nullptr, "auto", 0, 0,
     "auto|shared|messages",
     "how the mpi backend carries windows and registered buffers: shared (MPI-3 shared-memory "
     "windows; every rank on one node), messages (two-sided messages, any placement) or auto "
     "(shared when every rank is on one node, else messages)"},
};

}  // namespace

// MPI counts and displacements are ints. Windows: shared memory on one node, two-sided
// messages across nodes (backends/mpi/window.h).
EPCOMM_EXPORT_BACKEND_WITH_KNOBS("mpi", EPCOMM_BACKEND_CAP_MULTI_HOST | EPCOMM_BACKEND_CAP_WINDOWS,
                                 INT_MAX, epcomm::mpi::Backend, kMpiKnobs)
