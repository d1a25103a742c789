// The low-latency transport over one symmetric window (Communicator::createWindow), made at
// the first low-latency call of a shape (collective). Zero-copy both ways: a sender puts
// each token row straight into the destination's output layout; expert ranks put combine
// rows straight into the source's combine region, which the source sums in place, or, when
// the expert outputs are in the zero-copy buffer and every peer's window is mapped here
// (Window::peerData), the source reads them where they are: nothing is copied at all.
//
// Window of every rank (64-byte aligned regions), per slot k in {0, 1}:
//   payload[k]  [E_local * T*R rows]: bf16 recvX [rows, H], or int8 recvXInt8 [rows, H]
//               then (64-byte aligned) recvScales [rows, numScales]; H + 4 * H/128 <= 2H
//   meta[k]     [R sources][T * min(K, E_local)] i32: message ids (t * K + k at the source)
//               of that source's rows, in (local expert, row) order
//   combine[k]  [T * K rows, H] bf16: row of message id m, put by the expert rank that has it
//   zeroCopy[k] [E_local * T*R rows, H] bf16: Buffer::lowLatencyCombineBuffer of slot k
//   counts[k]   [R sources][R destinations][E_local] i32: every source's whole count matrix
// Signals (kSet, values only grow, never reset: no ABA), per source s: counts(k, s) = 4Rk + s,
// dispatch(k, s) = 4Rk + R + s, combine(k, s) = 4Rk + 2R + s, each set by s after its last
// put of that kind for that call; read(k, s) = 4Rk + 3R + s, set by s once it has read its
// rows of an in-place combine.
//
// Dispatch of sequence q into slot k: each rank puts its count matrix [dst][E_local] into
// every peer's counts[k] and signals counts(k, me) = q; it then waits for the counts of the
// lower ranks only (rank 0 waits for nobody): rows of source s for local expert e at rank d
// start at row e * T*R + sum_{s' < s} counts[s'][d][e] of the packed layout. Send: put every
// row (own rows: memcpy), the meta block, signal dispatch(k, me) = q at every peer; return.
// Receive (now or in the hook): wait dispatch(k, s) >= q for every peer s (its counts came
// before), then derive recvCount / layoutRange from the counts and scatter srcInfo from the
// meta blocks; int8 with dequantize writes bf16 rows into the slot's arena. The payload is
// never copied at the receiver.
// Combine number c (monotonic per Buffer) of slot k: expert rank puts row i of (e, s) into
// s's combine[k] at the row's message id, then signals combine(k, me) = c; the source waits
// for every peer, then sums in place (own rows read from x itself when x outlives the call,
// i.e. no hook; else copied into its own combine[k] at send time).
// In place (x is zeroCopy[k], every peer mapped): the expert rank only signals combine(k, me)
// = c; the source waits for every peer, sums reading each row in its expert rank's
// zeroCopy[k], signals read(k, me) = c to every peer and waits for every peer's read(k, s)
// >= c before returning, so once a rank's combine completed no peer reads its zeroCopy[k]
// and the caller may write it again (the next combine of the same dispatch).
//
// Reuse invariant (why no acknowledgement signals are needed): every call starts with its
// Agreement, an all-reduce that no rank leaves before every rank entered the call, and puts
// are complete on return. Region X[k] of rank d is written only by calls on slot k, i.e. by
// dispatch q (payload, meta) and by the combines of dispatch q (combine). A later writer of
// X[k] is dispatch q + 2 or a later combine of q; before it sends, rank d has entered that
// call, and entering it implies d is done with X[k]: dispatch q + 2 is refused (on every
// rank) while slot k's receive or combine hook is pending, outputs of dispatch q are invalid
// once dispatch q + 2 starts (the two-slot contract), and a combine of slot k is refused
// while an earlier one of slot k is pending. Own rows read in place from x are read before
// the combine returns. So a sender never overwrites what its receiver may still read.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "comm/error.h"
#include "comm/window.h"
#include "ep/src/ll_transport.h"
#include "ep/src/normal_plan.h"

namespace epcomm::ep {
namespace {

class WindowLlTransport final : public LlTransport {
 public:
  WindowLlTransport(Communicator& comm, const LlShape& shape)
      : comm_(comm), shape_(shape), me_(comm.rank()), R_(shape.numRanks) {
    const std::size_t rows = static_cast<std::size_t>(shape.numLocal()) * shape.rowsPerExpert();
    const std::size_t payload = alignUp(rows * shape.payloadBytes() + 64, 64);
    const std::size_t meta = alignUp(R_ * shape.maxMessagesPerPeer() * sizeof(std::int32_t), 64);
    const std::size_t combine =
        alignUp(static_cast<std::size_t>(shape.maxTokens) * shape.numTopk * 2 * shape.hidden, 64);
    const std::size_t zeroCopy = alignUp(rows * 2 * shape.hidden, 64);
    std::size_t at = 0;
    const std::size_t counts =
        alignUp(static_cast<std::size_t>(R_) * R_ * shape.numLocal() * sizeof(std::int32_t), 64);
    for (Region& r : regions_) {
      r.payload = at;
      r.meta = r.payload + payload;
      r.combine = r.meta + meta;
      r.zeroCopy = r.combine + combine;
      r.counts = r.zeroCopy + zeroCopy;
      at = r.counts + counts;
    }
    window_ = comm.createWindow(at, 8 * R_);
    base_ = static_cast<std::byte*>(window_->data());
    peers_.resize(R_);
    mapsPeers_ = true;
    for (int r = 0; r < R_; ++r) {
      peers_[r] = static_cast<const std::byte*>(window_->peerData(r));
      mapsPeers_ = mapsPeers_ && peers_[r] != nullptr;
    }
  }

  std::size_t footprintBytes() const override { return window_->bytes(); }
  Bf16* combineBuffer(int index) override {
    return reinterpret_cast<Bf16*>(base_ + regions_[index].zeroCopy);
  }
  std::size_t dispatchSend(int index, LlSlot& slot, const LowLatencyDispatchInputs& in) override {
    const LlShape& sh = shape_;
    const Region& reg = regions_[index];
    const int local = sh.numLocal(), N = in.numTokens, H = in.hidden, K = in.numTopk;
    const std::size_t TR = sh.rowsPerExpert(), cells = static_cast<std::size_t>(R_) * local;
    // My count matrix to every rank; then the lower ranks' (they place rows before mine).
    auto* counts = reinterpret_cast<std::int32_t*>(base_ + reg.counts);
    std::int32_t* mine = counts + me_ * cells;
    std::fill(mine, mine + cells, 0);
    for (std::size_t m = 0; m < static_cast<std::size_t>(N) * K; ++m) {
      if (in.topkIdx[m] >= 0) ++mine[in.topkIdx[m]];  // expert e = dest * local + le
    }
    for (int d = 0; d < R_; ++d) {
      if (d == me_) continue;
      window_->put(d, reg.counts + me_ * cells * sizeof(std::int32_t), mine,
                   cells * sizeof(std::int32_t));
      window_->signal(d, countsSignal(index, me_), slot.sequence, SignalOp::kSet);
    }
    for (int s = 0; s < me_; ++s) window_->waitSignal(countsSignal(index, s), slot.sequence);
    slot.counts = counts;
    const bool int8 = isInt8(in.quant);
    const int group = quantGroupSize(in.quant, H), numSc = int8 ? H / group : 0;
    const std::size_t rows = static_cast<std::size_t>(local) * TR;
    setOutputs(index, slot, int8, rows);

    // next[d][e]: the next row of mine at d for local expert e; metaAt[d][e]: where its
    // message id goes in my meta block for d.
    std::vector<std::size_t> next(cells), metaAt(cells), metaTotal(R_, 0);
    for (int d = 0; d < R_; ++d) {
      for (int e = 0; e < local; ++e) {
        std::size_t begin = 0;
        for (int s = 0; s < me_; ++s) begin += countOf(slot, s, d, e);
        next[d * local + e] = e * TR + begin;
        metaAt[d * local + e] = metaTotal[d];
        metaTotal[d] += countOf(slot, me_, d, e);
      }
    }
    meta_.resize(static_cast<std::size_t>(R_) * sh.maxMessagesPerPeer());
    std::vector<std::int8_t> q(int8 ? H : 0);
    std::vector<float> scales(numSc);
    const std::size_t rowBytes = int8 ? H : 2 * static_cast<std::size_t>(H);
    const std::size_t scaleBytes = sizeof(float) * numSc;
    const std::size_t scalesAt = reg.payload + alignUp(rows * H, 64);  // int8: after the rows
    std::size_t bytesSent = 0;
    for (int t = 0; t < N; ++t) {
      const Bf16* xt = in.x + static_cast<std::size_t>(t) * H;
      if (int8) quantizeInt8(xt, H, group, q.data(), scales.data());
      const void* src = int8 ? static_cast<const void*>(q.data()) : xt;
      for (int k = 0; k < K; ++k) {
        const std::size_t m = static_cast<std::size_t>(t) * K + k;
        const std::int64_t e = in.topkIdx[m];
        if (e < 0) continue;
        const int d = static_cast<int>(e / local);
        const std::size_t cell = static_cast<std::size_t>(e);  // = d * local + le
        const std::size_t row = next[cell]++;
        slot.msgDest[m] = d;
        slot.msgPos[m] = static_cast<std::int32_t>(row);
        meta_[d * sh.maxMessagesPerPeer() + metaAt[cell]++] = static_cast<std::int32_t>(m);
        const std::size_t at = reg.payload + row * rowBytes;
        if (d == me_) {
          std::memcpy(base_ + at, src, rowBytes);
          if (int8) std::memcpy(base_ + scalesAt + row * scaleBytes, scales.data(), scaleBytes);
          continue;
        }
        window_->put(d, at, src, rowBytes);
        if (int8) window_->put(d, scalesAt + row * scaleBytes, scales.data(), scaleBytes);
        bytesSent += rowBytes + scaleBytes;
      }
    }
    // Meta blocks, then the signal that publishes everything put before it.
    const std::size_t metaBlock = sh.maxMessagesPerPeer() * sizeof(std::int32_t);
    for (int d = 0; d < R_; ++d) {
      const std::size_t at = reg.meta + me_ * metaBlock;
      const std::int32_t* block = meta_.data() + d * sh.maxMessagesPerPeer();
      if (d == me_) {
        std::memcpy(base_ + at, block, metaTotal[d] * sizeof(std::int32_t));
        continue;
      }
      window_->put(d, at, block, metaTotal[d] * sizeof(std::int32_t));
      window_->signal(d, dispatchSignal(index, me_), slot.sequence, SignalOp::kSet);
      bytesSent += metaTotal[d] * sizeof(std::int32_t);
    }
    return bytesSent;
  }

  void dispatchReceive(int index, LlSlot& slot) override {
    for (int s = 0; s < R_; ++s) {
      if (s != me_) window_->waitSignal(dispatchSignal(index, s), slot.sequence);
    }
    const LlShape& sh = shape_;
    const Region& reg = regions_[index];
    const int local = sh.numLocal(), H = sh.hidden, K = slot.numTopk;
    const std::size_t TR = sh.rowsPerExpert();
    const auto* meta = reinterpret_cast<const std::int32_t*>(base_ + reg.meta);
    slot.rowMsg.resize(static_cast<std::size_t>(local) * TR);
    std::vector<std::size_t> metaAt(R_, 0);  // position in each source's meta block
    for (int e = 0; e < local; ++e) {
      std::int64_t begin = 0;
      for (int s = 0; s < R_; ++s) {
        const std::int32_t count = countOf(slot, s, me_, e);
        const std::int32_t* ids = meta + s * sh.maxMessagesPerPeer() + metaAt[s];
        const std::size_t first = e * TR + static_cast<std::size_t>(begin);
        for (std::int32_t i = 0; i < count; ++i) {
          slot.rowMsg[first + i] = ids[i];
          slot.srcInfo[first + i] = ids[i] / K;
        }
        metaAt[s] += static_cast<std::size_t>(count);
        slot.layoutRange[e * R_ + s] = (begin << 32) | static_cast<std::uint32_t>(count);
        begin += count;
      }
      slot.recvCount[e] = static_cast<std::int32_t>(begin);
      if (isInt8(slot.quant) && slot.dequantize) {
        const int group = quantGroupSize(slot.quant, H), numSc = H / group;
        for (std::size_t row = e * TR; row < e * TR + static_cast<std::size_t>(begin); ++row) {
          dequantizeInt8(slot.recvXInt8 + row * H, slot.recvScales + row * numSc, H, group,
                         slot.recvX + row * H);
        }
      }
    }
  }

  std::size_t combineSend(int index, LlSlot& slot, const Bf16* x, bool keepsX) override {
    const LlShape& sh = shape_;
    const std::size_t at = regions_[index].combine;
    const int local = sh.numLocal();
    const std::size_t H = sh.hidden, rowBytes = 2 * H, TR = sh.rowsPerExpert();
    // x in this slot's zero-copy buffer, every peer mapped: sources read it in place.
    slot.combinePull = mapsPeers_ && x == combineBuffer(index);
    std::size_t bytesSent = 0;
    for (int e = 0; e < local; ++e) {
      for (int s = 0; s < R_; ++s) {
        const std::int64_t range = slot.layoutRange[e * R_ + s];
        const std::size_t first = e * TR + static_cast<std::size_t>(range >> 32);
        const std::size_t count = static_cast<std::size_t>(range & 0xffffffff);
        if (s != me_ && slot.combinePull) bytesSent += count * rowBytes;
        if ((s == me_ && keepsX) || slot.combinePull) continue;  // read in place
        for (std::size_t row = first; row < first + count; ++row) {
          const std::size_t to = at + static_cast<std::size_t>(slot.rowMsg[row]) * rowBytes;
          if (s == me_) {
            std::memcpy(base_ + to, x + row * H, rowBytes);
          } else {
            window_->put(s, to, x + row * H, rowBytes);
          }
        }
        if (s != me_) bytesSent += count * rowBytes;
      }
    }
    slot.combineX = keepsX ? x : nullptr;
    for (int s = 0; s < R_; ++s) {
      if (s != me_) window_->signal(s, combineSignal(index, me_), slot.combineSequence);
    }
    return bytesSent;
  }

  void combineReceive(int index, LlSlot& slot, const float* weights) override {
    for (int s = 0; s < R_; ++s) {
      if (s != me_) window_->waitSignal(combineSignal(index, s), slot.combineSequence);
    }
    const std::size_t H = shape_.hidden;
    const Region& reg = regions_[index];
    if (slot.combinePull) {
      sumCombinedRows(slot, shape_.hidden, weights, [&](std::size_t m) {
        const std::byte* rows = peers_[slot.msgDest[m]] + reg.zeroCopy;
        return reinterpret_cast<const Bf16*>(rows) + static_cast<std::size_t>(slot.msgPos[m]) * H;
      });
      // Peers may write their zero-copy buffers once this returns: wait until none still
      // reads this rank's.
      for (int s = 0; s < R_; ++s) {
        if (s != me_) window_->signal(s, readSignal(index, me_), slot.combineSequence);
      }
      for (int s = 0; s < R_; ++s) {
        if (s != me_) window_->waitSignal(readSignal(index, s), slot.combineSequence);
      }
      slot.combinePull = false;
      return;
    }
    const auto* back = reinterpret_cast<const Bf16*>(base_ + reg.combine);
    sumCombinedRows(slot, shape_.hidden, weights, [&](std::size_t m) {
      return slot.msgDest[m] == me_ && slot.combineX
                 ? slot.combineX + static_cast<std::size_t>(slot.msgPos[m]) * H
                 : back + m * H;
    });
    slot.combineX = nullptr;
  }

 private:
  struct Region {
    std::size_t payload = 0, meta = 0, combine = 0, zeroCopy = 0, counts = 0;
  };

  int countsSignal(int index, int src) const { return 4 * R_ * index + src; }
  int dispatchSignal(int index, int src) const { return 4 * R_ * index + R_ + src; }
  int combineSignal(int index, int src) const { return 4 * R_ * index + 2 * R_ + src; }
  int readSignal(int index, int src) const { return 4 * R_ * index + 3 * R_ + src; }
  std::int32_t countOf(const LlSlot& slot, int src, int dst, int e) const {
    return slot.counts[(static_cast<std::size_t>(src) * R_ + dst) * shape_.numLocal() + e];
  }

  // Points the slot's outputs at this rank's payload region (dequantised bf16: the arena).
  void setOutputs(int index, LlSlot& slot, bool int8, std::size_t rows) {
    std::byte* payload = base_ + regions_[index].payload;
    if (!int8) {
      slot.recvX = reinterpret_cast<Bf16*>(payload);
      slot.recvXInt8 = slot.arenaRecvXInt8;
      slot.recvScales = slot.arenaRecvScales;
      return;
    }
    slot.recvX = slot.arenaRecvX;
    slot.recvXInt8 = reinterpret_cast<std::int8_t*>(payload);
    slot.recvScales = reinterpret_cast<float*>(payload + alignUp(rows * shape_.hidden, 64));
  }

  Communicator& comm_;
  LlShape shape_;
  int me_;
  int R_;
  Region regions_[2];
  std::unique_ptr<Window> window_;
  std::byte* base_ = nullptr;
  std::vector<const std::byte*> peers_;  // every rank's window as mapped here (or null)
  bool mapsPeers_ = false;               // no null in peers_
  std::vector<std::int32_t> meta_;       // [R][T * min(K, E_local)] staging of my meta blocks
};

}  // namespace

std::unique_ptr<LlTransport> makeWindowLlTransport(Communicator& comm, const LlShape& shape) {
  return std::make_unique<WindowLlTransport>(comm, shape);
}

}  // namespace epcomm::ep
