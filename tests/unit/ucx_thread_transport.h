// A Transport (backends/ucx/transport.h) over threads for tests/unit/ucx_algorithms_test.cpp:
// one thread per rank, messages through in-memory mailboxes (per source, destination and step
// FIFO queues of posted sends and receives, matched front to front). Two deliveries: eager (a
// send copies at post and completes at once, a receive completes when matched) and lazy
// (data moves only when one side waits on a matched pair, so a buffer reused before its wait
// shows). A receive buffer is scribbled over at post. Strict where the contract is: a byte
// count mismatch, a bad peer or op index, a second wait, a scratch slot other than 0 and 1
// and a wait past the limit fail every rank with the first message instead of hanging.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "backends/ucx/transport.h"

namespace epcomm::ucx::test {

using Bytes = std::vector<std::byte>;
using Clock = std::chrono::steady_clock;

enum class Delivery { kEager, kLazy };
constexpr Delivery kDeliveries[] = {Delivery::kEager, Delivery::kLazy};
inline const char* name(Delivery d) {
  return d == Delivery::kEager ? "eager" : "lazy";
}

// Thrown on the rank threads once the fabric failed; the first message is kept.
struct Failed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The mailboxes of one group of ranks: per (source, destination, step) FIFO queues of posted
// sends and receives, matched front to front.
class Fabric {
 public:
  Fabric(int size, Delivery delivery, std::chrono::milliseconds limit)
      : size_(size), delivery_(delivery), limit_(limit), wake_(size) {}

  struct Message {
    int src = 0, dst = 0;
    const std::byte* data = nullptr;  // lazy: the sender's buffer
    Bytes copy;                       // eager: the data as posted
    std::size_t bytes = 0;
    bool done = false;
  };
  struct Receive {
    std::byte* buf = nullptr;
    std::size_t bytes = 0;
    Message* matched = nullptr;
    int dst = 0;
    bool done = false;
  };
  struct Op {
    std::shared_ptr<Message> send;
    std::shared_ptr<Receive> recv;
    std::string what;
    int owner = 0;  // the rank that posted it
    bool waited = false;
  };

  std::shared_ptr<Op> post(int src, int dst, std::uint32_t step, const void* sendBuf, void* recvBuf,
                           std::size_t bytes, bool isSend, const std::string& who) {
    std::unique_lock lock(mu_);
    throwIfFailed();
    if (src < 0 || src >= size_ || dst < 0 || dst >= size_) fail(lock, who + ": bad peer");
    if (bytes > 0 && (isSend ? sendBuf == nullptr : recvBuf == nullptr)) {
      fail(lock, who + ": null buffer for " + std::to_string(bytes) + " bytes");
    }
    auto op = std::make_shared<Op>();
    op->what = who + (isSend ? ": send to " : ": receive from ") +
               std::to_string(isSend ? dst : src) + " step " + std::to_string(step) + " (" +
               std::to_string(bytes) + " bytes)";
    op->owner = isSend ? src : dst;
    const auto key = std::make_tuple(src, dst, step);
    if (isSend) {
      op->send = std::make_shared<Message>();
      op->send->bytes = bytes;
      op->send->src = src;
      op->send->dst = dst;
      if (delivery_ == Delivery::kEager) {
        if (bytes > 0)
          op->send->copy.assign(static_cast<const std::byte*>(sendBuf),
                                static_cast<const std::byte*>(sendBuf) + bytes);
        op->send->done = true;
      } else {
        op->send->data = static_cast<const std::byte*>(sendBuf);
      }
      sends_[key].push_back(op->send);
    } else {
      op->recv = std::make_shared<Receive>();
      op->recv->buf = static_cast<std::byte*>(recvBuf);
      op->recv->bytes = bytes;
      op->recv->dst = dst;
      if (bytes > 0) std::memset(recvBuf, 0xcd, bytes);  // it is not the caller's until waited
      recvs_[key].push_back(op->recv);
    }
    auto& s = sends_[key];
    auto& r = recvs_[key];
    while (!s.empty() && !r.empty()) {
      r.front()->matched = s.front().get();
      pending_.push_back({s.front(), r.front(), op->what});
      if (delivery_ == Delivery::kEager) transfer(lock, *r.front());
      s.pop_front();
      r.pop_front();
    }
    if (s.empty()) sends_.erase(key);
    if (r.empty()) recvs_.erase(key);
    wake_[src].notify_all();  // a lazy send waits for its receive
    wake_[dst].notify_all();  // an eager receive for its send
    return op;
  }

  void wait(Op& op) {
    std::unique_lock lock(mu_);
    const auto deadline = Clock::now() + limit_;
    for (;;) {
      throwIfFailed();
      if (op.send ? op.send->done : op.recv->done) break;
      if (delivery_ == Delivery::kLazy) {
        Receive* r = op.recv ? (op.recv->matched ? op.recv.get() : nullptr) : findReceiver(op);
        if (r != nullptr) {
          transfer(lock, *r);
          continue;
        }
      }
      if (wake_[op.owner].wait_until(lock, deadline) == std::cv_status::timeout) {
        fail(lock, op.what + ": no completion within " + std::to_string(limit_.count()) + " ms");
      }
    }
    op.waited = true;
  }

  [[noreturn]] void fail(const std::string& message) {
    std::unique_lock lock(mu_);
    fail(lock, message);
  }
  std::string failure() {
    std::lock_guard lock(mu_);
    return failure_;
  }
  // Messages posted on one side only.
  std::size_t unmatched() {
    std::lock_guard lock(mu_);
    return sends_.size() + recvs_.size();
  }

 private:
  struct Pair {
    std::shared_ptr<Message> send;
    std::shared_ptr<Receive> recv;
    std::string what;
  };
  using Key = std::tuple<int, int, std::uint32_t>;

  Receive* findReceiver(const Op& op) {
    for (auto& p : pending_) {
      if (p.send == op.send) return p.recv.get();
    }
    return nullptr;
  }
  void transfer(std::unique_lock<std::mutex>& lock, Receive& r) {
    Message& m = *r.matched;
    if (m.bytes != r.bytes) {
      fail(lock, "byte count mismatch: receive names " + std::to_string(r.bytes) +
                     " bytes, the matching send has " + std::to_string(m.bytes));
    }
    if (r.bytes > 0) std::memcpy(r.buf, m.data ? m.data : m.copy.data(), r.bytes);
    r.done = true;
    m.done = true;
    std::erase_if(pending_, [&](const Pair& p) { return p.recv.get() == &r; });
    wake_[m.src].notify_all();
    wake_[r.dst].notify_all();
  }
  void throwIfFailed() {
    if (!failure_.empty()) throw Failed(failure_);
  }
  [[noreturn]] void fail(std::unique_lock<std::mutex>&, const std::string& message) {
    if (failure_.empty()) failure_ = message;
    for (auto& w : wake_) w.notify_all();
    throw Failed(failure_);
  }

  const int size_;
  const Delivery delivery_;
  const std::chrono::milliseconds limit_;
  std::mutex mu_;
  std::vector<std::condition_variable> wake_;  // per rank: its waits
  std::string failure_;
  std::map<Key, std::deque<std::shared_ptr<Message>>> sends_;
  std::map<Key, std::deque<std::shared_ptr<Receive>>> recvs_;
  std::vector<Pair> pending_;  // matched, data not moved yet (lazy)
};

// One rank's Transport over a Fabric. Strict where the contract is: op indices valid and
// waited once, scratch slots 0 and 1 only (fresh, scribbled memory per collective).
class ThreadTransport final : public Transport {
 public:
  ThreadTransport(Fabric& fabric, int rank, int size) : fabric_(fabric), rank_(rank), size_(size) {}

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::size_t postSend(int peer, std::uint32_t step, const void* buf, std::size_t bytes) override {
    ops_.push_back(fabric_.post(rank_, peer, step, buf, nullptr, bytes, true, who()));
    mostInFlight_ = std::max(mostInFlight_, ++inFlight_);
    return ops_.size() - 1;
  }
  std::size_t postRecv(int peer, std::uint32_t step, void* buf, std::size_t bytes) override {
    ops_.push_back(fabric_.post(peer, rank_, step, nullptr, buf, bytes, false, who()));
    mostInFlight_ = std::max(mostInFlight_, ++inFlight_);
    return ops_.size() - 1;
  }
  void wait(std::size_t index) override {
    if (index >= ops_.size())
      fabric_.fail(who() + ": wait(" + std::to_string(index) + ") of no op");
    if (ops_[index]->waited) fabric_.fail(ops_[index]->what + ": waited twice");
    fabric_.wait(*ops_[index]);
    --inFlight_;
  }
  void waitAll() override {
    for (auto& op : ops_) {
      if (!op->waited) {
        fabric_.wait(*op);
        --inFlight_;
      }
    }
    ops_.clear();
  }
  void* scratch(std::size_t bytes, int slot) override {
    if (slot != 0 && slot != 1) fabric_.fail(who() + ": scratch slot " + std::to_string(slot));
    Bytes& s = scratch_[slot];
    if (s.size() < bytes) s = Bytes(bytes, std::byte{0xee});
    return s.data();
  }

  // Between collectives: every op waited; scratch freed (ASan: a stale pointer is caught).
  // Returns the most ops that were posted and not yet waited at once.
  std::size_t endCollective() {
    for (auto& op : ops_) {
      if (!op->waited) fabric_.fail(op->what + ": never waited");
    }
    ops_.clear();
    scratch_[0] = Bytes();
    scratch_[1] = Bytes();
    return std::exchange(mostInFlight_, 0);
  }
  std::string label;  // the case running, for messages

 private:
  std::string who() const { return "rank " + std::to_string(rank_) + " [" + label + "]"; }

  Fabric& fabric_;
  const int rank_;
  const int size_;
  std::vector<std::shared_ptr<Fabric::Op>> ops_;
  Bytes scratch_[2];
  std::size_t inFlight_ = 0;
  std::size_t mostInFlight_ = 0;
};

// Runs body(transport) on `size` threads, one per rank; a failure on any rank fails the
// test with the first message.
inline void runRanks(int size, Delivery delivery, const std::function<void(ThreadTransport&)>& body,
                     std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  Fabric fabric(size, delivery, limit);
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) {
    threads.emplace_back([&fabric, &body, r, size] {
      ThreadTransport t(fabric, r, size);
      try {
        body(t);
      } catch (const Failed&) {
      } catch (const std::exception& e) {
        try {
          fabric.fail("rank " + std::to_string(r) + " [" + t.label + "]: " + e.what());
        } catch (const Failed&) {
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  const std::string failure = fabric.failure();
  if (!failure.empty()) {
    ADD_FAILURE() << "P=" << size << " " << name(delivery) << ": " << failure;
  } else {
    EXPECT_EQ(fabric.unmatched(), 0u) << "P=" << size << " " << name(delivery);
  }
}

}  // namespace epcomm::ucx::test
