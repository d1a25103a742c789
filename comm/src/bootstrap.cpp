// UniqueId encoding, the default rendezvous address, and the process-global registry of
// rendezvous servers.
//
// UniqueId layout (128 bytes, integers little-endian):
//   0  magic 'EPID' u32     4  format version u32     8  address family u16 (4 or 6)
//   10 port u16             12 address, 16 bytes (IPv4: the first 4)
//   28 secret, 32 bytes     60 zero up to 128
#include "comm/src/bootstrap.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <algorithm>
#include <utility>  // before Boost 1.74's Asio, whose awaitable.hpp needs std::exchange
#include <boost/asio/ip/address.hpp>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "comm/error.h"
#include "comm/log.h"
#include "comm/src/rendezvous_server.h"

namespace epcomm {
namespace {

constexpr std::uint32_t kUniqueIdMagic = 0x44495045;  // "EPID"
constexpr std::uint32_t kUniqueIdVersion = 1;
constexpr std::uint16_t kFamilyIpv4 = 4;
constexpr std::uint16_t kFamilyIpv6 = 6;
constexpr std::size_t kFamilyOffset = 8;
constexpr std::size_t kPortOffset = 10;
constexpr std::size_t kAddressOffset = 12;
constexpr std::size_t kSecretOffset = 28;
static_assert(kSecretOffset + kSecretBytes <= UniqueId::kBytes);

// Interfaces a host usually has but that other hosts cannot reach.
bool isVirtualBridge(const std::string& name) {
  for (const char* prefix : {"docker", "veth", "virbr", "br-"}) {
    if (name.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

}  // namespace

UniqueId encodeUniqueId(const RendezvousInfo& info) {
  using rendezvous::storeLe;
  boost::system::error_code ec;
  const boost::asio::ip::address address = boost::asio::ip::make_address(info.host, ec);
  if (ec) {
    throwError(ErrorCode::kInvalidArgument, 0, "bootstrap",
               "cannot encode a UniqueId for \"" + info.host +
                   "\": not a numeric IPv4 or IPv6 address");
  }
  UniqueId id;
  unsigned char* out = id.bytes.data();
  storeLe(out, kUniqueIdMagic);
  storeLe(out + 4, kUniqueIdVersion);
  if (address.is_v4()) {
    storeLe(out + kFamilyOffset, kFamilyIpv4);
    const auto bytes = address.to_v4().to_bytes();
    std::memcpy(out + kAddressOffset, bytes.data(), bytes.size());
  } else {
    storeLe(out + kFamilyOffset, kFamilyIpv6);
    const auto bytes = address.to_v6().to_bytes();
    std::memcpy(out + kAddressOffset, bytes.data(), bytes.size());
  }
  storeLe(out + kPortOffset, info.port);
  std::memcpy(out + kSecretOffset, info.secret, kSecretBytes);
  return id;
}

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
    return static_cast<std::size_t>(std::count_if(
        servers_.begin(), servers_.end(), [](const auto& s) { return !s->finished(); }));
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

std::size_t rendezvous::activeRendezvousServers() { return ServerRegistry::instance().active(); }

RendezvousInfo decodeUniqueId(const UniqueId& id, int rank) {
  using rendezvous::loadLe;
  const unsigned char* in = id.bytes.data();
  const auto magic = loadLe<std::uint32_t>(in);
  const auto version = loadLe<std::uint32_t>(in + 4);
  if (magic != kUniqueIdMagic) {
    throwError(ErrorCode::kInvalidArgument, rank, "bootstrap",
               "not an epcomm UniqueId (bad magic; was it made by UniqueId::create and passed "
               "on unchanged?)");
  }
  if (version != kUniqueIdVersion) {
    throwError(ErrorCode::kInvalidArgument, rank, "bootstrap",
               "not an epcomm UniqueId of this version (format " + std::to_string(version) +
                   ", this library reads format " + std::to_string(kUniqueIdVersion) + ")");
  }
  RendezvousInfo info;
  const auto family = loadLe<std::uint16_t>(in + kFamilyOffset);
  if (family == kFamilyIpv4) {
    boost::asio::ip::address_v4::bytes_type bytes;
    std::memcpy(bytes.data(), in + kAddressOffset, bytes.size());
    info.host = boost::asio::ip::address_v4(bytes).to_string();
  } else if (family == kFamilyIpv6) {
    boost::asio::ip::address_v6::bytes_type bytes;
    std::memcpy(bytes.data(), in + kAddressOffset, bytes.size());
    info.host = boost::asio::ip::address_v6(bytes).to_string();
  } else {
    throwError(ErrorCode::kInvalidArgument, rank, "bootstrap",
               "not an epcomm UniqueId (unknown address family " + std::to_string(family) + ")");
  }
  info.port = loadLe<std::uint16_t>(in + kPortOffset);
  if (info.port == 0) {
    throwError(ErrorCode::kInvalidArgument, rank, "bootstrap",
               "not an epcomm UniqueId (port 0)");
  }
  std::memcpy(info.secret, in + kSecretOffset, kSecretBytes);
  return info;
}

std::string defaultRendezvousHost() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return "127.0.0.1";
  // (is a virtual bridge, interface name, address): the sort puts real interfaces first,
  // then orders by name, so the choice does not depend on the kernel's listing order.
  std::vector<std::tuple<bool, std::string, std::string>> candidates;
  for (const ifaddrs* ifa = list; ifa != nullptr; ifa = ifa->ifa_next) {
    if (ifa->ifa_addr == nullptr || ifa->ifa_addr->sa_family != AF_INET) continue;
    if (!(ifa->ifa_flags & IFF_UP) || (ifa->ifa_flags & IFF_LOOPBACK)) continue;
    char text[INET_ADDRSTRLEN] = {};
    const auto* sin = reinterpret_cast<const sockaddr_in*>(ifa->ifa_addr);
    if (inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)) == nullptr) continue;
    const std::string name = ifa->ifa_name ? ifa->ifa_name : "";
    candidates.emplace_back(isVirtualBridge(name), name, text);
  }
  freeifaddrs(list);
  if (candidates.empty()) return "127.0.0.1";
  std::sort(candidates.begin(), candidates.end());
  return std::get<2>(candidates.front());
}

}  // namespace epcomm
