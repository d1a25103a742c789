#include "comm/src/rendezvous_client.h"
#include "comm/src/asio.h"

#include <fcntl.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <optional>
#include <thread>

#include "comm/log.h"

namespace epcomm::rendezvous {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// Extra time a rank waits past the connect timeout for the rendezvous's own verdict (which
// names the missing ranks) before giving up on its own.
constexpr auto kReplyGrace = std::chrono::seconds(2);
constexpr auto kMinBackoff = std::chrono::milliseconds(10);
constexpr auto kMaxBackoff = std::chrono::milliseconds(100);

ErrorCode codeOf(std::uint32_t status) {
  switch (static_cast<ReplyStatus>(status)) {
    case ReplyStatus::kRefused: return ErrorCode::kInvalidArgument;
    case ReplyStatus::kTimeout: return ErrorCode::kTimeout;
    default: return ErrorCode::kPeerLost;
  }
}

}  // namespace

RendezvousClient::RendezvousClient(const RendezvousInfo& info, int rank, int size,
                                   std::int64_t connectTimeoutS)
    : socket_(io_),
      info_(info),
      where_(fmt::format("{}:{}", info.host, info.port)),
      rank_(rank),
      size_(size),
      timeout_(connectTimeoutS) {
  if (size <= 0 || size > kMaxGroupSize || rank < 0 || rank >= size) {
    throwError(ErrorCode::kInvalidArgument, rank, "bootstrap",
               fmt::format("rank {} of size {} is out of range (size must be in [1, {}], rank in "
                           "[0, size))",
                           rank, size, kMaxGroupSize));
  }
  if (connectTimeoutS <= 0) {
    throwError(ErrorCode::kInvalidArgument, rank, "bootstrap",
               fmt::format("connect timeout must be at least 1 s, got {}", connectTimeoutS));
  }
  const Clock::time_point start = Clock::now();
  firstDeadline_ = start + timeout_ + kReplyGrace;
  // A rendezvous under a flood may shed this connection before reading its hello: connect
  // again until the connect deadline.
  auto backoff = std::chrono::duration_cast<Clock::duration>(kMinBackoff);
  for (int attempt = 1;; ++attempt) {
    connect(start + timeout_);
    if (hello(firstDeadline_)) break;
    if (Clock::now() + backoff >= start + timeout_) {
      fail(ErrorCode::kPeerLost,
           fmt::format("the rendezvous at {} closed the connection without answering, {} times "
                       "within {} s; it has finished or is not an epcomm rendezvous",
                       where_, attempt, timeout_.count()));
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min<Clock::duration>(backoff * 2, kMaxBackoff);
  }
  log().debug("bootstrap: rank {} of {} joined the rendezvous {}", rank_, size_, where_);
}

RendezvousClient::~RendezvousClient() {
  close();
}

void RendezvousClient::close() noexcept {
  AsioError ignored;
  if (socket_.is_open()) {
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }
}

template <class Start>
RendezvousClient::AsioError RendezvousClient::await(Start start, Clock::time_point deadline) {
  std::optional<AsioError> result;
  start([&result](const AsioError& ec, auto&&...) { result = ec; });
  io_.restart();
  while (!result && Clock::now() < deadline) io_.run_one_until(deadline);
  if (!result) {
    AsioError ignored;
    socket_.close(ignored);  // cancels the operation; its handler then runs with an error
    io_.restart();
    io_.run();
    return asio::error::timed_out;
  }
  return *result;
}

void RendezvousClient::fail(ErrorCode code, const std::string& what) {
  broken_ = true;
  close();
  throwError(code, rank_, "bootstrap", what);
}

void RendezvousClient::connect(Clock::time_point deadline) {
  AsioError ec;
  const asio::ip::address address = asio::ip::make_address(info_.host, ec);
  if (ec) {
    throwError(
        ErrorCode::kInvalidArgument, rank_, "bootstrap",
        fmt::format("rendezvous host \"{}\" is not a numeric IPv4 or IPv6 address", info_.host));
  }
  const tcp::endpoint endpoint(address, info_.port);
  auto backoff = std::chrono::duration_cast<Clock::duration>(kMinBackoff);
  for (int attempt = 1;; ++attempt) {
    AsioError ignored;
    socket_.close(ignored);
    socket_.open(endpoint.protocol(), ec);
    if (ec) {
      throwError(ErrorCode::kSystemError, rank_, "bootstrap",
                 "cannot create a socket: " + ec.message());
    }
    fcntl(socket_.native_handle(), F_SETFD, FD_CLOEXEC);
    ec = await([&](auto handler) { socket_.async_connect(endpoint, handler); }, deadline);
    if (!ec) break;
    // Nothing listens yet (or the network is not ready): try again until the deadline.
    if (ec == asio::error::timed_out || Clock::now() + backoff >= deadline) {
      fail(ErrorCode::kTimeout,
           fmt::format("could not connect to the rendezvous at {} within {} s ({} attempts, last: "
                       "{})",
                       where_, timeout_.count(), attempt,
                       ec == asio::error::timed_out ? "no answer" : ec.message()));
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min<Clock::duration>(backoff * 2, kMaxBackoff);
  }
  AsioError ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
}

bool RendezvousClient::hello(Clock::time_point deadline) {
  Hello h;
  std::copy(std::begin(info_.secret), std::end(info_.secret), h.secret);
  h.rank = rank_;
  h.size = size_;
  const auto out = encodeHello(h);
  AsioError ec = await(
      [&](auto handler) { asio::async_write(socket_, asio::buffer(out), handler); }, deadline);
  if (ec == asio::error::timed_out)
    fail(ErrorCode::kTimeout, "timed out greeting the rendezvous at " + where_);
  if (ec) return false;  // closed before the hello went out (shed, or finished)
  std::array<unsigned char, kReplyHeaderBytes> in{};
  ec = await([&](auto handler) { asio::async_read(socket_, asio::buffer(in), handler); }, deadline);
  if (ec == asio::error::timed_out) {
    fail(ErrorCode::kTimeout, fmt::format("the rendezvous at {} did not answer the hello", where_));
  }
  if (ec) return false;
  const ReplyHeader reply = decodeReplyHeader(in.data());
  if (reply.magic != kReplyMagic) {
    fail(ErrorCode::kPeerLost, where_ + " is not an epcomm rendezvous (unexpected answer)");
  }
  if (reply.status != static_cast<std::uint32_t>(ReplyStatus::kOk))
    throwReplyError(reply, deadline);
  if (reply.bytes != 0) fail(ErrorCode::kPeerLost, "malformed hello answer from " + where_);
  return true;
}

void RendezvousClient::throwReplyError(const ReplyHeader& reply, Clock::time_point deadline) {
  if (reply.bytes > kMaxReplyMessageBytes) {
    fail(ErrorCode::kPeerLost, "malformed error reply from the rendezvous at " + where_);
  }
  std::string message(static_cast<std::size_t>(reply.bytes), '\0');
  const AsioError ec = await(
      [&](auto handler) { asio::async_read(socket_, asio::buffer(message), handler); }, deadline);
  if (ec) message = fmt::format("the rendezvous at {} reported a failure without a reason", where_);
  fail(codeOf(reply.status), message);
}

void RendezvousClient::allGather(const void* send, void* recv, std::size_t bytes) {
  if (broken_) {
    throwError(ErrorCode::kPeerLost, rank_, "bootstrap",
               "the rendezvous connection was closed by an earlier error");
  }
  if (bytes > kMaxBootstrapBytes) {
    throwError(ErrorCode::kInvalidArgument, rank_, "bootstrap",
               fmt::format("all-gather of {} bytes per rank exceeds the limit of {}", bytes,
                           kMaxBootstrapBytes));
  }
  if (bytes > 0 && (send == nullptr || recv == nullptr)) {
    throwError(ErrorCode::kInvalidArgument, rank_, "bootstrap", "null buffer in all-gather");
  }
  // Round 0 also waits for the group to assemble: bounded by the connect timeout from the
  // connect (a late first call still gets the grace to hear the rendezvous's verdict).
  const Clock::time_point deadline = round_ == 0
                                         ? std::max(firstDeadline_, Clock::now() + kReplyGrace)
                                         : Clock::now() + timeout_ + kReplyGrace;
  const auto header = encodeRoundHeader({kRoundMagic, round_, bytes});
  const std::array<asio::const_buffer, 2> out = {asio::buffer(header), asio::buffer(send, bytes)};
  AsioError ec = await([&](auto handler) { asio::async_write(socket_, out, handler); }, deadline);
  if (ec == asio::error::timed_out) {
    fail(ErrorCode::kTimeout,
         fmt::format("timed out sending round {} to the rendezvous at {}", round_, where_));
  }
  if (ec) {
    fail(ErrorCode::kPeerLost, fmt::format("lost the rendezvous at {} while sending round {}: {}",
                                           where_, round_, ec.message()));
  }

  std::array<unsigned char, kReplyHeaderBytes> in{};
  ec = await([&](auto handler) { asio::async_read(socket_, asio::buffer(in), handler); }, deadline);
  if (ec == asio::error::timed_out) {
    fail(ErrorCode::kTimeout,
         round_ == 0
             ? fmt::format("timed out after {} s waiting for all {} ranks to arrive at the "
                           "rendezvous {} (it did not report which ranks are missing)",
                           timeout_.count(), size_, where_)
             : fmt::format("timed out after {} s waiting for round {} of the all-gather at the "
                           "rendezvous {}",
                           timeout_.count(), round_, where_));
  }
  if (ec) {
    fail(ErrorCode::kPeerLost,
         fmt::format("the rendezvous at {} closed the connection during round {} ({})", where_,
                     round_, ec.message()));
  }
  const ReplyHeader reply = decodeReplyHeader(in.data());
  if (reply.magic != kReplyMagic) {
    fail(ErrorCode::kPeerLost, "malformed reply from the rendezvous at " + where_);
  }
  if (reply.status != static_cast<std::uint32_t>(ReplyStatus::kOk))
    throwReplyError(reply, deadline);
  const std::uint64_t expected = static_cast<std::uint64_t>(size_) * bytes;
  if (reply.bytes != expected) {
    fail(ErrorCode::kPeerLost,
         fmt::format("the rendezvous at {} answered round {} with {} bytes, expected {}", where_,
                     round_, reply.bytes, expected));
  }
  if (expected > 0) {
    ec = await(
        [&](auto handler) {
          asio::async_read(socket_, asio::buffer(recv, static_cast<std::size_t>(expected)),
                           handler);
        },
        deadline);
    if (ec == asio::error::timed_out) {
      fail(ErrorCode::kTimeout,
           fmt::format("timed out receiving round {} from the rendezvous at {}", round_, where_));
    }
    if (ec) {
      fail(ErrorCode::kPeerLost,
           fmt::format("lost the rendezvous at {} while receiving round {}: {}", where_, round_,
                       ec.message()));
    }
  }
  ++round_;
}

}  // namespace epcomm::rendezvous

namespace epcomm {

std::unique_ptr<Bootstrap> connectRendezvous(const RendezvousInfo& info, int rank, int size,
                                             std::int64_t connectTimeoutS) {
  return std::make_unique<rendezvous::RendezvousClient>(info, rank, size, connectTimeoutS);
}

}  // namespace epcomm
