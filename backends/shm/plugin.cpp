// Exports the shm backend through the plugin ABI.
#include "backends/shm/backend.h"
#include "comm/backend_plugin.h"

namespace {

// The shm backend's knobs (read at create through the ABI, comm/backend.h).
const epcommBackendKnob kShmKnobs[] = {
    {"EPCOMM_SHM_ISA", nullptr, EPCOMM_KNOB_CHOICE, nullptr, "auto", 0, 0,
     "auto|portable|avx2|avx512",
     "vector kernels of the shm backend: auto (the best this CPU has), or at most portable, "
     "avx2 or avx512 (for comparisons; never above what the CPU has)"},
};

}  // namespace

// The call check rides on each collective's first step (channel.h); symmetric windows and
// registered buffers (window.h, registry.h).
EPCOMM_EXPORT_BACKEND_WITH_KNOBS("shm",
                                 EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY | EPCOMM_BACKEND_CAP_WINDOWS,
                                 0, epcomm::shm::Backend, kShmKnobs)
