// The TCP rendezvous behind UniqueId and EPCOMM_INIT_ADDR: the wire protocol (shared with
// rendezvous_client.cpp and the tests) and the server that runs it.
//
// Protocol, all integers little-endian, every header fixed size:
//   client -> server  Hello       {magic kHelloMagic u32, version u32, secret[32], rank i32,
//                                  size i32}                                     48 bytes
//   server -> client  Reply       {magic kReplyMagic u32, status u32, bytes u64} 16 bytes
//                                  + bytes of payload (an error text unless status is kOk)
//   client -> server  RoundHeader {magic kRoundMagic u32, round u32, bytes u64}  16 bytes
//                                  + bytes of payload
// A hello is answered with a Reply (kOk and no payload, or kRefused and the reason; a hello
// with a wrong magic is closed without a word). Then each all-gather round r = 0, 1, ... is
// one RoundHeader + payload from every rank, answered, once every rank has sent round r,
// with a kOk Reply carrying size * bytes bytes in rank order. A failure of the group
// (timeout, a member lost or dropped) is a non-kOk Reply to every remaining member, after
// which the server closes the connection.
#pragma once

#include <sys/types.h>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>

#include "comm/src/bootstrap.h"

namespace epcomm::rendezvous {

inline constexpr std::uint32_t kHelloMagic = 0x56525045;  // "EPRV"
inline constexpr std::uint32_t kRoundMagic = 0x44525045;  // "EPRD"
inline constexpr std::uint32_t kReplyMagic = 0x50525045;  // "EPRP"
inline constexpr std::uint32_t kProtocolVersion = 1;
inline constexpr std::size_t kHelloBytes = 48;
inline constexpr std::size_t kRoundHeaderBytes = 16;
inline constexpr std::size_t kReplyHeaderBytes = 16;
// Longest error text a Reply carries.
inline constexpr std::size_t kMaxReplyMessageBytes = 4096;
// Largest group a rendezvous serves.
inline constexpr int kMaxGroupSize = 1 << 16;
// A connection that has not sent a valid hello within this many seconds (or the connect
// timeout, if shorter) is closed.
inline constexpr std::int64_t kHandshakeTimeoutS = 3;

enum class ReplyStatus : std::uint32_t {
  kOk = 0,
  kRefused = 1,        // the hello was refused (secret, rank, size)
  kTimeout = 2,        // not every rank arrived within the connect timeout
  kPeerLost = 3,       // a member left before the group was done
  kProtocolError = 4,  // a member sent a malformed message and was dropped
};

struct Hello {
  std::uint32_t magic = kHelloMagic;
  std::uint32_t version = kProtocolVersion;
  unsigned char secret[kSecretBytes] = {};
  std::int32_t rank = 0;
  std::int32_t size = 0;
};

struct RoundHeader {
  std::uint32_t magic = kRoundMagic;
  std::uint32_t round = 0;
  std::uint64_t bytes = 0;
};

struct ReplyHeader {
  std::uint32_t magic = kReplyMagic;
  std::uint32_t status = 0;
  std::uint64_t bytes = 0;
};

template <class T>
void storeLe(unsigned char* out, T value) {
  using U = std::make_unsigned_t<T>;
  U u = static_cast<U>(value);
  for (std::size_t i = 0; i < sizeof(T); ++i) out[i] = static_cast<unsigned char>(u >> (8 * i));
}

template <class T>
T loadLe(const unsigned char* in) {
  using U = std::make_unsigned_t<T>;
  U u = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) u |= static_cast<U>(static_cast<U>(in[i]) << (8 * i));
  return static_cast<T>(u);
}

inline std::array<unsigned char, kHelloBytes> encodeHello(const Hello& h) {
  std::array<unsigned char, kHelloBytes> out{};
  storeLe(out.data(), h.magic);
  storeLe(out.data() + 4, h.version);
  std::memcpy(out.data() + 8, h.secret, kSecretBytes);
  storeLe(out.data() + 40, h.rank);
  storeLe(out.data() + 44, h.size);
  return out;
}

inline Hello decodeHello(const unsigned char* in) {
  Hello h;
  h.magic = loadLe<std::uint32_t>(in);
  h.version = loadLe<std::uint32_t>(in + 4);
  std::memcpy(h.secret, in + 8, kSecretBytes);
  h.rank = loadLe<std::int32_t>(in + 40);
  h.size = loadLe<std::int32_t>(in + 44);
  return h;
}

// RoundHeader and ReplyHeader share one layout: {u32, u32, u64}.
inline std::array<unsigned char, 16> encodeHeader(std::uint32_t magic, std::uint32_t word,
                                                  std::uint64_t bytes) {
  std::array<unsigned char, 16> out{};
  storeLe(out.data(), magic);
  storeLe(out.data() + 4, word);
  storeLe(out.data() + 8, bytes);
  return out;
}

inline std::array<unsigned char, 16> encodeRoundHeader(const RoundHeader& h) {
  return encodeHeader(h.magic, h.round, h.bytes);
}

inline RoundHeader decodeRoundHeader(const unsigned char* in) {
  return {loadLe<std::uint32_t>(in), loadLe<std::uint32_t>(in + 4), loadLe<std::uint64_t>(in + 8)};
}

inline std::array<unsigned char, 16> encodeReplyHeader(const ReplyHeader& h) {
  return encodeHeader(h.magic, h.status, h.bytes);
}

inline ReplyHeader decodeReplyHeader(const unsigned char* in) {
  return {loadLe<std::uint32_t>(in), loadLe<std::uint32_t>(in + 4), loadLe<std::uint64_t>(in + 8)};
}

// One rendezvous: listens on an address and serves one group in its own thread (an
// asio::io_context, fully asynchronous, so a slow or hostile peer never blocks the others).
// The thread ends once every member has left, or when the connect timeout passes before the
// group assembled (the members that arrived are told which ranks are missing).
class RendezvousServer {
 public:
  // Binds to info.host:info.port (port 0: ephemeral) and starts the thread. Throws
  // epcomm::Error: kInvalidArgument for a bad host or timeout, kSystemError if it cannot
  // listen.
  RendezvousServer(const RendezvousInfo& info, std::int64_t connectTimeoutS);
  // Stops serving and joins the thread. In a forked child (which has the object but not the
  // thread) it only abandons the state, so the child neither blocks nor crashes.
  ~RendezvousServer();
  RendezvousServer(const RendezvousServer&) = delete;
  RendezvousServer& operator=(const RendezvousServer&) = delete;

  // The address actually listened on, with the secret.
  const RendezvousInfo& address() const noexcept { return address_; }
  // True once the thread has stopped serving.
  bool finished() const noexcept;
  // Ends serving now (thread-safe); connections are closed.
  void stop() noexcept;

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
  std::unique_ptr<std::thread> thread_;
  RendezvousInfo address_;
  pid_t ownerPid_;
};

// Servers started by startRendezvousServer in this process that are still serving (for
// tests and diagnostics).
std::size_t activeRendezvousServers();

}  // namespace epcomm::rendezvous
