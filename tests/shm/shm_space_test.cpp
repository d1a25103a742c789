// Errors at the edges of the shm backend, run under mpirun by ctest entries that set the
// scene (tests/shm/CMakeLists.txt):
//  - SmallDevShm: /dev/shm a small tmpfs (private mount namespace, as a container's 64 MiB):
//    the communicator's segment fails with the bytes asked, the space left and the
//    EPCOMM_BUFFSIZE that fits; with that set, an ep::Buffer window too large fails naming
//    the EP knob that sizes it. No SIGBUS, no bare errno.
//  - AcrossHosts: EPCOMM_BACKEND=shm with a rank in another IPC namespace ("host") says the
//    ranks span hosts.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "comm/communicator.h"
#include "ep/buffer.h"

namespace epcomm {
namespace {

void expectContains(const std::string& what, std::initializer_list<const char*> parts) {
  for (const char* p : parts) EXPECT_NE(what.find(p), std::string::npos) << p << " in: " << what;
}

TEST(ShmEdges, SmallDevShm) {
  try {
    auto comm = Communicator::initFromEnvironment();
    ADD_FAILURE() << "a 64 MiB segment fit an 8 MiB /dev/shm";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kSystemError) << e.what();
    expectContains(e.what(),
                   {"/dev/shm cannot hold", "bytes free", "needs",
                    "EPCOMM_BUFFSIZE (alias HCCL_BUFFSIZE, now 64 MiB)", "set EPCOMM_BUFFSIZE="});
  }
  // A buffer that fits; then the EP low-latency window (T = 128, hidden 7168) does not.
  setenv("EPCOMM_BUFFSIZE", "1", 1);
  auto comm = Communicator::initFromEnvironment();
  ep::BufferConfig config;
  config.normalBytes = std::size_t{1} << 20;
  config.llMaxTokens = 128;
  try {
    ep::Buffer buffer(*comm, config);
    std::vector<Bf16> x(7168);
    std::vector<std::int64_t> idx{0};
    ep::LowLatencyDispatchInputs in{x.data(), 1, 7168, idx.data(), 1, 8 * comm->size()};
    ep::LowLatencyDispatchOutputs out;
    buffer.lowLatencyDispatch(in, out);
    ADD_FAILURE() << "a low-latency window of T=128 x 7168 fit an 8 MiB /dev/shm";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kSystemError) << e.what();
    expectContains(e.what(), {"/dev/shm cannot hold a window", "bytes free",
                              "EPCOMM_EP_LL_MAX_TOKENS", "EPCOMM_EP_TRANSPORT=collective"});
  }
}

TEST(ShmEdges, AcrossHosts) {
  try {
    auto comm = Communicator::initFromEnvironment();
    ADD_FAILURE() << "shm accepted ranks on two hosts";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidUsage) << e.what();
    expectContains(e.what(), {"EPCOMM_BACKEND=shm", "span several hosts", "EPCOMM_BACKEND=auto"});
  }
}

}  // namespace
}  // namespace epcomm
