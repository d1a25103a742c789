// The low-latency transport over the Communicator's collectives: send() records the batch;
// receive() exchanges the block sizes (all-to-all) and the blocks (all-to-all-v) into the
// fixed regions. Every rank must complete channels in the same order (they are collectives).
#include <array>
#include <string>

#include "comm/error.h"
#include "ep/src/ll_transport.h"

namespace epcomm::ep {
namespace {

class CollectiveLlTransport final : public LlTransport {
 public:
  explicit CollectiveLlTransport(Communicator& comm) : comm_(comm) {}

  void send(int channel, LlBatch batch) override {
    pending_.at(static_cast<std::size_t>(channel)) = std::move(batch);
    posted_.at(static_cast<std::size_t>(channel)) = true;
  }

  void receive(int channel, std::vector<std::size_t>& recvBytes) override {
    const auto c = static_cast<std::size_t>(channel);
    if (!posted_.at(c)) {
      throwError(ErrorCode::kInternal, comm_.rank(), "ep low-latency transport",
                 "receive on channel " + std::to_string(channel) + " without a send");
    }
    posted_[c] = false;
    const LlBatch& b = pending_[c];
    const int R = comm_.size();
    recvBytes.assign(R, 0);
    comm_.allToAll(b.sendBytes.data(), recvBytes.data(), 1, DataType::kI64);
    std::vector<std::size_t> recvDispls(R);
    for (int s = 0; s < R; ++s) {
      recvDispls[s] = static_cast<std::size_t>(s) * b.recvCapacity;
      if (recvBytes[s] > b.recvCapacity) {
        throwError(ErrorCode::kInternal, comm_.rank(), "ep low-latency transport",
                   "block from rank " + std::to_string(s) + " exceeds its region");
      }
    }
    comm_.allToAllV(b.send, b.sendBytes.data(), b.sendOffsets.data(), b.recv, recvBytes.data(),
                    recvDispls.data(), DataType::kU8);
  }

 private:
  Communicator& comm_;
  std::array<LlBatch, 4> pending_;
  std::array<bool, 4> posted_{};
};

}  // namespace

std::unique_ptr<LlTransport> makeCollectiveLlTransport(Communicator& comm) {
  return std::make_unique<CollectiveLlTransport>(comm);
}

}  // namespace epcomm::ep
