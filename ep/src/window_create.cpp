#include "ep/src/window_create.h"

#include <fmt/format.h>

#include <string>

namespace epcomm::ep {

std::unique_ptr<Window> createEpWindow(Communicator& comm, std::size_t bytes, int numSignals,
                                       const char* sizedBy) {
  try {
    return comm.createWindow(bytes, numSignals);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kSystemError) throw;
    throw Error(e.code(), fmt::format("{}; this is an ep::Buffer window: {}, or move data through "
                                      "collectives (EPCOMM_EP_TRANSPORT=collective)",
                                      e.what(), sizedBy));
  }
}

}  // namespace epcomm::ep
