// The C API on one rank: result codes keep NCCL's numbering, every bad call returns a code
// and leaves a message, and a communicator made through each init path works.
#include <gtest/gtest.h>

#include <cstdint>
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
    epcommCommPlacement_t where{-1, -1, -1, -1};
    EXPECT_EQ(epcommCommPlacement(comm, &where), epcommSuccess);
    EXPECT_EQ(where.localRank, 0);
    EXPECT_EQ(where.localSize, 1);
    EXPECT_EQ(where.host, 0);
    EXPECT_EQ(where.numHosts, 1);
    EXPECT_EQ(epcommCommPlacement(comm, nullptr), epcommInvalidArgument);
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

// Makes a one-rank communicator; null (after a skip message) when windows are not there.
epcommComm_t oneRank(long long timeoutMs = -1) {
  epcommConfig_t config = EPCOMM_CONFIG_INITIALIZER;
  config.timeoutMs = timeoutMs;
  epcommComm_t comm = nullptr;
  EXPECT_EQ(epcommCommInitFromEnv(&comm, &config), epcommSuccess) << epcommGetLastError(nullptr);
  return comm;
}

bool contains(const char* text, const std::string& part) {
  return std::string(text).find(part) != std::string::npos;
}

TEST(CApi, WindowOnOneRank) {
  epcommComm_t comm = oneRank();
  ASSERT_NE(comm, nullptr);
  epcommWindow_t win = nullptr;
  void* base = nullptr;
  const epcommResult_t rc = epcommWindowCreate(comm, 256, 2, &win, &base);
  if (rc == epcommInvalidUsage) {
    const std::string why = epcommGetLastError(comm);
    epcommCommDestroy(comm);
    GTEST_SKIP() << "backend without windows: " << why;
  }
  ASSERT_EQ(rc, epcommSuccess) << epcommGetLastError(comm);
  ASSERT_NE(win, nullptr);
  ASSERT_NE(base, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(base) % 64, 0u);
  const auto* bytes = static_cast<const unsigned char*>(base);
  int nonZero = 0;
  for (int i = 0; i < 256; ++i) nonZero += bytes[i] != 0;
  EXPECT_EQ(nonZero, 0);
  const char text[] = "put through the C API";
  EXPECT_EQ(epcommWindowPut(win, 0, 10, text, sizeof(text)), epcommSuccess);
  EXPECT_EQ(epcommWindowSignal(win, 0, 1, 3, epcommSignalAdd), epcommSuccess);
  EXPECT_EQ(epcommWindowSignal(win, 0, 1, 4, epcommSignalAdd), epcommSuccess);
  EXPECT_EQ(epcommWindowWaitSignal(win, 1, 7), epcommSuccess) << epcommGetLastError(comm);
  EXPECT_EQ(std::memcmp(bytes + 10, text, sizeof(text)), 0);
  uint64_t value = 0;
  EXPECT_EQ(epcommWindowReadSignal(win, 1, &value), epcommSuccess);
  EXPECT_EQ(value, 7u);
  EXPECT_EQ(epcommWindowSignal(win, 0, 1, 2, epcommSignalSet), epcommSuccess);
  EXPECT_EQ(epcommWindowReadSignal(win, 1, &value), epcommSuccess);
  EXPECT_EQ(value, 2u);
  // Bad calls: a code and a message naming the call; window and communicator stay usable.
  EXPECT_EQ(epcommWindowPut(win, 1, 0, text, 4), epcommInvalidArgument);
  EXPECT_TRUE(contains(epcommGetLastError(comm), "put")) << epcommGetLastError(comm);
  EXPECT_EQ(epcommWindowPut(win, 0, 250, text, 7), epcommInvalidArgument);
  EXPECT_EQ(epcommWindowSignal(win, 0, 2, 1, epcommSignalSet), epcommInvalidArgument);
  EXPECT_TRUE(contains(epcommGetLastError(comm), "slot 2")) << epcommGetLastError(comm);
  EXPECT_EQ(epcommWindowSignal(win, 0, 0, 1, static_cast<epcommSignalOp_t>(5)),
            epcommInvalidArgument);
  EXPECT_EQ(epcommWindowWaitSignal(win, -1, 0), epcommInvalidArgument);
  EXPECT_EQ(epcommWindowReadSignal(win, 0, nullptr), epcommInvalidArgument);
  void* self = nullptr;
  EXPECT_EQ(epcommWindowPeerData(win, 0, &self), epcommSuccess);
  EXPECT_EQ(self, base);
  EXPECT_EQ(epcommWindowPeerData(win, 1, &self), epcommInvalidArgument);
  EXPECT_TRUE(contains(epcommGetLastError(comm), "peer 1")) << epcommGetLastError(comm);
  EXPECT_EQ(self, nullptr);
  EXPECT_EQ(epcommWindowPeerData(win, 0, nullptr), epcommInvalidArgument);
  EXPECT_EQ(epcommWindowPut(nullptr, 0, 0, text, 1), epcommInvalidArgument);
  EXPECT_TRUE(contains(epcommGetLastError(nullptr), "win is NULL"));
  EXPECT_EQ(epcommWindowCreate(comm, 64, 1, nullptr, nullptr), epcommInvalidArgument);
  epcommWindow_t other = nullptr;
  EXPECT_EQ(epcommWindowCreate(comm, 64, -1, &other, nullptr), epcommInvalidArgument);
  EXPECT_EQ(other, nullptr);
  EXPECT_EQ(epcommWindowCreate(nullptr, 64, 1, &other, nullptr), epcommInvalidArgument);
  epcommResult_t async = epcommInternalError;
  EXPECT_EQ(epcommCommGetAsyncError(comm, &async), epcommSuccess);
  EXPECT_EQ(async, epcommSuccess);
  EXPECT_EQ(epcommWindowPut(win, 0, 0, text, 4), epcommSuccess);
  // Without localBase; then a window left for epcommCommDestroy to destroy.
  EXPECT_EQ(epcommWindowCreate(comm, 0, 1, &other, nullptr), epcommSuccess);
  EXPECT_EQ(epcommWindowDestroy(win), epcommSuccess);
  EXPECT_EQ(epcommWindowDestroy(nullptr), epcommSuccess);
  EXPECT_EQ(epcommCommDestroy(comm), epcommSuccess);
}

TEST(CApi, WaitNobodySignalsTimesOut) {
  epcommComm_t comm = oneRank(300);
  ASSERT_NE(comm, nullptr);
  epcommWindow_t win = nullptr;
  const epcommResult_t rc = epcommWindowCreate(comm, 64, 1, &win, nullptr);
  if (rc == epcommInvalidUsage) {
    epcommCommDestroy(comm);
    GTEST_SKIP() << "backend without windows";
  }
  ASSERT_EQ(rc, epcommSuccess) << epcommGetLastError(comm);
  EXPECT_EQ(epcommWindowWaitSignal(win, 0, 1), epcommTimeout);
  EXPECT_TRUE(contains(epcommGetLastError(comm), "waitSignal")) << epcommGetLastError(comm);
  epcommResult_t async = epcommSuccess;
  EXPECT_EQ(epcommCommGetAsyncError(comm, &async), epcommSuccess);
  EXPECT_EQ(async, epcommTimeout);
  EXPECT_EQ(epcommWindowPut(win, 0, 0, "x", 1), epcommInvalidUsage);  // aborted
  EXPECT_EQ(epcommWindowDestroy(win), epcommSuccess);                 // local release
  EXPECT_EQ(epcommCommDestroy(comm), epcommSuccess);
}

TEST(CApi, MemAllocIsRegisteredMemoryForCollectives) {
  epcommComm_t comm = oneRank();
  ASSERT_NE(comm, nullptr);
  void* ptr = nullptr;
  const epcommResult_t rc = epcommMemAlloc(comm, 4096, &ptr);
  if (rc == epcommInvalidUsage) {
    epcommCommDestroy(comm);
    GTEST_SKIP() << "backend without registered buffers";
  }
  ASSERT_EQ(rc, epcommSuccess) << epcommGetLastError(comm);
  ASSERT_NE(ptr, nullptr);
  auto* v = static_cast<float*>(ptr);
  for (int i = 0; i < 1024; ++i) v[i] = static_cast<float>(i);
  EXPECT_EQ(epcommAllReduce(v, v, 1024, epcommFloat32, epcommSum, comm), epcommSuccess);
  EXPECT_EQ(epcommAllGather(v, v + 512, 256, epcommFloat32, comm), epcommSuccess);
  EXPECT_EQ(v[767], 255.0f);
  EXPECT_EQ(v[1023], 1023.0f);
  float plain[4] = {};
  EXPECT_EQ(epcommMemFree(comm, plain), epcommInvalidArgument);
  EXPECT_TRUE(contains(epcommGetLastError(comm), "epcommMemAlloc")) << epcommGetLastError(comm);
  EXPECT_EQ(epcommMemAlloc(comm, 16, nullptr), epcommInvalidArgument);
  EXPECT_EQ(epcommMemAlloc(nullptr, 16, &ptr), epcommInvalidArgument);
  EXPECT_EQ(epcommMemFree(comm, v), epcommSuccess);
  EXPECT_EQ(epcommMemFree(comm, v), epcommInvalidArgument);  // freed already
  EXPECT_EQ(epcommMemFree(comm, nullptr), epcommSuccess);
  void* leftover = nullptr;
  EXPECT_EQ(epcommMemAlloc(comm, 0, &leftover), epcommSuccess);  // freed by CommDestroy
  EXPECT_NE(leftover, nullptr);
  EXPECT_EQ(epcommCommDestroy(comm), epcommSuccess);
}

}  // namespace
