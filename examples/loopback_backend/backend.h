// A single-rank backend: the smallest complete epcomm::Backend. A real third-party backend
// (an HCCL or NCCL wrapper) has the same shape: a constructor taking the create args,
// one method per collective, errors thrown as epcomm::Error.
#pragma once

#include <epcomm/comm/backend_plugin.h>

namespace example::loopback {

class Backend final : public epcomm::Backend {
 public:
  explicit Backend(const epcommBackendCreateArgs& args);

  int rank() const override { return 0; }
  int size() const override { return 1; }
  void abort() override {}
  std::unique_ptr<epcomm::Backend> split(int color, int key) override;

  void allReduce(const void* send, void* recv, size_t count, int dtype, int op) override;
  void allGather(const void* send, void* recv, size_t sendCount, int dtype) override;
  void allGatherV(const void* send, size_t sendCount, void* recv, const size_t* recvCounts,
                  const size_t* recvDispls, int dtype) override;
  void reduceScatter(const void* send, void* recv, size_t recvCount, int dtype, int op) override;
  void broadcast(const void* send, void* recv, size_t count, int dtype, int root) override;
  void barrier() override {}
  void allToAll(const void* send, void* recv, size_t countPerRank, int dtype) override;
  void allToAllV(const void* send, const size_t* sendCounts, const size_t* sendDispls, void* recv,
                 const size_t* recvCounts, const size_t* recvDispls, int dtype) override;
  void send(const void* buf, size_t count, int dtype, int peer, int tag) override;
  void recv(void* buf, size_t count, int dtype, int peer, int tag) override;
};

}  // namespace example::loopback
