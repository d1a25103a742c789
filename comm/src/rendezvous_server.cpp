#include "comm/src/rendezvous_server.h"

#include "comm/src/asio.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <new>
#include <string>
#include <unordered_set>
#include <vector>

#include "comm/error.h"
#include "comm/log.h"
#include "comm/src/rendezvous_admission.h"
#include "topology/topology.h"

namespace epcomm::rendezvous {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using AsioError = boost::system::error_code;

// A connection told to go away is closed this long after its last reply, read or not.
constexpr auto kCloseGrace = std::chrono::seconds(2);
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(50);

bool secretEqual(const unsigned char* a, const unsigned char* b) {
  unsigned char diff = 0;  // constant time: no early exit
  for (std::size_t i = 0; i < kSecretBytes; ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

void setCloseOnExec(int fd) {
  const int flags = fcntl(fd, F_GETFD);
  if (flags >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

struct Outgoing {
  std::array<unsigned char, kReplyHeaderBytes> header{};
  std::shared_ptr<const std::vector<unsigned char>> payload;  // round data, or
  std::string message;                                        // an error text
  bool closeAfter = false;
};

struct Connection {
  explicit Connection(tcp::socket s) : socket(std::move(s)), timer(socket.get_executor()) {}
  tcp::socket socket;
  asio::steady_timer timer;  // handshake deadline, then close grace
  std::string peer;
  std::array<unsigned char, kHelloBytes> hello{};
  std::array<unsigned char, kRoundHeaderBytes> header{};
  std::deque<Outgoing> outbox;  // front() is being written while `writing`
  bool writing = false;
  bool closed = false;
  int rank = -1;           // >= 0 once the hello was accepted
  std::uint64_t id = 0;    // for Admission
  bool announced = false;  // sent the header of the current round
};
using ConnectionPtr = std::shared_ptr<Connection>;

// Keeps what a forked child inherited (and must neither run nor free) reachable, so leak
// checkers stay quiet. Never destroyed.
void abandon(std::shared_ptr<void> object) {
  static std::mutex* mutex = new std::mutex;
  static auto* store = new std::vector<std::shared_ptr<void>>;
  std::lock_guard<std::mutex> lock(*mutex);
  store->push_back(std::move(object));
}

}  // namespace

// All state below the constructor is touched by the io thread only. Handlers capture `this`
// raw: the io_context is a member, so no handler runs after the Impl is gone.
class RendezvousServer::Impl {
 public:
  Impl(const RendezvousInfo& info, std::int64_t connectTimeoutS);
  ~Impl();
  void start();  // arms the group deadline and the accept loop; before the thread starts
  void run() noexcept;
  void stop() noexcept { io_.stop(); }
  bool finished() const noexcept { return done_.load(std::memory_order_acquire); }
  const RendezvousInfo& address() const noexcept { return address_; }

 private:
  void accept();
  void onAccept(const AsioError& ec, tcp::socket socket);
  void onHello(const ConnectionPtr& c, const AsioError& ec);
  void refuse(const ConnectionPtr& c, const std::string& why);
  void readHeader(const ConnectionPtr& c);
  void onHeader(const ConnectionPtr& c, const AsioError& ec);
  void onPayload(const ConnectionPtr& c, const AsioError& ec);
  void completeRound();
  void memberGone(const ConnectionPtr& c, const AsioError& ec);
  void dropMember(const ConnectionPtr& c, const std::string& what);
  void failGroup(ReplyStatus status, const std::string& what);
  void onGroupDeadline(const AsioError& ec);
  void send(const ConnectionPtr& c, Outgoing out);
  void writeNext(const ConnectionPtr& c);
  void sendErrorAndClose(const ConnectionPtr& c, ReplyStatus status, const std::string& what);
  void closeConnection(const ConnectionPtr& c);
  void maybeFinish();
  std::vector<int> missingRanks() const;
  // A warning about a pending connection, at most once a second (LogLimiter).
  void warnPending(const std::string& line);
  // Accepts and closes one connection when out of descriptors, with the one kept in reserve,
  // so the backlog drains instead of holding the legit ranks back.
  void shedOneAtDescriptorLimit();

  asio::io_context io_;
  tcp::acceptor acceptor_;
  asio::steady_timer groupTimer_;
  asio::steady_timer acceptRetryTimer_;
  RendezvousInfo address_;
  std::string where_;  // "host:port" for messages
  std::chrono::seconds connectTimeout_;
  std::chrono::seconds handshakeTimeout_;
  std::atomic<bool> done_{false};

  std::unordered_set<ConnectionPtr> connections_;  // every open connection
  Admission admission_;                            // what is pending before a hello
  LogLimiter pendingLog_;
  std::uint64_t nextId_ = 1;
  int spareFd_ = -1;                    // a descriptor kept in reserve (shedOneAtDescriptorLimit)
  std::vector<ConnectionPtr> members_;  // by rank; sized by the first hello
  int size_ = 0;
  int arrived_ = 0;
  int liveMembers_ = 0;
  bool assembled_ = false;
  bool failed_ = false;
  bool deadlinePassed_ = false;
  bool finishing_ = false;
  int leftRank_ = -1;  // a member that left between rounds: no further round can complete
  std::uint32_t round_ = 0;
  int roundArrived_ = 0;
  bool roundOpen_ = false;  // some member announced the current round
  std::uint64_t roundBytes_ = 0;
  int roundFirstRank_ = -1;
  std::shared_ptr<std::vector<unsigned char>> roundData_;
};

RendezvousServer::Impl::Impl(const RendezvousInfo& info, std::int64_t connectTimeoutS)
    : acceptor_(io_),
      groupTimer_(io_),
      acceptRetryTimer_(io_),
      address_(info),
      connectTimeout_(connectTimeoutS),
      handshakeTimeout_(std::min<std::int64_t>(connectTimeoutS, kHandshakeTimeoutS)) {
  AsioError ec;
  const asio::ip::address address = asio::ip::make_address(info.host, ec);
  if (ec) {
    throwError(
        ErrorCode::kInvalidArgument, 0, "bootstrap",
        fmt::format("cannot listen on \"{}\": not a numeric IPv4 or IPv6 address", info.host));
  }
  const tcp::endpoint endpoint(address, info.port);
  const std::string target = fmt::format("{}:{}", info.host, info.port);
  const auto check = [&](const char* step) {
    if (ec) {
      throwError(ErrorCode::kSystemError, 0, "bootstrap",
                 fmt::format("rendezvous cannot listen on {}: {}: {}", target, step, ec.message()));
    }
  };
  acceptor_.open(endpoint.protocol(), ec);
  check("socket");
  setCloseOnExec(acceptor_.native_handle());
  acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  check("setsockopt");
  acceptor_.bind(endpoint, ec);
  check("bind");
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  check("listen");
  const tcp::endpoint local = acceptor_.local_endpoint(ec);
  check("getsockname");
  address_.host = local.address().to_string();
  address_.port = local.port();
  where_ = fmt::format("{}:{}", address_.host, address_.port);
}

RendezvousServer::Impl::~Impl() {
  // Close every socket before the io_context destroys the handlers that own them.
  AsioError ignored;
  acceptor_.close(ignored);
  for (const ConnectionPtr& c : connections_) c->socket.close(ignored);
  if (spareFd_ >= 0) ::close(spareFd_);
}

void RendezvousServer::Impl::start() {
  spareFd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  groupTimer_.expires_after(connectTimeout_);
  groupTimer_.async_wait([this](const AsioError& ec) { onGroupDeadline(ec); });
  accept();
}

void RendezvousServer::Impl::run() noexcept {
  for (;;) {
    try {
      io_.run();
      break;
    } catch (const std::exception& e) {  // a handler failed (bad_alloc, ...): keep serving
      log().error("bootstrap: rendezvous {}: {}", where_, e.what());
    } catch (...) {
      log().error("bootstrap: rendezvous {}: unknown exception", where_);
    }
  }
  done_.store(true, std::memory_order_release);
}

void RendezvousServer::Impl::accept() {
  acceptor_.async_accept(
      [this](const AsioError& ec, tcp::socket socket) { onAccept(ec, std::move(socket)); });
}

void RendezvousServer::Impl::onAccept(const AsioError& ec, tcp::socket socket) {
  if (finishing_ || ec == asio::error::operation_aborted) return;
  if (ec == asio::error::no_descriptors || ec.value() == ENFILE) {
    warnPending(
        fmt::format("bootstrap: rendezvous {}: out of descriptors ({}): shedding the "
                    "oldest waiting connection",
                    where_, ec.message()));
    shedOneAtDescriptorLimit();
  }
  if (ec) {  // e.g. out of file descriptors: try again shortly, do not spin
    warnPending(fmt::format("bootstrap: rendezvous {}: accept failed: {}", where_, ec.message()));
    acceptRetryTimer_.expires_after(kAcceptRetryDelay);
    acceptRetryTimer_.async_wait([this](const AsioError& e) {
      if (!e && !finishing_) accept();
    });
    return;
  }
  auto c = std::make_shared<Connection>(std::move(socket));
  AsioError ignored;
  setCloseOnExec(c->socket.native_handle());
  c->socket.set_option(tcp::no_delay(true), ignored);
  const tcp::endpoint remote = c->socket.remote_endpoint(ignored);
  c->peer = fmt::format("{}:{}", remote.address().to_string(), remote.port());
  c->id = nextId_++;
  connections_.insert(c);
  if (const std::uint64_t shed = admission_.admit(c->id, remote.address().to_string())) {
    for (const ConnectionPtr& found : connections_) {
      if (found->id != shed) continue;
      const ConnectionPtr other = found;  // closeConnection erases the set's own copy
      warnPending(fmt::format(
          "bootstrap: rendezvous {}: closing a connection from {} that sent "
          "no hello yet: {} are waiting (at most {}, {} per address)",
          where_, other->peer, admission_.pending(), kMaxPending, kMaxPendingPerSource));
      closeConnection(other);
      break;
    }
  }
  c->timer.expires_after(handshakeTimeout_);
  c->timer.async_wait([this, c](const AsioError& e) {
    if (e || c->closed || c->rank >= 0) return;
    warnPending(fmt::format(
        "bootstrap: rendezvous {}: closing connection from {}: no valid hello within {} s", where_,
        c->peer, handshakeTimeout_.count()));
    closeConnection(c);
  });
  asio::async_read(c->socket, asio::buffer(c->hello),
                   [this, c](const AsioError& e, std::size_t) { onHello(c, e); });
  accept();
}

void RendezvousServer::Impl::onHello(const ConnectionPtr& c, const AsioError& ec) {
  if (c->closed) return;
  admission_.leave(c->id);  // no longer waiting for its hello
  if (ec) {
    log().debug("bootstrap: rendezvous {}: {} left before its hello: {}", where_, c->peer,
                ec.message());
    closeConnection(c);
    return;
  }
  const Hello h = decodeHello(c->hello.data());
  if (h.magic != kHelloMagic) {
    warnPending(fmt::format(
        "bootstrap: rendezvous {}: closing connection from {}: not an epcomm rendezvous hello",
        where_, c->peer));
    closeConnection(c);
    return;
  }
  if (h.version != kProtocolVersion) {
    return refuse(c, fmt::format("protocol version {}, this rendezvous speaks version {}",
                                 h.version, kProtocolVersion));
  }
  if (!secretEqual(h.secret, address_.secret)) {
    return refuse(c, "wrong secret (the UniqueId or EPCOMM_INIT_SECRET does not match)");
  }
  const std::string who = fmt::format("rank {} of {}", h.rank, h.size);
  if (finishing_ || failed_ || deadlinePassed_) {
    return refuse(c, who + ": the rendezvous has already failed or finished");
  }
  if (h.size <= 0 || h.size > kMaxGroupSize) {
    return refuse(c, fmt::format("{}: size must be in [1, {}]", who, kMaxGroupSize));
  }
  if (h.rank < 0 || h.rank >= h.size) return refuse(c, who + ": rank out of range");
  if (size_ != 0 && h.size != size_) {
    return refuse(
        c, fmt::format("{}: the group's size is {} (set by the first rank to arrive)", who, size_));
  }
  if (size_ == 0) {
    size_ = h.size;
    members_.resize(static_cast<std::size_t>(size_));
  }
  ConnectionPtr& slot = members_[static_cast<std::size_t>(h.rank)];
  if (slot) return refuse(c, fmt::format("{}: rank already taken by {}", who, slot->peer));

  slot = c;
  c->rank = h.rank;
  ++arrived_;
  ++liveMembers_;
  c->timer.cancel();
  send(c,
       Outgoing{encodeReplyHeader({kReplyMagic, static_cast<std::uint32_t>(ReplyStatus::kOk), 0}),
                nullptr,
                {},
                false});
  readHeader(c);
  log().debug("bootstrap: rendezvous {}: {} arrived from {}", where_, who, c->peer);
  if (arrived_ == size_) {
    assembled_ = true;
    groupTimer_.cancel();
    log().info("bootstrap: rendezvous {}: all {} ranks arrived", where_, size_);
  }
}

void RendezvousServer::Impl::refuse(const ConnectionPtr& c, const std::string& why) {
  warnPending(fmt::format("bootstrap: rendezvous {}: refusing {}: {}", where_, c->peer, why));
  sendErrorAndClose(c, ReplyStatus::kRefused, fmt::format("rendezvous {} refused {}", where_, why));
}

void RendezvousServer::Impl::readHeader(const ConnectionPtr& c) {
  // Always outstanding on a member, so a member that leaves is noticed at once.
  asio::async_read(c->socket, asio::buffer(c->header),
                   [this, c](const AsioError& e, std::size_t) { onHeader(c, e); });
}

void RendezvousServer::Impl::onHeader(const ConnectionPtr& c, const AsioError& ec) {
  if (c->closed) return;
  if (ec) return memberGone(c, ec);
  if (failed_) return;  // a reply is on its way, then the connection closes
  const RoundHeader h = decodeRoundHeader(c->header.data());
  if (h.magic != kRoundMagic) return dropMember(c, "sent a malformed round header");
  if (h.round != round_ || c->announced) {
    return dropMember(c,
                      fmt::format("sent round {} while the group is at round {}", h.round, round_));
  }
  if (h.bytes > kMaxBootstrapBytes) {
    return dropMember(c, fmt::format("announced {} bytes in round {}, more than the limit of {}",
                                     h.bytes, round_, kMaxBootstrapBytes));
  }
  if (leftRank_ >= 0) {
    return failGroup(
        ReplyStatus::kPeerLost,
        fmt::format("rank {} has left the group, so round {} cannot complete", leftRank_, round_));
  }
  if (roundOpen_ && h.bytes != roundBytes_) {
    return dropMember(c, fmt::format("announced {} bytes in round {} but rank {} announced {}",
                                     h.bytes, round_, roundFirstRank_, roundBytes_));
  }
  if (!roundOpen_) {
    try {
      roundData_ = std::make_shared<std::vector<unsigned char>>(static_cast<std::size_t>(size_) *
                                                                static_cast<std::size_t>(h.bytes));
    } catch (const std::bad_alloc&) {
      return failGroup(ReplyStatus::kProtocolError,
                       fmt::format("rendezvous cannot allocate {} x {} bytes for round {}", size_,
                                   h.bytes, round_));
    }
    roundOpen_ = true;
    roundBytes_ = h.bytes;
    roundFirstRank_ = c->rank;
  }
  c->announced = true;
  if (h.bytes == 0) return onPayload(c, {});
  unsigned char* slot = roundData_->data() + static_cast<std::size_t>(c->rank) * h.bytes;
  asio::async_read(
      c->socket, asio::buffer(slot, h.bytes),
      [this, c, keep = roundData_](const AsioError& e, std::size_t) { onPayload(c, e); });
}

void RendezvousServer::Impl::onPayload(const ConnectionPtr& c, const AsioError& ec) {
  if (c->closed) return;
  if (ec) return memberGone(c, ec);
  if (failed_) return;
  ++roundArrived_;
  readHeader(c);
  if (roundArrived_ == size_) completeRound();
}

void RendezvousServer::Impl::completeRound() {
  std::shared_ptr<const std::vector<unsigned char>> data = std::move(roundData_);
  const auto header =
      encodeReplyHeader({kReplyMagic, static_cast<std::uint32_t>(ReplyStatus::kOk), data->size()});
  for (const ConnectionPtr& m : members_) {
    m->announced = false;
    send(m, Outgoing{header, data, {}, false});
  }
  log().debug("bootstrap: rendezvous {}: round {} done ({} bytes per rank)", where_, round_,
              roundBytes_);
  ++round_;
  roundArrived_ = 0;
  roundOpen_ = false;
  roundBytes_ = 0;
  roundFirstRank_ = -1;
}

void RendezvousServer::Impl::memberGone(const ConnectionPtr& c, const AsioError& ec) {
  if (c->closed) return;
  const std::string why = ec == asio::error::eof
                              ? std::string("closed the connection")
                              : fmt::format("lost the connection ({})", ec.message());
  const std::string who = fmt::format("rank {}", c->rank);
  closeConnection(c);
  if (failed_ || finishing_) return;
  if (!assembled_) {
    return failGroup(ReplyStatus::kPeerLost,
                     fmt::format("{} {} before all {} ranks arrived (missing ranks: {})", who, why,
                                 size_, topology::formatIndexList(missingRanks(), ", ", 1000)));
  }
  if (roundOpen_) {
    return failGroup(ReplyStatus::kPeerLost,
                     fmt::format("{} {} during round {}", who, why, round_));
  }
  log().debug("bootstrap: rendezvous {}: {} left", where_, who);
  if (leftRank_ < 0) leftRank_ = c->rank;
  maybeFinish();
}

void RendezvousServer::Impl::dropMember(const ConnectionPtr& c, const std::string& what) {
  const std::string message = fmt::format("rank {} {}; it was dropped", c->rank, what);
  log().warn("bootstrap: rendezvous {}: {} ({})", where_, message, c->peer);
  closeConnection(c);
  failGroup(ReplyStatus::kProtocolError, message);
}

void RendezvousServer::Impl::failGroup(ReplyStatus status, const std::string& what) {
  if (failed_ || finishing_) return;
  failed_ = true;
  groupTimer_.cancel();
  log().warn("bootstrap: rendezvous {}: the group failed: {}", where_, what);
  for (const ConnectionPtr& m : members_) {
    if (m && !m->closed) sendErrorAndClose(m, status, what);
  }
  roundData_.reset();
  maybeFinish();
}

void RendezvousServer::Impl::onGroupDeadline(const AsioError& ec) {
  if (ec || assembled_ || failed_ || finishing_) return;
  deadlinePassed_ = true;
  if (arrived_ == 0) {
    log().warn("bootstrap: rendezvous {}: no rank arrived within {} s", where_,
               connectTimeout_.count());
    return maybeFinish();
  }
  failGroup(ReplyStatus::kTimeout,
            fmt::format("timed out after {} s waiting for all {} ranks at the rendezvous {}; "
                        "missing ranks: {}",
                        connectTimeout_.count(), size_, where_,
                        topology::formatIndexList(missingRanks(), ", ", 1000)));
}

void RendezvousServer::Impl::send(const ConnectionPtr& c, Outgoing out) {
  if (c->closed) return;
  c->outbox.push_back(std::move(out));
  if (!c->writing) writeNext(c);
}

void RendezvousServer::Impl::writeNext(const ConnectionPtr& c) {
  c->writing = true;
  const Outgoing& out = c->outbox.front();
  const std::array<asio::const_buffer, 2> buffers = {
      asio::buffer(out.header),
      out.payload ? asio::buffer(*out.payload) : asio::buffer(out.message)};
  asio::async_write(c->socket, buffers, [this, c](const AsioError& ec, std::size_t) {
    c->writing = false;
    if (c->closed) return;
    const bool closeAfter = c->outbox.front().closeAfter;
    c->outbox.pop_front();
    if (ec) {
      if (c->rank >= 0) return memberGone(c, ec);
      return closeConnection(c);
    }
    if (closeAfter) return closeConnection(c);
    if (!c->outbox.empty()) writeNext(c);
  });
}

void RendezvousServer::Impl::sendErrorAndClose(const ConnectionPtr& c, ReplyStatus status,
                                               const std::string& what) {
  std::string message = what.substr(0, kMaxReplyMessageBytes);
  const auto header =
      encodeReplyHeader({kReplyMagic, static_cast<std::uint32_t>(status), message.size()});
  send(c, Outgoing{header, nullptr, std::move(message), true});
  // Closed after the reply is written, or after the grace period if the peer does not read.
  c->timer.expires_after(kCloseGrace);
  c->timer.async_wait([this, c](const AsioError& ec) {
    if (!ec) closeConnection(c);
  });
}

void RendezvousServer::Impl::warnPending(const std::string& line) {
  const std::string out = pendingLog_.next(line, std::chrono::steady_clock::now());
  if (!out.empty()) log().warn("{}", out);
}

void RendezvousServer::Impl::shedOneAtDescriptorLimit() {
  if (spareFd_ < 0) return;
  ::close(spareFd_);
  const int fd = ::accept(acceptor_.native_handle(), nullptr, nullptr);
  if (fd >= 0) ::close(fd);
  spareFd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void RendezvousServer::Impl::closeConnection(const ConnectionPtr& c) {
  if (c->closed) return;
  c->closed = true;
  admission_.leave(c->id);
  AsioError ignored;
  c->socket.shutdown(tcp::socket::shutdown_both, ignored);
  c->socket.close(ignored);
  c->timer.cancel();
  connections_.erase(c);
  if (c->rank >= 0) --liveMembers_;
  maybeFinish();
}

void RendezvousServer::Impl::maybeFinish() {
  if (finishing_) return;
  if (!(assembled_ || failed_ || deadlinePassed_) || liveMembers_ > 0) return;
  finishing_ = true;
  log().debug("bootstrap: rendezvous {}: finished", where_);
  AsioError ignored;
  groupTimer_.cancel();
  acceptRetryTimer_.cancel();
  acceptor_.close(ignored);
  const std::vector<ConnectionPtr> open(connections_.begin(), connections_.end());
  for (const ConnectionPtr& c : open) closeConnection(c);
  members_.clear();  // the group is over: free its connections now
}

std::vector<int> RendezvousServer::Impl::missingRanks() const {
  std::vector<int> missing;
  for (int r = 0; r < size_; ++r) {
    if (!members_[static_cast<std::size_t>(r)]) missing.push_back(r);
  }
  return missing;
}

// ---- RendezvousServer ----

RendezvousServer::RendezvousServer(const RendezvousInfo& info, std::int64_t connectTimeoutS)
    : ownerPid_(getpid()) {
  if (connectTimeoutS <= 0) {
    throwError(ErrorCode::kInvalidArgument, 0, "bootstrap",
               fmt::format("connect timeout must be at least 1 s, got {}", connectTimeoutS));
  }
  impl_ = std::make_shared<Impl>(info, connectTimeoutS);
  impl_->start();
  address_ = impl_->address();
  Impl* impl = impl_.get();
  thread_ = std::make_unique<std::thread>([impl] { impl->run(); });
}

RendezvousServer::~RendezvousServer() {
  if (!thread_) return;
  if (getpid() != ownerPid_ || thread_->get_id() == std::this_thread::get_id()) {
    // A forked child has no such thread (and shares the parent's epoll set); a thread cannot
    // join itself. Leave everything untouched and reachable.
    abandon(std::move(impl_));
    abandon(std::shared_ptr<std::thread>(std::move(thread_)));
    return;
  }
  impl_->stop();
  thread_->join();
}

bool RendezvousServer::finished() const noexcept {
  return impl_->finished();
}

void RendezvousServer::stop() noexcept {
  impl_->stop();
}

}  // namespace epcomm::rendezvous
