// Errors of the C++ API. Every failure is an epcomm::Error carrying an ErrorCode; the
// message names the rank, the operation and what was wrong (and, for a sizing problem, the
// knob to change and the size needed).
#pragma once

#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>

#include "export.h"

namespace epcomm {

// Values equal the result codes of the C API (comm/epcomm.h) and the backend ABI
// (comm/backend.h), which keep NCCL's numbering; converting is a cast.
enum class ErrorCode : int {
  kSystemError = 2,      // an OS or library call failed
  kInternal = 3,         // a bug in epcomm
  kInvalidArgument = 4,  // a bad value passed by the caller (null buffer, unknown dtype, ...)
  kInvalidUsage = 5,     // a call that is not allowed now (use after abort, ...)
  kPeerLost = 6,         // a peer died or went away
  kTimeout = 8,          // a wait passed its deadline (EPCOMM_TIMEOUT_MS, EPCOMM_CONNECT_TIMEOUT)
};

constexpr int toResultCode(ErrorCode code) {
  return static_cast<int>(code);
}
// The error code of a non-zero result code; kInternal for a number that is none.
EPCOMM_API ErrorCode errorCodeFromResult(int result);

EPCOMM_API std::string_view toString(ErrorCode code);

class EPCOMM_API Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

// Builds the uniform message "epcomm rank R: <operation>: <what>" and throws it. Inline, so
// backend plugins need nothing from libepcomm but the C ABI.
[[noreturn]] inline void throwError(ErrorCode code, int rank, std::string_view operation,
                                    std::string_view what) {
  throw Error(code, "epcomm rank " + std::to_string(rank) + ": " + std::string(operation) + ": " +
                        std::string(what));
}

// Runs fn; returns 0, or the result code of the exception it threw with its message in
// `message`. The one place exceptions become result codes (C API, plugin adapter).
template <typename Fn>
int catchToResult(std::string& message, Fn&& fn) noexcept {
  try {
    fn();
    return 0;
  } catch (const Error& e) {
    message = e.what();
    return toResultCode(e.code());
  } catch (const std::bad_alloc&) {
    message = "epcomm: out of memory";
    return toResultCode(ErrorCode::kSystemError);
  } catch (const std::exception& e) {
    message = std::string("epcomm: ") + e.what();
    return toResultCode(ErrorCode::kInternal);
  } catch (...) {
    message = "epcomm: unknown exception";
    return toResultCode(ErrorCode::kInternal);
  }
}

}  // namespace epcomm
