// Exports the shm backend through the plugin ABI.
#include "backends/shm/backend.h"
#include "comm/backend_plugin.h"

// No capabilities: the communicator checks that ranks agree on counts, dtype and op.
EPCOMM_EXPORT_BACKEND("shm", EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY, 0, epcomm::shm::Backend)
