// The C API on one rank: result codes keep NCCL's numbering, every bad call returns a code
// and leaves a message, and a communicator made through each init path works.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "comm/epcomm.h"

namespace {

TEST(CApi, NumberingFollowsNccl) {
  EXPECT_EQ(epcommSuccess, 0);
  EXPECT_EQ(epcommInvalidArgument, 4);
  EXPECT_EQ(epcommInvalidUsage, 5);
  EXPECT_EQ(epcommRemoteError, 6);
  EXPECT_EQ(epcommInProgress, 7);
  EXPECT_EQ(epcommTimeout, 8);
  EXPECT_EQ(epcommSum, 0);
  EXPECT_EQ(epcommAvg, 4);
  EXPECT_EQ(epcommInt8, 0);
  EXPECT_EQ(epcommFloat16, 6);
  EXPECT_EQ(epcommFloat32, 7);
  EXPECT_EQ(epcommBfloat16, 9);
  EXPECT_EQ(sizeof(epcommUniqueId), 128u);
  int version = 0;
  ASSERT_EQ(epcommGetVersion(&version), epcommSuccess);
  EXPECT_EQ(version, EPCOMM_VERSION_CODE);
  EXPECT_STRNE(epcommGetErrorString(epcommTimeout), epcommGetErrorString(epcommSuccess));
  EXPECT_STREQ(epcommGetErrorString(static_cast<epcommResult_t>(99)), "unknown result code");
}

TEST(CApi, NullArgumentsAreErrors) {
  EXPECT_EQ(epcommGetVersion(nullptr), epcommInvalidArgument);
  EXPECT_EQ(epcommAllReduce(nullptr, nullptr, 0, epcommFloat32, epcommSum, nullptr),
            epcommInvalidArgument);
  EXPECT_NE(std::string(epcommGetLastError(nullptr)).find("comm is NULL"), std::string::npos);
  EXPECT_EQ(epcommCommInitFromEnv(nullptr, nullptr), epcommInvalidArgument);
  EXPECT_EQ(epcommCommDestroy(nullptr), epcommSuccess);
}

TEST(CApi, ConfigMustBeInitialised) {
  epcommComm_t comm = nullptr;
  epcommConfig_t config{};
  EXPECT_EQ(epcommCommInitFromEnv(&comm, &config), epcommInvalidArgument);
  EXPECT_EQ(comm, nullptr);
  EXPECT_NE(std::string(epcommGetLastError(nullptr)).find("EPCOMM_CONFIG_INITIALIZER"),
            std::string::npos);
}

TEST(CApi, OneRankThroughEveryInitPath) {
  epcommConfig_t config = EPCOMM_CONFIG_INITIALIZER;
  epcommComm_t comms[3] = {};
  ASSERT_EQ(epcommCommInitFromEnv(&comms[0], &config), epcommSuccess)
      << epcommGetLastError(nullptr);
  epcommUniqueId id;
  ASSERT_EQ(epcommGetUniqueId(&id), epcommSuccess) << epcommGetLastError(nullptr);
  ASSERT_EQ(epcommCommInitRank(&comms[1], 1, id, 0), epcommSuccess) << epcommGetLastError(nullptr);
  auto copy = [](void*, const void* send, void* recv, size_t bytes) {
    std::memcpy(recv, send, bytes);
    return 0;
  };
  ASSERT_EQ(epcommCommInitRankOob(&comms[2], 1, 0, copy, nullptr, &config), epcommSuccess)
      << epcommGetLastError(nullptr);
  for (epcommComm_t comm : comms) {
    int n = 0, r = -1;
    EXPECT_EQ(epcommCommCount(comm, &n), epcommSuccess);
    EXPECT_EQ(epcommCommUserRank(comm, &r), epcommSuccess);
    EXPECT_EQ(n, 1);
    EXPECT_EQ(r, 0);
    float v[3] = {1.5f, 2.5f, -3.0f};
    EXPECT_EQ(epcommAllReduce(v, v, 3, epcommFloat32, epcommAvg, comm), epcommSuccess);
    EXPECT_EQ(v[2], -3.0f);
    // Bad calls: a code and a message naming the operation; the communicator stays usable.
    EXPECT_EQ(epcommAllReduce(v, v, 3, static_cast<epcommDataType_t>(3), epcommSum, comm),
              epcommInvalidArgument);
    EXPECT_NE(std::string(epcommGetLastError(comm)).find("allReduce"), std::string::npos);
    EXPECT_EQ(epcommBroadcast(v, v, 3, epcommFloat32, 1, comm), epcommInvalidArgument);
    EXPECT_EQ(epcommSend(v, 3, epcommFloat32, 0, comm), epcommInvalidArgument);
    epcommResult_t async = epcommInternalError;
    EXPECT_EQ(epcommCommGetAsyncError(comm, &async), epcommSuccess);
    EXPECT_EQ(async, epcommSuccess);
    EXPECT_EQ(epcommBarrier(comm), epcommSuccess);
  }
  epcommComm_t child = nullptr;
  EXPECT_EQ(epcommCommSplit(comms[0], 0, 0, &child, nullptr), epcommSuccess);
  ASSERT_NE(child, nullptr);
  epcommComm_t none = reinterpret_cast<epcommComm_t>(1);
  EXPECT_EQ(epcommCommSplit(comms[0], -1, 0, &none, nullptr), epcommSuccess);
  EXPECT_EQ(none, nullptr);
  EXPECT_EQ(epcommCommDestroy(child), epcommSuccess);
  EXPECT_EQ(epcommCommAbort(comms[2]), epcommSuccess);
  EXPECT_EQ(epcommCommDestroy(comms[1]), epcommSuccess);
  EXPECT_EQ(epcommCommDestroy(comms[0]), epcommSuccess);
}

}  // namespace
