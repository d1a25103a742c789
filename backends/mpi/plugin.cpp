// Exports the mpi backend through the plugin ABI.
#include <climits>

#include "backends/mpi/backend.h"
#include "comm/backend_plugin.h"

namespace {

// The mpi backend's knobs (read at create through the ABI, comm/backend.h).
const epcommBackendKnob kMpiKnobs[] = {
    {"EPCOMM_MPI_WINDOW", nullptr, EPCOMM_KNOB_CHOICE | EPCOMM_KNOB_AGREED, nullptr, "auto", 0, 0,
     "auto|shared|messages",
     "how the mpi backend carries windows and registered buffers: shared (MPI-3 shared-memory "
     "windows; every rank on one node), messages (two-sided messages, any placement) or auto "
     "(shared when every rank is on one node, else messages)"},
    {"EPCOMM_MPI_CHECK_FOLD_BYTES", nullptr, EPCOMM_KNOB_INTEGER | EPCOMM_KNOB_AGREED, "bytes",
     "64", 0, 4096, nullptr,
     "with EPCOMM_CHECK_ARGS=1, an all-reduce of at most this many bytes (bf16/f16 counted as "
     "f32) carries its data in the call check's own MPI_Allreduce, so the check costs no "
     "extra MPI call; every call check sends a message of this size plus 88 bytes, so a "
     "larger value folds larger all-reduces but slows every check"},
};

}  // namespace

// MPI counts and displacements are ints. Windows: shared memory on one node, two-sided
// messages across nodes (backends/mpi/window.h).
EPCOMM_EXPORT_BACKEND_WITH_KNOBS("mpi",
                                 EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY |
                                     EPCOMM_BACKEND_CAP_MULTI_HOST | EPCOMM_BACKEND_CAP_WINDOWS,
                                 INT_MAX, epcomm::mpi::Backend, kMpiKnobs)
