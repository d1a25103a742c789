// The rendezvous address (the selected interface's), and the process-global registry of
// rendezvous servers.
//
// UniqueId layout (128 bytes, integers little-endian):
//   0  magic 'EPID' u32     4  format version u32     8  address family u16 (4 or 6)
//   10 port u16             12 address, 16 bytes (IPv4: the first 4)
//   28 secret, 32 bytes     60 zero up to 128
#include "comm/src/bootstrap.h"
#include "comm/src/asio.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "comm/error.h"
#include "comm/log.h"
#include "comm/src/rendezvous_server.h"
#include "comm/src/topology_bridge.h"

namespace epcomm {
namespace {

// Keeps every started server alive until it finishes or the process exits; its static
// destructor stops and joins the rest (each server abandons itself in a forked child).
class ServerRegistry {
 public:
  static ServerRegistry& instance() {
    static ServerRegistry registry;
    return registry;
  }

  RendezvousInfo start(const RendezvousInfo& info, std::int64_t connectTimeoutS) {
    auto server = std::make_unique<rendezvous::RendezvousServer>(info, connectTimeoutS);
    RendezvousInfo address = server->address();
    std::lock_guard<std::mutex> lock(mutex_);
    std::erase_if(servers_, [](const auto& s) { return s->finished(); });  // joins: quick
    servers_.push_back(std::move(server));
    return address;
  }

  std::size_t active() {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<std::size_t>(std::count_if(servers_.begin(), servers_.end(),
                                                  [](const auto& s) { return !s->finished(); }));
  }

 private:
  // The logger is constructed first, so it is destroyed after the servers that log.
  ServerRegistry() { (void)log(); }

  std::mutex mutex_;
  std::vector<std::unique_ptr<rendezvous::RendezvousServer>> servers_;
};

}  // namespace

RendezvousInfo startRendezvousServer(const RendezvousInfo& info, std::int64_t connectTimeoutS) {
  return ServerRegistry::instance().start(info, connectTimeoutS);
}

std::size_t rendezvous::activeRendezvousServers() {
  return ServerRegistry::instance().active();
}

std::string resolveHost(const std::string& host, int rank) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (rc != 0 || found == nullptr) {
    throwError(ErrorCode::kInvalidArgument, rank, "bootstrap",
               "cannot resolve host \"" + host + "\": " + gai_strerror(rc));
  }
  // Prefer IPv4, as the rest of the bootstrap does.
  const addrinfo* pick = found;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  }
  char text[INET6_ADDRSTRLEN] = {};
  const void* addr =
      pick->ai_family == AF_INET
          ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(pick->ai_addr)->sin_addr)
          : static_cast<const void*>(
                &reinterpret_cast<const sockaddr_in6*>(pick->ai_addr)->sin6_addr);
  inet_ntop(pick->ai_family, addr, text, sizeof(text));
  freeaddrinfo(found);
  return text;
}

std::string rendezvousHost(const Config& config) {
  return selectInterface(config, 0).address;
}

}  // namespace epcomm
