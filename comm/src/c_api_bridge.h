// The C API's machinery, for the C APIs of the other epcomm libraries (libepcomm_ep's
// ep/epcomm_ep.h): the Communicator behind an epcommComm_t, and the one way a C call runs on
// a communicator (counted in flight, so epcommCommAbort / Destroy wait for it; exceptions
// become result codes; the message goes to epcommGetLastError). Exported from libepcomm but
// not installed: only libraries built with epcomm use it, and it can change with them.
#pragma once

#include <string>
#include <type_traits>

#include "comm/communicator.h"
#include "comm/epcomm.h"
#include "comm/export.h"

namespace epcomm::capi {

// The Communicator behind comm; nullptr for NULL.
EPCOMM_API Communicator* communicatorFromHandle(epcommComm_t comm) noexcept;

// Records a failure detected before (or after) a call: the message becomes
// epcommGetLastError(NULL) of this thread and, when comm is not NULL, epcommGetLastError(comm).
// Returns result.
EPCOMM_API epcommResult_t fail(epcommComm_t comm, epcommResult_t result,
                               const std::string& message) noexcept;

// Runs fn(context) as a call on comm (see above). NULL comm: epcommInvalidArgument naming op.
EPCOMM_API epcommResult_t callOn(epcommComm_t comm, const char* op, void (*fn)(void*),
                                 void* context) noexcept;

template <typename Fn>
epcommResult_t call(epcommComm_t comm, const char* op, Fn&& fn) noexcept {
  using F = std::remove_reference_t<Fn>;
  return callOn(
      comm, op, [](void* f) { (*static_cast<F*>(f))(); },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

}  // namespace epcomm::capi
