// topology/'s errors, in its own terms: a kind, the operation, and what was wrong. topology/
// is a leaf (hwloc and the standard library only); comm/ turns these into epcomm::Error with
// the rank (comm/src/topology_bridge.h).
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace epcomm::topology {

enum class ErrorKind {
  kInvalidArgument,  // a setting matches nothing (an interface filter, an address)
  kSystemError,      // the OS or hwloc refused (getifaddrs, hwloc_topology_load, binding)
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string_view operation, std::string detail)
      : std::runtime_error(std::string(operation) + ": " + detail),
        kind_(kind),
        operation_(operation),
        detail_(std::move(detail)) {}
  ErrorKind kind() const noexcept { return kind_; }
  const std::string& operation() const noexcept { return operation_; }
  const std::string& detail() const noexcept { return detail_; }

 private:
  ErrorKind kind_;
  std::string operation_;
  std::string detail_;
};

[[noreturn]] inline void fail(ErrorKind kind, std::string_view operation, std::string detail) {
  throw Error(kind, operation, std::move(detail));
}

}  // namespace epcomm::topology
