// Normal-mode combine: the rows each rank received in dispatch go back to their sources,
// sent straight from the caller's x (dispatch order is already grouped by source rank):
// with one all-to-all-v per round group (plus one for the topk weights when given), or
// (window transport, one group) one put per source into its window, where the source sums
// them in place (ep/src/normal_window.h). Rows this rank sent to itself are read in place.
// Each token's rows are summed in f32 (optionally weighted) and rounded to bf16 once.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "comm/agreement.h"
#include "comm/workers.h"
#include "ep/buffer.h"
#include "ep/row_kernels.h"
#include "ep/src/buffer_state.h"
#include "ep/src/normal_plan.h"
#include "ep/src/normal_window.h"

namespace epcomm::ep {
namespace {

constexpr const char* kOp = "ep::combine";

// Dispatch rounds [first, last) of one combine exchange.
struct Group {
  int first;
  int last;
};

}  // namespace

void Buffer::combine(const CombineInputs& in, CombineOutputs& out) {
  BufferState& s = *state_;
  Communicator& comm = s.comm;
  const int R = comm.size(), me = comm.rank();
  const Communicator::CallScope call(comm, kOp);
  CallAgreement agreement(kOp);
  const DispatchHandle* hp = in.handle;
  // numTopk > 0 says topk weights are given (DeepEP: topk_weights=recv_topk_weights); the
  // pointer may be null where this rank received no rows (an empty array's data()).
  const bool hasWeights = in.topkWeights != nullptr || in.numTopk > 0;
  const int numTopk = hasWeights ? std::max(in.numTopk, 0) : 0;
  int hidden = in.hidden;
  if (!hp || !hp->valid() || hp->numRanks != R || hp->rank != me) {
    agreement.fail("handle is missing or does not come from a dispatch on this communicator");
  } else {
    if (hidden == 0) hidden = hp->hidden;
    if (hidden != hp->hidden) {
      agreement.fail(fmt::format("hidden {} differs from the dispatch's {}", hidden, hp->hidden));
    }
    if (hp->numRecvTokens > 0 && !in.x) agreement.fail("x is null");
    if (hp->numRecvTokens > 0 && numTopk > 0 && !in.topkWeights) {
      agreement.fail(fmt::format(
          "topkWeights is null with numTopk {} and {} rows received (pass numTopk 0 for no "
          "weights)",
          numTopk, hp->numRecvTokens));
    }
  }
  if (hasWeights && in.numTopk <= 0) agreement.fail("topkWeights given with numTopk <= 0");
  if (in.weighted && !hasWeights) {
    agreement.fail("weighted combine needs topkWeights (the dispatch's recvTopkWeights)");
  }
  // Round groups and the staging they need (known locally: what this rank sent comes back).
  std::vector<Group> groups;
  const std::size_t rowBytes = static_cast<std::size_t>(std::max(hidden, 0)) * sizeof(Bf16);
  const std::size_t weightBytes = static_cast<std::size_t>(numTopk) * sizeof(float);
  std::size_t needed = 0;
  if (agreement.ok()) {
    const DispatchHandle& h = *hp;
    if (s.config.combineRounds) {
      for (int j = 0; j < h.numRounds; ++j) groups.push_back({j, j + 1});
    } else {
      groups.push_back({0, h.numRounds});
    }
    for (const Group& g : groups) {
      std::size_t rows = 0;
      for (int j = g.first; j < g.last; ++j) {
        for (int r = 0; r < R; ++r) {
          if (r != me) rows += static_cast<std::size_t>(h.sendCounts[j * R + r]);
        }
      }
      needed = std::max(needed, alignUp(rows * rowBytes, 64) + rows * weightBytes);
    }
    if (needed > s.normal.bytes()) {
      const std::size_t mib = (needed + (std::size_t{1} << 20) - 1) >> 20;
      agreement.fail(fmt::format(
          "combine staging too small: needs {} bytes, the Buffer has {} (EPCOMM_EP_BUFFSIZE); set "
          "EPCOMM_EP_BUFFSIZE={} (MiB) or more{}",
          needed, s.normal.bytes(), mib,
          s.config.combineRounds ? "" : ", or combine in rounds (EPCOMM_EP_COMBINE_ROUNDS=1)"));
    }
  }
  agreement.same("hidden", hidden);
  agreement.same("weighted", in.weighted ? 1 : 0);
  agreement.same("numTopk of topkWeights", numTopk);
  agreement.same("numRounds", agreement.ok() ? hp->numRounds : -1);
  const int maxTokensIndex = agreement.max(agreement.ok() ? hp->numTokens : 0);
  comm.agree(agreement);

  const DispatchHandle& h = *hp;
  const int numTokens = h.numTokens;
  out.numTokens = numTokens;
  out.bytesSent = 0;
  out.combinedX.resize(static_cast<std::size_t>(numTokens) * hidden);
  out.combinedTopkWeights.resize(static_cast<std::size_t>(numTokens) * numTopk);

  std::vector<std::size_t> sendRows(R), sendDispls(R), recvRows(R), recvDispls(R);
  std::vector<std::size_t> sendW(R), sendWDispls(R), recvW(R), recvWDispls(R);
  std::vector<std::size_t> recvSent(R, 0);  // rows of each source already sent back
  // The next unread row (and topk weights) of each source: own rows in place in x, peers'
  // where the exchange of the group left them.
  std::vector<const Bf16*> nextRow(R);
  std::vector<const float*> nextWeights(R);
  nextRow[me] = in.x + static_cast<std::size_t>(h.rankPrefix[me]) * hidden;
  if (numTopk > 0) nextWeights[me] = in.topkWeights + h.rankPrefix[me] * numTopk;
  std::byte* const arena = s.normal.data();
  // The window transport for one group whose regions fit the Buffer's bound (agreed values
  // only, so every rank decides alike): a peer sends at most this rank's numTokens rows.
  NormalWindow* window = nullptr;
  const std::size_t capacity = static_cast<std::size_t>(agreement.maxOf(maxTokensIndex));
  if (s.llTransport == LlTransportKind::kWindow && groups.size() == 1 &&
      NormalWindow::bytesFor(R, rowBytes, weightBytes, capacity) <= s.normal.bytes()) {
    window = &s.normalWindow;
    window->begin(comm, rowBytes, weightBytes, capacity);
  }

  if (s.relay && !window && h.numRounds == 1 &&
      h.relayCounts.size() == static_cast<std::size_t>(comm.numHosts())) {
    // The dispatch relayed through each host: combine retraces it (ep/src/host_relay.h).
    s.relay->combine(in, out, numTopk);
    return;
  }
  for (const Group& g : groups) {
    std::size_t rowsIn = 0;
    for (int r = 0; r < R; ++r) {
      std::size_t back = 0, mine = 0;  // rows going back to r; rows of mine coming from r
      for (int j = g.first; j < g.last; ++j) {
        back += static_cast<std::size_t>(h.recvCounts[j * R + r]);
        mine += static_cast<std::size_t>(h.sendCounts[j * R + r]);
      }
      const std::size_t first = static_cast<std::size_t>(h.rankPrefix[r]) + recvSent[r];
      recvSent[r] += back;
      if (r == me) back = mine = 0;
      sendRows[r] = back * hidden;
      sendDispls[r] = first * hidden;
      sendW[r] = back * numTopk;
      sendWDispls[r] = first * numTopk;
      recvRows[r] = mine * hidden;
      recvDispls[r] = rowsIn * hidden;
      recvW[r] = mine * numTopk;
      recvWDispls[r] = rowsIn * numTopk;
      rowsIn += mine;
      out.bytesSent += back * (rowBytes + weightBytes);
    }
    auto* const xStage = reinterpret_cast<Bf16*>(arena);
    auto* const wStage = reinterpret_cast<float*>(arena + alignUp(rowsIn * rowBytes, 64));
    if (window) {
      // Rows of source r start at sendDispls[r] (one contiguous block): one put each, then
      // every peer's rows are read where they landed.
      for (int r = 0; r < R; ++r) {
        if (r == me) continue;
        window->putRows(r, in.x + sendDispls[r], sendRows[r] / std::max(hidden, 1));
        if (numTopk > 0) window->putMeta(r, in.topkWeights + sendWDispls[r], sendW[r] / numTopk);
      }
      window->flushAndSignal(window->combineSignals());
      window->waitAll(window->combineSignals());
    } else {
      comm.allToAllV(in.x, sendRows.data(), sendDispls.data(), xStage, recvRows.data(),
                     recvDispls.data(), DataType::kBf16);
      if (numTopk > 0) {
        comm.allToAllV(in.topkWeights, sendW.data(), sendWDispls.data(), wStage, recvW.data(),
                       recvWDispls.data(), DataType::kF32);
      }
    }
    for (int r = 0; r < R; ++r) {
      if (r == me) continue;
      nextRow[r] = window ? reinterpret_cast<const Bf16*>(window->rows(r)) : xStage + recvDispls[r];
      nextWeights[r] =
          window ? reinterpret_cast<const float*>(window->meta(r)) : wStage + recvWDispls[r];
    }

    const int begin = std::min(numTokens, g.first * h.roundTokens);
    const int end = std::min(numTokens, g.last * h.roundTokens);
    // Tokens in parts over the worker threads (comm/workers.h): each token's output is its
    // own, and a part finds where each source's rows for its first token start by counting
    // the tokens before it.
    parallelFor(
        static_cast<std::size_t>(end - begin), 2 * rowBytes, 1,
        [&](std::size_t lo, std::size_t hi) {
          std::vector<const Bf16*> rows(R), cursor(R);
          std::vector<const float*> rowWeights(R), weightCursor(R);
          std::vector<float> scale(R);
          for (int r = 0; r < R; ++r) {
            const std::size_t skip = tokensToRank(h, begin, begin + static_cast<int>(lo), r);
            cursor[r] = nextRow[r] + skip * hidden;
            if (numTopk > 0) weightCursor[r] = nextWeights[r] + skip * numTopk;
          }
          for (int t = begin + static_cast<int>(lo); t < begin + static_cast<int>(hi); ++t) {
            const std::uint8_t* inRank = h.isTokenInRank.data() + static_cast<std::size_t>(t) * R;
            int n = 0;
            for (int r = 0; r < R; ++r) {
              if (!inRank[r]) continue;
              rows[n] = cursor[r];
              cursor[r] += hidden;
              if (numTopk > 0) {
                rowWeights[n] = weightCursor[r];
                weightCursor[r] += numTopk;
              }
              ++n;
            }
            if (numTopk > 0) {
              float* cw = out.combinedTopkWeights.data() + static_cast<std::size_t>(t) * numTopk;
              std::fill(cw, cw + numTopk, 0.f);
              for (int i = 0; i < n; ++i) {
                float sum = 0.f;
                for (int k = 0; k < numTopk; ++k) {
                  cw[k] += rowWeights[i][k];
                  sum += rowWeights[i][k];
                }
                scale[i] = sum;
              }
            }
            sumRows(rows.data(), in.weighted ? scale.data() : nullptr, n, hidden,
                    out.combinedX.data() + static_cast<std::size_t>(t) * hidden);
          }
        });
    // Own rows continue in the next group where this one stopped.
    const std::size_t ownRows = tokensToRank(h, begin, end, me);
    nextRow[me] += ownRows * hidden;
    if (numTopk > 0) nextWeights[me] += ownRows * numTopk;
  }
}

}  // namespace epcomm::ep
