// Errors of the C++ API. Every failure is an epcomm::Error carrying an ErrorCode; the
// message names the rank, the operation and what was wrong (and, for a sizing problem, the
// knob to change and the size needed).
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace epcomm {

enum class ErrorCode : int {
  kInvalidArgument = 1,  // a bad value passed by the caller (null buffer, unknown dtype, ...)
  kInvalidUsage = 2,     // a call that is not allowed now (use after abort, ...)
  kTimeout = 3,          // a wait passed its deadline (EPCOMM_TIMEOUT_MS, EPCOMM_CONNECT_TIMEOUT)
  kPeerLost = 4,         // a peer died or went away
  kSystemError = 5,      // an OS or library call failed
  kInternal = 6,         // a bug in epcomm
};

std::string_view toString(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

// Builds the uniform message "epcomm rank R: <operation>: <what>" and throws it.
[[noreturn]] void throwError(ErrorCode code, int rank, std::string_view operation,
                             std::string_view what);

}  // namespace epcomm
