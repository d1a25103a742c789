#include "backend.h"

#include <cstring>

#include <epcomm/comm/error.h>
#include <epcomm/comm/types.h>

namespace example::loopback {
namespace {

size_t bytesOf(size_t count, int dtype) {
  return count * epcomm::dtypeSize(static_cast<epcomm::DataType>(dtype));
}

// One rank: the result of any reduction (avg included) is the input itself.
void copy(const void* send, void* recv, size_t bytes) {
  if (bytes && send != recv) std::memmove(recv, send, bytes);
}

}  // namespace

Backend::Backend(const epcommBackendCreateArgs& args) {
  if (args.size != 1) {
    epcomm::throwError(
        epcomm::ErrorCode::kInvalidUsage, args.rank, "init",
        "the loopback backend serves exactly one rank, not " + std::to_string(args.size));
  }
}

std::unique_ptr<epcomm::Backend> Backend::split(int color, int key) {
  if (color < 0) return nullptr;
  epcommBackendCreateArgs args{};
  args.size = 1;
  return std::make_unique<Backend>(args);
}

void Backend::allReduce(const void* send, void* recv, size_t count, int dtype, int op) {
  copy(send, recv, bytesOf(count, dtype));
}
void Backend::allGather(const void* send, void* recv, size_t sendCount, int dtype) {
  copy(send, recv, bytesOf(sendCount, dtype));
}
void Backend::allGatherV(const void* send, size_t sendCount, void* recv, const size_t* recvCounts,
                         const size_t* recvDispls, int dtype) {
  copy(send, static_cast<char*>(recv) + bytesOf(recvDispls[0], dtype), bytesOf(sendCount, dtype));
}
void Backend::reduceScatter(const void* send, void* recv, size_t recvCount, int dtype, int op) {
  copy(send, recv, bytesOf(recvCount, dtype));
}
void Backend::broadcast(const void* send, void* recv, size_t count, int dtype, int root) {
  copy(send, recv, bytesOf(count, dtype));
}
void Backend::allToAll(const void* send, void* recv, size_t countPerRank, int dtype) {
  copy(send, recv, bytesOf(countPerRank, dtype));
}
void Backend::allToAllV(const void* send, const size_t* sendCounts, const size_t* sendDispls,
                        void* recv, const size_t* recvCounts, const size_t* recvDispls, int dtype) {
  if (send == recv) return;  // in place: the block stays where it is
  copy(static_cast<const char*>(send) + bytesOf(sendDispls[0], dtype),
       static_cast<char*>(recv) + bytesOf(recvDispls[0], dtype), bytesOf(recvCounts[0], dtype));
}
void Backend::send(const void*, size_t, int, int peer, int) {
  epcomm::throwError(epcomm::ErrorCode::kInvalidUsage, 0, "send",
                     "the loopback backend has no peers");
}
void Backend::recv(void*, size_t, int, int peer, int) {
  epcomm::throwError(epcomm::ErrorCode::kInvalidUsage, 0, "recv",
                     "the loopback backend has no peers");
}

}  // namespace example::loopback
