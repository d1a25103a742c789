#include "backends/shm/registry.h"

#include <algorithm>

namespace epcomm::shm {
namespace {

constexpr std::uint64_t kRecordMagic = 0x7265676973746572ull;  // "register"
constexpr std::uint64_t kSendRegistered = 1;
constexpr std::uint64_t kRecvRegistered = 2;

// SlotHeader words of a registration record.
enum Word { kStep = 0, kMagic, kFlags, kSendId, kSendOff, kRecvId, kRecvOff };

}  // namespace

Window& Registry::add(std::unique_ptr<Window> window) {
  nextId_ = window->id() + 1;
  windows_.push_back(std::move(window));
  return *windows_.back();
}

bool Registry::remove(const Window* window) {
  const auto it = std::find_if(windows_.begin(), windows_.end(),
                               [&](const std::unique_ptr<Window>& w) { return w.get() == window; });
  if (it == windows_.end()) return false;
  windows_.erase(it);
  return true;
}

const Window* Registry::find(const void* p, std::size_t n) const {
  for (const auto& w : windows_) {
    if (w->containsLocal(p, n)) return w.get();
  }
  return nullptr;
}

const Window* Registry::byId(std::uint64_t id) const {
  for (const auto& w : windows_) {
    if (w->id() == id) return w.get();
  }
  return nullptr;
}

bool Registry::holds(const void* handle) const {
  for (const auto& w : windows_) {
    if (w.get() == handle) return true;
  }
  return false;
}

void Registry::agree(const Step& s, const void* send, std::size_t sendBytes, bool publishSend,
                     void* recv, std::size_t recvBytes, RegisteredPeers& peers) const {
  const auto p = static_cast<std::size_t>(s.size);
  s.channel.begin();
  const std::uint64_t step = s.channel.step();
  std::uint64_t* mine = s.channel.header().words;
  std::uint64_t flags = 0;
  const Window* sw = publishSend && send ? find(send, sendBytes) : nullptr;
  const Window* rw = recv ? find(recv, recvBytes) : nullptr;
  if (sw) {
    flags |= kSendRegistered;
    mine[kSendId] = sw->id();
    mine[kSendOff] = static_cast<std::uint64_t>(static_cast<const char*>(send) - sw->data(s.rank));
  }
  if (rw) {
    flags |= kRecvRegistered;
    mine[kRecvId] = rw->id();
    mine[kRecvOff] = static_cast<std::uint64_t>(static_cast<char*>(recv) - rw->data(s.rank));
  }
  mine[kFlags] = flags;
  mine[kMagic] = kRecordMagic;
  mine[kStep] = step;
  s.channel.exchange(s.clock);  // publishes the header with the step (release / acquire)

  peers.send.assign(p, nullptr);
  peers.recv.assign(p, nullptr);
  peers.allSend = peers.allRecv = true;
  for (int r = 0; r < s.size; ++r) {
    const std::uint64_t* w = s.channel.header(r).words;
    const bool valid = w[kStep] == step && w[kMagic] == kRecordMagic;
    const std::uint64_t f = valid ? w[kFlags] : 0;
    // Resolved against this rank's registry, which every rank holds alike; a record that
    // does not fit (impossible unless windows were created out of order) counts as absent.
    if (f & kSendRegistered) {
      const Window* win = byId(w[kSendId]);
      if (win && w[kSendOff] <= win->bytes() && sendBytes <= win->bytes() - w[kSendOff]) {
        peers.send[r] = win->data(r) + w[kSendOff];
      }
    }
    if (f & kRecvRegistered) {
      const Window* win = byId(w[kRecvId]);
      if (win && w[kRecvOff] <= win->bytes() && recvBytes <= win->bytes() - w[kRecvOff]) {
        peers.recv[r] = win->data(r) + w[kRecvOff];
      }
    }
    peers.allSend = peers.allSend && peers.send[r] != nullptr;
    peers.allRecv = peers.allRecv && peers.recv[r] != nullptr;
  }
}

}  // namespace epcomm::shm
