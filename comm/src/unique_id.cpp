#include "comm/unique_id.h"
#include "comm/src/asio.h"

#include <fmt/format.h>
#include <sys/random.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "comm/config.h"
#include "comm/error.h"
#include "comm/log.h"
#include "comm/src/bootstrap.h"
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

// Fills `out` from the kernel's CSPRNG; throws kSystemError if it cannot.
void fillRandom(unsigned char* out, std::size_t bytes) {
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t got = getrandom(out + done, bytes - done, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      throwError(ErrorCode::kSystemError, 0, "UniqueId::create",
                 std::string("getrandom failed: ") + std::strerror(errno));
    }
    done += static_cast<std::size_t>(got);
  }
}

}  // namespace

UniqueId encodeUniqueId(const RendezvousInfo& info) {
  using rendezvous::storeLe;
  boost::system::error_code ec;
  const boost::asio::ip::address address = boost::asio::ip::make_address(info.host, ec);
  if (ec) {
    throwError(
        ErrorCode::kInvalidArgument, 0, "bootstrap",
        fmt::format("cannot encode a UniqueId for \"{}\": not a numeric IPv4 or IPv6 address",
                    info.host));
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
               fmt::format("not an epcomm UniqueId of this version (format {}, this library reads "
                           "format {})",
                           version, kUniqueIdVersion));
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
               fmt::format("not an epcomm UniqueId (unknown address family {})", family));
  }
  info.port = loadLe<std::uint16_t>(in + kPortOffset);
  if (info.port == 0) {
    throwError(ErrorCode::kInvalidArgument, rank, "bootstrap", "not an epcomm UniqueId (port 0)");
  }
  std::memcpy(info.secret, in + kSecretOffset, kSecretBytes);
  return info;
}

UniqueId UniqueId::create() {
  const Config config = Config::fromEnvironment();
  setLogLevel(config.logLevel);
  RendezvousInfo wanted;
  wanted.host = rendezvousHost(config);
  wanted.port = 0;
  fillRandom(wanted.secret, kSecretBytes);
  return encodeUniqueId(startRendezvousServer(wanted, config.connectTimeoutS));
}

}  // namespace epcomm
