// Exports the shm backend through the plugin ABI.
#include "backends/shm/backend.h"
#include "comm/backend_plugin.h"

// The call check rides on each collective's first step (channel.h); symmetric windows and
// registered buffers (window.h, registry.h).
EPCOMM_EXPORT_BACKEND("shm", EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY | EPCOMM_BACKEND_CAP_WINDOWS, 0,
                      epcomm::shm::Backend)
