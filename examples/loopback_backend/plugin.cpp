// Exports the loopback backend: the one symbol the epcomm loader looks for.
#include "backend.h"
#include "comm/backend_plugin.h"

EPCOMM_EXPORT_BACKEND("loopback", 0, 0, example::loopback::Backend)
