// Exports the ucx backend through the plugin ABI.
#include "backends/ucx/backend.h"
#include "comm/backend_plugin.h"

namespace {

// The ucx backend's knobs (read at create through the ABI, comm/backend.h). They shape the
// algorithms, so every rank must set them alike (agreed at init).
const epcommBackendKnob kUcxKnobs[] = {
    {"EPCOMM_UCX_ALLREDUCE", nullptr, EPCOMM_KNOB_CHOICE | EPCOMM_KNOB_AGREED, nullptr, "auto", 0,
     0, "auto|recursive_doubling|ring",
     "the ucx backend's all-reduce: recursive_doubling (latency: log2 P exchanges of the whole "
     "message), ring (bandwidth: reduce-scatter + all-gather around the ring, pipelined) or "
     "auto (recursive_doubling up to EPCOMM_UCX_SMALL_BYTES, ring above)"},
    {"EPCOMM_UCX_SMALL_BYTES", nullptr, EPCOMM_KNOB_INTEGER | EPCOMM_KNOB_AGREED, "bytes", "65536",
     0, int64_t{1} << 40, nullptr,
     "the ucx backend runs its latency algorithms (recursive doubling all-reduce, Bruck "
     "all-gather of the whole result) up to this many bytes and its bandwidth ones above"},
    {"EPCOMM_UCX_CHUNK_BYTES", nullptr, EPCOMM_KNOB_INTEGER | EPCOMM_KNOB_AGREED, "bytes", "262144",
     64, int64_t{1} << 30, nullptr,
     "the ucx backend's pipeline chunk: ring and broadcast messages are cut into pieces of at "
     "most this size, so one travels while the next is reduced or forwarded"},
    {"EPCOMM_UCX_CHECK_FOLD_BYTES", nullptr, EPCOMM_KNOB_INTEGER | EPCOMM_KNOB_AGREED, "bytes",
     "1024", 0, 65536, nullptr,
     "with EPCOMM_CHECK_ARGS=1 the ucx backend settles each collective's call check in one "
     "recursive-doubling exchange of 88 bytes plus this payload area; an all-reduce whose "
     "data fits travels in that same exchange (lastAlgorithm: check-folded)"},
};

}  // namespace

// Any placement (UCX picks shared memory or the network per peer); windows are UCX memory
// registrations. The call check is folded into the collective (call_check.h); shrink
// (shrink.cpp).
EPCOMM_EXPORT_BACKEND_WITH_KNOBS("ucx",
                                 EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY |
                                     EPCOMM_BACKEND_CAP_MULTI_HOST | EPCOMM_BACKEND_CAP_WINDOWS |
                                     EPCOMM_BACKEND_CAP_SHRINK,
                                 0, epcomm::ucx::Backend, kUcxKnobs)
