// The client side of the TCP rendezvous (protocol in rendezvous_server.h): a Bootstrap whose
// allGather is one round at the rendezvous. Every socket operation has a deadline.
#pragma once

#include "comm/src/asio.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "comm/error.h"
#include "comm/src/bootstrap.h"
#include "comm/src/rendezvous_server.h"

namespace epcomm::rendezvous {

class RendezvousClient final : public Bootstrap {
 public:
  // Connects (retrying while nothing listens yet, until the connect timeout) and presents
  // the secret as `rank` of `size`. Throws epcomm::Error: kInvalidArgument (bad arguments,
  // refused by the rendezvous), kTimeout, kPeerLost.
  RendezvousClient(const RendezvousInfo& info, int rank, int size, std::int64_t connectTimeoutS);
  ~RendezvousClient() override;  // closes the connection
  RendezvousClient(const RendezvousClient&) = delete;
  RendezvousClient& operator=(const RendezvousClient&) = delete;

  // One round. The first round waits for the group to assemble (bounded by the connect
  // timeout, counted from the connect); later rounds wait at most the connect timeout.
  // After an error the connection is closed and every later call throws kPeerLost.
  void allGather(const void* send, void* recv, std::size_t bytes) override;
  // Closes the connection; the rendezvous sees this rank leave.
  void close() noexcept;

 private:
  using Clock = std::chrono::steady_clock;
  using AsioError = boost::system::error_code;

  void connect(Clock::time_point deadline);
  // Greets the rendezvous; false when it closed the connection without answering (a server
  // shedding connections under a flood, or one that has finished): the caller may retry.
  bool hello(Clock::time_point deadline);
  // Runs one asynchronous operation until it completes or `deadline` passes; on the deadline
  // the socket is closed and boost::asio::error::timed_out returned.
  template <class Start>
  AsioError await(Start start, Clock::time_point deadline);
  // Reads the error text of a failed reply and throws the matching error.
  [[noreturn]] void throwReplyError(const ReplyHeader& reply, Clock::time_point deadline);
  // Closes the connection and throws "epcomm rank R: bootstrap: <what>".
  [[noreturn]] void fail(ErrorCode code, const std::string& what);

  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket socket_;
  RendezvousInfo info_;
  std::string where_;  // "host:port"
  int rank_;
  int size_;
  std::chrono::seconds timeout_;
  Clock::time_point firstDeadline_;
  std::uint32_t round_ = 0;
  bool broken_ = false;
};

}  // namespace epcomm::rendezvous
