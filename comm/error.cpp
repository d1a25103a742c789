#include "comm/error.h"

#include <string>

namespace epcomm {

std::string_view toString(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kInvalidUsage: return "invalid usage";
    case ErrorCode::kTimeout: return "timeout";
    case ErrorCode::kPeerLost: return "peer lost";
    case ErrorCode::kSystemError: return "system error";
    case ErrorCode::kInternal: return "internal error";
  }
  return "unknown error";
}

ErrorCode errorCodeFromResult(int result) {
  switch (result) {
    case 2: return ErrorCode::kSystemError;
    case 4: return ErrorCode::kInvalidArgument;
    case 5: return ErrorCode::kInvalidUsage;
    case 6: return ErrorCode::kPeerLost;
    case 8: return ErrorCode::kTimeout;
    default: return ErrorCode::kInternal;
  }
}

}  // namespace epcomm
