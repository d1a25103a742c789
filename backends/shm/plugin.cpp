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
    {"EPCOMM_SHM_ALLREDUCE", nullptr, EPCOMM_KNOB_CHOICE | EPCOMM_KNOB_AGREED, nullptr, "auto", 0,
     0, "auto|lines|oneshot|twoshot",
     "the shm all-reduce algorithm (backends/shm/all_reduce_algorithms.h): auto (by size, "
     "the thresholds below), or lines, oneshot, twoshot wherever it can run (elsewhere "
     "auto); every rank must set the same"},
    {"EPCOMM_SHM_LINES_MAX_BYTES", nullptr, EPCOMM_KNOB_INTEGER | EPCOMM_KNOB_AGREED, "bytes",
     "1024", 0, 1024, nullptr,
     "auto all-reduce: line mode up to this many bytes (0: never; at most 1024, the line "
     "region)"},
    {"EPCOMM_SHM_ONESHOT_MAX_BYTES", nullptr, EPCOMM_KNOB_INTEGER | EPCOMM_KNOB_AGREED, "bytes",
     "0", 0, std::int64_t{1} << 40, nullptr,
     "auto all-reduce: one-shot up to this many bytes, two-shot above; 0: 4096, or 262144 "
     "when ranks outnumber the cpus"},
};

}  // namespace

// The call check rides on each collective's first step (channel.h); symmetric windows and
// registered buffers (window.h, registry.h); shrink (shrink.cpp).
EPCOMM_EXPORT_BACKEND_WITH_KNOBS("shm",
                                 EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY |
                                     EPCOMM_BACKEND_CAP_WINDOWS | EPCOMM_BACKEND_CAP_SHRINK,
                                 0, epcomm::shm::Backend, kShmKnobs)
