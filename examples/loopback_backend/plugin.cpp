// Exports the loopback backend: the one symbol the epcomm loader looks for.
#include <epcomm/comm/backend_plugin.h>
#include "backend.h"

EPCOMM_EXPORT_BACKEND("loopback", 0, 0, example::loopback::Backend)
