// A plugin built for another ABI version: the loader must refuse it by name.
#include "comm/backend.h"

extern "C" __attribute__((visibility("default")))
const epcommBackendV1 epcommBackend_v1 = {99u,      sizeof(epcommBackendV1),
                                          "badabi", 0,
                                          0,        nullptr,
                                          nullptr,  nullptr,
                                          nullptr,  nullptr,
                                          nullptr,  nullptr,
                                          nullptr,  nullptr,
                                          nullptr,  nullptr,
                                          nullptr,  nullptr,
                                          nullptr,  nullptr};
