// The ep::Buffer's windows: Communicator::createWindow with the Buffer's knobs named in a
// failure (a /dev/shm too small for the window says which EPCOMM_EP_* knob sizes it).
#pragma once

#include <cstddef>
#include <memory>

#include "comm/communicator.h"

namespace epcomm::ep {

// Collective, as createWindow. `sizedBy` says what sizes the window and how to shrink it
// ("lower EPCOMM_EP_LL_MAX_TOKENS"); it is appended to a system error's message.
std::unique_ptr<Window> createEpWindow(Communicator& comm, std::size_t bytes, int numSignals,
                                       const char* sizedBy);

}  // namespace epcomm::ep
