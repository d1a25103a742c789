// The backend conformance suite's shared pieces: buffers with a guard byte no collective may
// touch, labels for failures, and the fixture over the suite's communicator (gComm: ranks
// from mpirun, one process, or forked ranks; see conformance_main.cpp). One file per
// collective (all_reduce_test.cpp, ...), as gloo's tests; errors_test.cpp and
// window_test.cpp hold the cross-collective error and window suites.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "tests/common/test_values.h"

namespace epcomm::test {

extern Communicator* gComm;

using Bytes = std::vector<unsigned char>;

constexpr unsigned char kGuard = 0xA5;
// count elements plus one guard byte that no collective may touch.
inline Bytes buffer(std::size_t count, DataType d) {
  return Bytes(count * dtypeSize(d) + 1, kGuard);
}
inline bool guardIntact(const Bytes& b) {
  return b.back() == kGuard;
}

inline std::string label(DataType d, std::size_t n) {
  return std::string(toString(d)) + " n=" + std::to_string(n);
}

// Runs fn, expects an epcomm::Error with `code` whose message contains every fragment.
template <typename Fn>
void expectError(Fn&& fn, ErrorCode code, const std::vector<std::string>& fragments) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const std::string& f : fragments) {
      EXPECT_NE(std::string(e.what()).find(f), std::string::npos)
          << "message \"" << e.what() << "\" lacks \"" << f << "\"";
    }
  }
}

// Every rank runs the same sequence of collectives; checks are non-fatal so no rank leaves
// the sequence early.
class Conformance : public ::testing::Test {
 protected:
  Communicator& comm() { return *gComm; }
  int rank() { return gComm->rank(); }
  int size() { return gComm->size(); }
  // The communicator still works (after an error).
  void expectUsable() {
    int v = 1;
    comm().allReduce(&v, &v, 1, DataType::kI32, ReduceOp::kSum);
    EXPECT_EQ(v, size());
  }
};

}  // namespace epcomm::test
