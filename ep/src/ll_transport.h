// How low-latency mode moves its messages: per call, every rank sends one block to every
// rank (itself included) and receives every rank's block into a fixed-capacity region of
// its own (region s at s * recvCapacity). send() starts a batch and receive() completes it,
// so dispatch can return after send() and a hook can receive later. One implementation per
// file: ll_transport_collective.cpp (all-to-all-v through the Communicator) today; a
// symmetric-window transport (put + signal into peers' regions) can replace it behind this
// interface.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "comm/communicator.h"

namespace epcomm::ep {

struct LlBatch {
  const std::byte* send = nullptr;
  std::vector<std::size_t> sendBytes;    // per destination
  std::vector<std::size_t> sendOffsets;  // per destination, from send
  std::byte* recv = nullptr;
  std::size_t recvCapacity = 0;  // bytes of each source's region
};

class LlTransport {
 public:
  virtual ~LlTransport() = default;
  // Starts moving `batch` on `channel` (0..3: two slots x dispatch/combine). The batch's
  // memory must stay untouched until receive(channel) returns.
  virtual void send(int channel, LlBatch batch) = 0;
  // Collective completion: on return recvBytes[s] bytes from source s lie at
  // recv + s * recvCapacity.
  virtual void receive(int channel, std::vector<std::size_t>& recvBytes) = 0;
};

std::unique_ptr<LlTransport> makeCollectiveLlTransport(Communicator& comm);

}  // namespace epcomm::ep
