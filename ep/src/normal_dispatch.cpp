// Normal-mode dispatch. Per call: one all-reduce (the agreement), one all-to-all of
// per-destination counts (skipped in cached mode), then per round either one all-to-all-v
// of token rows, received straight into recvX, and one of per-row metadata (source index,
// local topk ids and weights, int8 scales), or (window transport, one round) rows put
// straight from x into the receivers' windows (ep/src/normal_window.h) and copied out once.
// Rows for this rank never leave it: they are copied (or quantised) straight into the
// outputs.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "comm/agreement.h"
#include "ep/buffer.h"
#include "ep/src/buffer_state.h"
#include "ep/src/host_relay.h"
#include "ep/src/normal_meta.h"
#include "ep/src/normal_plan.h"
#include "ep/src/normal_window.h"
#include "ep/src/row_runs.h"

namespace epcomm::ep {
namespace {

constexpr const char* kOp = "ep::dispatch";

std::string worstProblem(std::int64_t received, int numWorstTokens) {
  return fmt::format(
      "numWorstTokens {} is smaller than the {} rows this rank receives; raise "
      "num_worst_tokens to the most rows any rank can receive",
      numWorstTokens, received);
}

}  // namespace

void Buffer::dispatch(const DispatchInputs& given, DispatchOutputs& out) {
  BufferState& s = *state_;
  DispatchInputs translated;
  const DispatchInputs& in = s.mask.apply(given, translated);
  Communicator& comm = s.comm;
  const int numRanks = comm.size(), me = comm.rank();
  const bool cached = in.handle != nullptr;
  const Quant quant = s.config.normalQuant(in.quant);
  const int hidden = in.hidden, numTokens = in.numTokens;
  const int numTopk = cached ? 0 : in.numTopk;
  const int numExperts = cached ? in.handle->numExperts : in.numExperts;
  const int group = quantGroupSize(quant, hidden);

  const Communicator::CallScope call(comm, kOp);
  CallAgreement agreement(kOp);
  if (!given.handle) {  // cached: the handle carries the communicator's numbering
    if (auto masked = s.mask.problem(given.numExperts)) agreement.fail(*masked);
  }
  if (hidden <= 0) agreement.fail(fmt::format("hidden {} must be >= 1", hidden));
  if (numTokens < 0) agreement.fail(fmt::format("numTokens {} < 0", numTokens));
  const bool preQuantised = in.xInt8 != nullptr;
  if (numTokens > 0 && !in.x && !preQuantised) agreement.fail("x is null");
  if (preQuantised && quant == Quant::kNone) {
    agreement.fail("xInt8 (pre-quantised x) is given but quant is none (bf16): pass an int8 mode");
  }
  if (preQuantised && numTokens > 0 && !in.xScales) {
    agreement.fail("xInt8 (pre-quantised x) is given but xScales is null");
  }
  // The caller's layout: both arrays (isTokenInRank may be null with no tokens) or neither.
  const bool layoutGiven = !cached && (in.isTokenInRank || in.numTokensPerExpert);
  if (layoutGiven && (!in.numTokensPerExpert || (numTokens > 0 && !in.isTokenInRank))) {
    agreement.fail(fmt::format("isTokenInRank and numTokensPerExpert go together: {} is null",
                               in.isTokenInRank ? "numTokensPerExpert" : "isTokenInRank"));
  }
  if (in.expertAlignment < 1) {
    agreement.fail(fmt::format("expertAlignment {} must be >= 1", in.expertAlignment));
  }
  if (in.numWorstTokens < 0) {
    agreement.fail(fmt::format("numWorstTokens {} must be >= 0", in.numWorstTokens));
  }
  if (cached && in.numWorstTokens > 0 && in.handle->numRecvTokens > in.numWorstTokens) {
    agreement.fail(worstProblem(in.handle->numRecvTokens, in.numWorstTokens));
  }
  if (quant != Quant::kNone && !isInt8(quant)) {
    agreement.fail(
        fmt::format("unknown quant mode {} (0 none, 1 int8 per 128 channels, 2 int8 per "
                    "token, -1 the Buffer's)",
                    static_cast<int>(quant)));
  }
  if (isInt8(quant) && hidden > 0 && (group <= 0 || hidden % group != 0)) {
    agreement.fail(fmt::format(
        "hidden {} is not a multiple of the int8 quantisation group {} (EPCOMM_EP_QUANT_GROUP; 0 = "
        "one scale per token)",
        hidden, group));
  }
  if (cached) {
    const DispatchHandle& h = *in.handle;
    if (!h.valid() || h.numRanks != numRanks || h.rank != me) {
      agreement.fail("handle does not come from a dispatch on this communicator and rank");
    } else if (h.numTokens != numTokens || h.hidden != hidden) {
      agreement.fail(
          fmt::format("cached dispatch: numTokens {} / hidden {} differ from the handle's {} / {}",
                      numTokens, hidden, h.numTokens, h.hidden));
    }
  } else if (agreement.ok() && layoutGiven) {
    // The caller's layout (DeepEP passes get_dispatch_layout's tensors back): taken as given.
    if (numTokens > 0 && (numTopk < 1 || !in.topkIdx)) {
      agreement.fail("topkIdx is null or numTopk < 1");
    }
    LayoutOutputs& l = s.layout;
    l.numTokens = numTokens;
    l.numRanks = numRanks;
    l.numExperts = numExperts;
    const std::size_t cells = static_cast<std::size_t>(numTokens) * numRanks;
    l.isTokenInRank.resize(cells);
    l.numTokensPerRank.resize(static_cast<std::size_t>(numRanks));
    l.numTokensPerExpert.resize(static_cast<std::size_t>(std::max(numExperts, 0)));
    std::fill(l.numTokensPerRank.data(), l.numTokensPerRank.data() + numRanks, 0);
    for (std::size_t c = 0; c < cells; ++c) {
      const std::uint8_t v = in.isTokenInRank[c] != 0 ? 1 : 0;
      l.isTokenInRank.data()[c] = v;
      l.numTokensPerRank.data()[c % static_cast<std::size_t>(numRanks)] += v;
    }
    if (numExperts > 0) {
      std::memcpy(l.numTokensPerExpert.data(), in.numTokensPerExpert,
                  sizeof(std::int32_t) * static_cast<std::size_t>(numExperts));
    }
    if (numExperts <= 0 || numExperts % numRanks != 0) {
      agreement.fail(fmt::format("numExperts {} must be a positive multiple of {} ranks",
                                 numExperts, numRanks));
    }
  } else if (agreement.ok()) {
    std::string problem;
    if (!computeDispatchLayout({in.topkIdx, numTokens, numTopk, numExperts}, numRanks, s.layout,
                               &problem)) {
      agreement.fail(problem);
    }
  }
  agreement.same("hidden", hidden);
  agreement.same("numExperts", numExperts);
  agreement.same("numTopk", numTopk);
  agreement.same("cached (handle given)", cached ? 1 : 0);
  agreement.same("quant", static_cast<int>(quant));
  agreement.same("quantisation group", group);
  // Cached mode: the buffer check needs no peer's data, so it joins the agreement.
  NormalPlan plan;
  if (cached && agreement.ok()) {
    plan = NormalPlan::cached(*in.handle, quant, group);
    if (plan.neededBytes > s.normal.bytes()) agreement.fail(plan.bufferProblem(s.normal.bytes()));
  }
  const int maxTokensIndex = agreement.max(numTokens);
  const int worstGivenIndex = agreement.max(in.numWorstTokens > 0 ? 1 : 0);
  comm.agree(agreement);

  if (!cached) {
    plan = NormalPlan::fresh(s.layout, static_cast<int>(agreement.maxOf(maxTokensIndex)), hidden,
                             numTopk, quant, group, s.config, me);
    // Counts exchange: per destination [needed bytes if too small else 0, rows per round,
    // (token, slot) pairs per local expert of that destination].
    plan.exchangeCounts(comm, s.layout, s.normal.bytes(), kOp);
    // Only now does a rank know how many rows it receives: where any rank pads to
    // numWorstTokens, one more agreement, so that too few is an error on every rank.
    if (agreement.maxOf(worstGivenIndex) > 0) {
      CallAgreement rows(kOp);
      const std::int64_t received = plan.rankPrefix[numRanks];
      if (in.numWorstTokens > 0 && received > in.numWorstTokens) {
        rows.fail(worstProblem(received, in.numWorstTokens));
      }
      comm.agree(rows);
    }
  }

  // The window transport for one-round calls whose regions fit the Buffer's bound (agreed
  // values only, so every rank decides alike).
  NormalWindow* window = nullptr;
  const std::size_t capacity = static_cast<std::size_t>(agreement.maxOf(maxTokensIndex));
  if (s.llTransport == LlTransportKind::kWindow && plan.numRounds == 1 &&
      NormalWindow::bytesFor(numRanks, plan.rowBytes, plan.metaWords * 4, capacity) <=
          s.normal.bytes()) {
    window = &s.normalWindow;
    window->begin(comm, plan.rowBytes, plan.metaWords * 4, capacity);
  }

  // Outputs.
  const int numLocal = numExperts / numRanks;
  const std::size_t numRecv = static_cast<std::size_t>(plan.rankPrefix[numRanks]);
  const int numScales = isInt8(quant) ? hidden / group : 0;
  if (!cached) {
    DispatchHandle& h = out.handle;
    h.numRanks = numRanks;
    h.rank = me;
    h.numTokens = numTokens;
    h.hidden = hidden;
    h.numExperts = numExperts;
    h.roundTokens = plan.roundTokens;
    h.numRounds = plan.numRounds;
    h.numRecvTokens = static_cast<int>(numRecv);
    h.isTokenInRank.assign(s.layout.isTokenInRank.begin(), s.layout.isTokenInRank.end());
    h.sendCounts = plan.sendCounts;
    h.recvCounts = plan.recvCounts;
    h.rankPrefix = plan.rankPrefix;
    h.recvSrcIdx.resize(numRecv);
  } else if (&out.handle != in.handle) {
    out.handle = *in.handle;
  }
  const DispatchHandle& h = out.handle;
  out.numRecvTokens = static_cast<int>(numRecv);
  out.hidden = hidden;
  out.numTopk = numTopk;
  out.numScales = numScales;
  out.quant = quant;
  out.bytesSent = 0;
  // Rows of every output array: padded to numWorstTokens where asked (and large enough).
  const std::size_t worst = in.numWorstTokens > 0 ? static_cast<std::size_t>(in.numWorstTokens) : 0;
  const std::size_t outRows = std::max(numRecv, worst);
  if (!isInt8(quant) || in.dequantize) out.recvX.resize(outRows * hidden);
  if (isInt8(quant)) {
    out.recvXInt8.resize(outRows * hidden);
    out.recvScales.resize(outRows * numScales);
  }
  out.recvTopkIdx.resize(outRows * numTopk);
  out.recvTopkWeights.resize(outRows * numTopk);
  out.numRecvTokensPerExpert.clear();
  if (!cached && worst == 0) {
    out.numRecvTokensPerExpert.resize(numLocal);
    for (int e = 0; e < numLocal; ++e) {
      const std::int64_t c = plan.recvExpertCounts[e];
      out.numRecvTokensPerExpert[e] =
          static_cast<int>((c + in.expertAlignment - 1) / in.expertAlignment * in.expertAlignment);
    }
  }

  out.handle.relayCounts.clear();
  out.handle.relayRecords.clear();
  if (s.relay && !window && plan.numRounds == 1) {
    // Across hosts: each token once per remote host, forwarded there (ep/src/host_relay.h).
    s.relay->dispatch(in, out, plan, quant, group);
  } else {
    // Rounds.
    const std::size_t rowBytes = plan.rowBytes, metaWords = plan.metaWords;
    std::vector<std::size_t> sendRows(numRanks), sendDispls(numRanks), recvRows(numRanks),
        recvDispls(numRanks), recvBase(numRanks, 0), pos(numRanks);
    std::vector<std::size_t> sendMeta(numRanks), sendMetaDispls(numRanks), recvMeta(numRanks),
        recvMetaDispls(numRanks);
    std::vector<float> qScales(numScales);
    std::vector<std::int32_t> selfMeta(metaWords);
    std::byte* const arena = s.normal.data();
    std::size_t selfRow = static_cast<std::size_t>(h.rankPrefix[me]);
    const bool bf16 = !isInt8(quant);
    void* const recvData = bf16 ? static_cast<void*>(out.recvX.data()) : out.recvXInt8.data();
    const DataType rowType = bf16 ? DataType::kBf16 : DataType::kI8;
    // Every row stays where it is until the exchange (x, the caller's int8 rows, or where
    // the round's quantisation left it), so copies go in runs per destination (row_runs.h).
    std::vector<RowRuns> runs(numRanks, RowRuns(rowBytes));
    const bool quantiseHere = !bf16 && !preQuantised;

    for (int j = 0; j < plan.numRounds; ++j) {
      // Staging: [rows to each peer][metadata to each peer][metadata from each peer].
      std::size_t rowsOut = 0, rowsIn = 0;
      for (int r = 0; r < numRanks; ++r) {
        const std::size_t send =
            r == me ? 0 : static_cast<std::size_t>(h.sendCounts[j * numRanks + r]);
        const std::size_t recv =
            r == me ? 0 : static_cast<std::size_t>(h.recvCounts[j * numRanks + r]);
        sendRows[r] = send * hidden;
        sendDispls[r] = rowsOut * hidden;
        sendMeta[r] = send * metaWords;
        sendMetaDispls[r] = rowsOut * metaWords;
        recvRows[r] = recv * hidden;
        recvDispls[r] = (static_cast<std::size_t>(h.rankPrefix[r]) + recvBase[r]) * hidden;
        recvMeta[r] = recv * metaWords;
        recvMetaDispls[r] = rowsIn * metaWords;
        pos[r] = rowsOut;
        rowsOut += send;
        rowsIn += recv;
      }
      std::byte* const xStage = arena;
      auto* const metaStage = reinterpret_cast<std::int32_t*>(arena + plan.metaOffset(rowsOut));
      auto* const metaIn = reinterpret_cast<std::int32_t*>(arena + plan.metaInOffset(rowsOut));

      const int begin = std::min(numTokens, j * plan.roundTokens);
      const int end = std::min(numTokens, begin + plan.roundTokens);
      // int8: the round's tokens are quantised first, in parts over the worker threads, each
      // straight into this rank's output row when it stays here too (no self copy), else
      // into the Buffer's scratch row; both outlive the exchange.
      const std::size_t roundTokens = static_cast<std::size_t>(end - begin);
      if (quantiseHere) {
        if (s.quantRows.size() < roundTokens * hidden) s.quantRows.resize(roundTokens * hidden);
        if (s.quantScales.size() < roundTokens * numScales) {
          s.quantScales.resize(roundTokens * numScales);
        }
        parallelFor(roundTokens, static_cast<std::size_t>(hidden) * 2, 1,
                    [&, selfStart = selfRow](std::size_t lo, std::size_t hi) {
                      std::size_t self =
                          selfStart + tokensToRank(h, begin, begin + static_cast<int>(lo), me);
                      for (std::size_t i = lo; i < hi; ++i) {
                        const int t = begin + static_cast<int>(i);
                        const std::uint8_t* inRank =
                            h.isTokenInRank.data() + static_cast<std::size_t>(t) * numRanks;
                        bool anywhere = false;
                        for (int r = 0; r < numRanks; ++r) anywhere = anywhere || inRank[r];
                        if (!anywhere) continue;
                        std::int8_t* q = inRank[me] ? out.recvXInt8.data() + self++ * hidden
                                                    : s.quantRows.data() + i * hidden;
                        quantizeInt8(in.x + static_cast<std::size_t>(t) * hidden, hidden, group, q,
                                     s.quantScales.data() + i * numScales);
                      }
                    });
      }
      for (int t = begin; t < end; ++t) {
        const std::uint8_t* inRank =
            h.isTokenInRank.data() + static_cast<std::size_t>(t) * numRanks;
        bool toPeer = false;
        for (int r = 0; r < numRanks; ++r) toPeer = toPeer || (r != me && inRank[r]);
        if (!toPeer && !inRank[me]) continue;
        const void* row = bf16 ? in.x + static_cast<std::size_t>(t) * hidden : nullptr;
        const float* scales = qScales.data();
        if (preQuantised) {
          // The caller's rows and scales: nothing to quantise, and the rows outlive the call.
          row = in.xInt8 + static_cast<std::size_t>(t) * hidden;
          for (int g = 0; g < numScales; ++g) {
            qScales[static_cast<std::size_t>(g)] =
                in.xScales[t * in.scalesTokenStride + g * in.scalesGroupStride];
          }
        } else if (quantiseHere) {
          const std::size_t i = static_cast<std::size_t>(t - begin);
          row = inRank[me] ? out.recvXInt8.data() + selfRow * hidden
                           : s.quantRows.data() + i * hidden;
          scales = s.quantScales.data() + i * numScales;
        }
        for (int r = 0; r < numRanks; ++r) {
          if (!inRank[r]) continue;
          if (r == me) {
            const std::size_t at = selfRow++;
            std::byte* dst = static_cast<std::byte*>(recvData) + at * rowBytes;
            if (dst != row) runs[r].add(dst, row);
            if (metaWords > 0) {
              writeMeta(selfMeta.data(), in, t, r, numLocal, numTopk, scales, numScales);
              readMeta(selfMeta.data(), out, at, numTopk, numScales);
            }
            continue;
          }
          const std::size_t p = pos[r]++;
          if (window) {
            window->putRow(r, p - sendDispls[r] / hidden, row);
          } else {
            runs[r].add(xStage + p * rowBytes, row);
          }
          if (metaWords > 0) {
            writeMeta(metaStage + p * metaWords, in, t, r, numLocal, numTopk, scales, numScales);
          }
        }
      }
      for (RowRuns& run : runs) run.flush();
      if (window) {
        for (int r = 0; r < numRanks; ++r) {
          if (r != me) window->putMeta(r, metaStage + sendMetaDispls[r], sendRows[r] / hidden);
        }
        window->flushAndSignal(NormalWindow::kDispatchSignals);
        window->waitAll(NormalWindow::kDispatchSignals);
      } else {
        comm.allToAllV(xStage, sendRows.data(), sendDispls.data(), recvData, recvRows.data(),
                       recvDispls.data(), rowType);
        if (metaWords > 0) {
          comm.allToAllV(metaStage, sendMeta.data(), sendMetaDispls.data(), metaIn, recvMeta.data(),
                         recvMetaDispls.data(), DataType::kI32);
        }
      }
      for (int r = 0; r < numRanks; ++r) {
        if (r == me) continue;
        const std::size_t rows = recvRows[r] / hidden;
        const std::size_t first = static_cast<std::size_t>(h.rankPrefix[r]) + recvBase[r];
        if (window && rows > 0) {  // an empty output's data() may be null
          copyInParallel(static_cast<std::byte*>(recvData) + first * rowBytes, window->rows(r),
                         rows * rowBytes);
        }
        if (metaWords == 0) continue;
        const std::int32_t* rec = window ? reinterpret_cast<const std::int32_t*>(window->meta(r))
                                         : metaIn + recvMetaDispls[r];
        for (std::size_t i = 0; i < rows; ++i) {
          readMeta(rec + i * metaWords, out, first + i, numTopk, numScales);
        }
      }
      for (int r = 0; r < numRanks; ++r) {
        if (r != me) recvBase[r] += recvRows[r] / hidden;
        out.bytesSent += sendRows[r] * (rowBytes / hidden) + sendMeta[r] * sizeof(std::int32_t);
      }
    }
  }

  if (isInt8(quant) && in.dequantize) {
    parallelFor(
        numRecv, static_cast<std::size_t>(hidden) * 3, 1, [&](std::size_t lo, std::size_t hi) {
          for (std::size_t i = lo; i < hi; ++i) {
            dequantizeInt8(out.recvXInt8.data() + i * hidden, out.recvScales.data() + i * numScales,
                           hidden, group, out.recvX.data() + i * hidden);
          }
        });
  }
  if (worst <= numRecv) return;  // no padding (numRecv > worst was refused above)
  const std::size_t pad = worst - numRecv;
  // Only the arrays this call sized: reused outputs may hold others of any size.
  const auto zero = [&](auto& array, std::size_t perRow) {
    if (pad * perRow > 0)
      std::memset(array.data() + numRecv * perRow, 0, pad * perRow * sizeof(*array.data()));
  };
  if (!isInt8(quant) || in.dequantize) zero(out.recvX, static_cast<std::size_t>(hidden));
  if (isInt8(quant)) {
    zero(out.recvXInt8, static_cast<std::size_t>(hidden));
    zero(out.recvScales, static_cast<std::size_t>(numScales));
  }
  zero(out.recvTopkWeights, static_cast<std::size_t>(numTopk));
  std::fill(out.recvTopkIdx.data() + numRecv * numTopk, out.recvTopkIdx.data() + worst * numTopk,
            std::int64_t{-1});
}

}  // namespace epcomm::ep
