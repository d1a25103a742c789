// ep-bench: DeepEP-style benchmark of ep::Buffer dispatch/combine, with the same shapes
// through a plain MPI_Alltoall + MPI_Alltoallv implementation side by side (--compare mpi).
//
//   mpirun -np N ep-bench [--mode normal|low_latency|auto] [--tokens N] [--hidden 7168]
//                         [--topk 8] [--experts 256] [--quant bf16|int8|int8-token | --int8]
//                         [--ll-max-tokens T] [--rounds N] [--round-tokens N]
//                         [--transport auto|window|collective] [--check] [--compare mpi]
//                         [--zero-copy] [--zero-copy-dispatch] [--json FILE] [-n iters]
//                         [-w warmup]
//   EPCOMM_INIT_ADDR=host:port EPCOMM_RANK=r EPCOMM_SIZE=N ep-bench ...   (each rank by hand)
//
// The configuration is the library's (the same environment: DEEP_NORMAL_MODE_USE_INT8_QUANT,
// SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK, DEEPEP_NORMAL_LONG_SEQ_*, ...); flags
// override it. The header and the JSON give each effective value and its source
// (bench/ep_bench_config.h). The low-latency batch is --tokens, at most T (default T).
//
// Times are the mean over -n iterations, the maximum over ranks; dispatch and combine each
// start from a barrier. Low-latency: between them, untimed, the "experts" read every received
// row and write their outputs where the combine reads them, for epcomm and the MPI path
// alike: an array of their own, or with --zero-copy epcomm's Buffer::lowLatencyCombineBuffer. GB/s
// as DeepEP reports it: received token bytes / time (dispatch: rows x (bf16: 2H, int8: H + 4 *
// scales); combine: rows x 2H), averaged over ranks. dispatch_bytes: what rank 0 sent to other
// ranks (rows, scales, topk metadata). buffer_bytes: the ep::Buffer's footprint (mpi: its staging).
// --check runs once more on DeepEP's oracle inputs and verifies every output on every rank
// against a reference each rank computes alone, regenerating every rank's inputs from the
// seed (rows carry their source rank and token index, counts equal the layout of every
// rank's routing, combine = x times ranks reached / weight sum within calc_diff 5e-6, int8
// 3e-3), and with --compare mpi that the MPI implementation's outputs equal epcomm's. auto: a
// prefill batch (normal mode) and a decode batch (low-latency), SGLang's --deepep-mode auto.
//
// The ranks are epcomm's (Communicator::initFromEnvironment: mpirun, ranks started by hand
// with EPCOMM_INIT_ADDR + EPCOMM_RANK + EPCOMM_SIZE, or any launcher); timings, verdicts, the
// table and --json go through its communicator, rank 0 printing and writing. --compare mpi
// needs the ranks launched by mpirun (bench/bench_ranks.h).
#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "bench/bench_ranks.h"
#include "bench/ep_bench_config.h"
#include "bench/ep_bench_data.h"
#include "bench/ep_bench_mpi.h"
#include "bench/ep_bench_options.h"
#include "bench/network_bytes.h"
#include "comm/communicator.h"
#include "comm/workers.h"
#include "ep/buffer.h"

namespace {

using namespace epcomm;
using namespace epcomm::bench;
using Clock = std::chrono::steady_clock;

struct Record {
  std::string impl, mode;
  int tokens = 0;
  int rounds = 1;  // normal mode: rounds of the dispatch
  double dispatchUs = 0, combineUs = 0, dispatchGBps = 0, combineGBps = 0;
  std::size_t dispatchBytes = 0, bufferBytes = 0;
  std::optional<bool> pass;
  // Bytes the hosts' network interfaces sent per call, summed over the hosts (network_bytes.h).
  double netDispatch = 0, netCombine = 0;
};

struct Ctx {
  const EpOptions& o;
  Communicator& comm;
  ep::Buffer& buffer;
  int rank, ranks;
  ep::Quant quant;
  // The last timeIt's network bytes per dispatch and per combine.
  double netDispatch = 0, netCombine = 0;
};

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Times `dispatch` and `combine` (iters, after warmup); returns mean seconds, max over ranks.
// `experts` runs between them, untimed, as the expert computation would (it writes the
// combine's input), then a barrier, so combine starts together on every rank as dispatch.
template <typename D, typename E, typename C>
std::pair<double, double> timeIt(Ctx& ctx, D&& dispatch, E&& experts, C&& combine) {
  const EpOptions& o = ctx.o;
  double d = 0, c = 0;
  // The host's sent bytes, read before each barrier (reading sysfs takes tens of us, which
  // after the barrier would skew the ranks' starts): dispatch's count from before the barrier
  // ahead of it to before the next, combine's from there on (each with one small barrier).
  std::uint64_t netD = 0, netC = 0;
  std::uint64_t mark = 0;
  for (int i = 0; i < o.warmup + o.iters; ++i) {
    const std::uint64_t beforeDispatch = hostSentBytes();
    if (i > o.warmup) netC += beforeDispatch - mark;
    ctx.comm.barrier();
    const auto t0 = Clock::now();
    dispatch();
    const auto t1 = Clock::now();
    experts();
    mark = hostSentBytes();
    if (i >= o.warmup) netD += mark - beforeDispatch;
    ctx.comm.barrier();
    const auto t2 = Clock::now();
    combine();
    const auto t3 = Clock::now();
    if (i >= o.warmup) {
      d += seconds(t0, t1);
      c += seconds(t2, t3);
    }
  }
  netC += hostSentBytes() - mark;
  ctx.comm.barrier();
  ctx.netDispatch = networkBytesPerCall(ctx.comm, 0, netD, o.iters);
  ctx.netCombine = networkBytesPerCall(ctx.comm, 0, netC, o.iters);
  return {maxOverRanks(ctx.comm, d / o.iters), maxOverRanks(ctx.comm, c / o.iters)};
}

std::size_t wireRow(ep::Quant q, int hidden) {
  return ep::isInt8(q) ? hidden + 4 * static_cast<std::size_t>(ep::numScales(q, hidden))
                       : 2 * static_cast<std::size_t>(hidden);
}

// ---- normal mode ----

// The bench's dispatch of `in`: its topk and weights, the run's quantisation.
ep::DispatchInputs dispatchInputs(const Ctx& c, const EpData& in, int tokens, bool dequantize) {
  ep::DispatchInputs d;
  d.x = in.x.data();
  d.numTokens = tokens;
  d.hidden = c.o.hidden;
  d.topkIdx = in.topkIdx.data();
  d.topkWeights = in.topkWeights.data();
  d.numTopk = c.o.topk;
  d.numExperts = c.o.experts;
  d.quant = c.quant;
  d.dequantize = dequantize;
  return d;
}

bool checkNormal(Ctx& c, int tokens, MpiEp* mpi) {
  const EpOptions& o = c.o;
  const EpData in = makeEpData(99, c.rank, tokens, o.hidden, o.topk, o.experts, true);
  const ep::DispatchInputs d = dispatchInputs(c, in, tokens, /*dequantize=*/true);
  ep::DispatchOutputs out;
  c.buffer.dispatch(d, out);
  const int local = o.experts / c.ranks;
  bool ok = true;
  // The reference, from every source's inputs regenerated here: source s's rows are its
  // tokens naming an expert of this rank, in token order; each local expert counts the
  // (token, slot) pairs naming it.
  std::vector<std::int64_t> perExpert(local, 0);
  std::vector<Bf16> want(o.hidden);
  for (int s = 0; s < c.ranks; ++s) {
    const EpData src = makeEpData(99, s, tokens, o.hidden, o.topk, o.experts, true);
    std::int64_t row = out.handle.rankPrefix[s];
    for (int t = 0; t < tokens; ++t) {
      const std::int64_t* topk = &src.topkIdx[static_cast<std::size_t>(t) * o.topk];
      bool here = false;
      for (int k = 0; k < o.topk; ++k) {
        if (topk[k] >= 0 && topk[k] / local == c.rank) {
          here = true;
          ++perExpert[topk[k] % local];
        }
      }
      if (!here) continue;
      ok &= row < out.handle.rankPrefix[s + 1];
      if (ok) {
        ok &= out.handle.recvSrcIdx[row] == t;
        expectedRow(s, t, o.hidden, c.quant, want.data());
        ok &= std::memcmp(want.data(), &out.recvX[row * o.hidden], o.hidden * sizeof(Bf16)) == 0;
        for (int k = 0; k < o.topk; ++k) {
          const std::int64_t e = topk[k];
          ok &=
              out.recvTopkIdx[row * o.topk + k] == (e >= 0 && e / local == c.rank ? e % local : -1);
        }
      }
      ++row;
    }
    ok &= row == out.handle.rankPrefix[s + 1];
  }
  for (int e = 0; e < local; ++e) ok &= out.numRecvTokensPerExpert[e] == perExpert[e];
  // combine(dispatch(x)) = x * ranks reached.
  ep::CombineInputs ci{out.recvX.data(), o.hidden, &out.handle, nullptr, 0, false};
  ep::CombineOutputs back;
  c.buffer.combine(ci, back);
  std::vector<double> scale(tokens);
  for (int t = 0; t < tokens; ++t) {
    scale[t] = 0;
    for (int r = 0; r < c.ranks; ++r) scale[t] += out.handle.isTokenInRank[t * c.ranks + r];
  }
  const double diff = calcDiff(in.x.data(), scale.data(), back.combinedX.data(), tokens, o.hidden);
  ok &= diff < (ep::isInt8(c.quant) ? 3e-3 : 5e-6);
  if (mpi) {  // --compare mpi: the same outputs through plain MPI
    mpi->dispatch(in.x.data(), in.topkIdx.data(), in.topkWeights.data());
    ok &= mpi->numRecv == static_cast<std::size_t>(out.numRecvTokens);
    if (ep::isInt8(c.quant)) {
      ok &= std::equal(mpi->recvXInt8.begin(), mpi->recvXInt8.end(), out.recvXInt8.begin());
      ok &= std::equal(mpi->recvScales.begin(), mpi->recvScales.end(), out.recvScales.begin());
    } else {
      ok &= std::memcmp(mpi->recvX.data(), out.recvX.data(), mpi->recvX.size() * 2) == 0;
    }
    ok &= std::equal(mpi->recvTopkIdx.begin(), mpi->recvTopkIdx.end(), out.recvTopkIdx.begin());
    mpi->combine(out.recvX.data());
    ok &= std::memcmp(mpi->combined.data(), back.combinedX.data(), mpi->combined.size() * 2) == 0;
  }
  return trueOnEveryRank(c.comm, ok);
}

void runNormal(Ctx& c, int tokens, std::vector<Record>& records) {
  const EpOptions& o = c.o;
  const EpData in = makeEpData(1, c.rank, tokens, o.hidden, o.topk, o.experts, false);
  const ep::DispatchInputs d = dispatchInputs(c, in, tokens, /*dequantize=*/false);
  ep::DispatchOutputs out;
  c.buffer.dispatch(d, out);
  // Expert outputs for combine: the received tokens in bf16.
  std::vector<Bf16> expertOut(static_cast<std::size_t>(out.numRecvTokens) * o.hidden);
  if (ep::isInt8(c.quant)) {
    for (int i = 0; i < out.numRecvTokens; ++i) {
      ep::dequantizeInt8(&out.recvXInt8[i * o.hidden], &out.recvScales[i * out.numScales], o.hidden,
                         ep::quantGroupSize(c.quant, o.hidden), &expertOut[i * o.hidden]);
    }
  } else {
    std::copy(out.recvX.begin(), out.recvX.end(), expertOut.begin());
  }
  ep::CombineOutputs back;
  const ep::DispatchHandle handle = out.handle;
  ep::CombineInputs ci{expertOut.data(), o.hidden, &handle, nullptr, 0, false};
  const auto [td, tc] = timeIt(
      c, [&] { c.buffer.dispatch(d, out); }, [] {}, [&] { c.buffer.combine(ci, back); });
  const double recv = meanOverRanks(c.comm, static_cast<double>(out.numRecvTokens));
  Record r{"epcomm",
           "normal",
           tokens,
           out.handle.numRounds,
           td * 1e6,
           tc * 1e6,
           recv * wireRow(c.quant, o.hidden) / td / 1e9,
           recv * 2 * o.hidden / tc / 1e9,
           out.bytesSent,
           c.buffer.footprintBytes(),
           std::nullopt};
  r.netDispatch = c.netDispatch;
  r.netCombine = c.netCombine;
  std::unique_ptr<MpiEp> mpi;  // --compare mpi: the check compares its outputs too
  if (o.compareMpi) {
    mpi = std::make_unique<MpiEp>(MPI_COMM_WORLD,
                                  MpiShape{tokens, o.hidden, o.topk, o.experts, c.quant, 0});
  }
  if (o.check) r.pass = checkNormal(c, tokens, mpi.get());
  records.push_back(r);
  if (o.compareMpi) {
    mpi = std::make_unique<MpiEp>(MPI_COMM_WORLD,
                                  MpiShape{tokens, o.hidden, o.topk, o.experts, c.quant, 0});
    const auto [md, mc] = timeIt(
        c, [&] { mpi->dispatch(in.x.data(), in.topkIdx.data(), in.topkWeights.data()); }, [] {},
        [&] { mpi->combine(expertOut.data()); });
    Record m{"mpi",
             "normal",
             tokens,
             1,
             md * 1e6,
             mc * 1e6,
             recv * wireRow(c.quant, o.hidden) / md / 1e9,
             recv * 2 * o.hidden / mc / 1e9,
             0,
             mpi->footprintBytes(),
             r.pass};
    m.netDispatch = c.netDispatch;
    m.netCombine = c.netCombine;
    mpi->dispatch(in.x.data(), in.topkIdx.data(), in.topkWeights.data());
    m.dispatchBytes = mpi->bytesSent;
    records.push_back(m);
  }
}

// ---- low-latency mode ----

bool checkLowLatency(Ctx& c, int tokens, MpiEp* mpi) {
  const EpOptions& o = c.o;
  const EpData in = makeEpData(98, c.rank, tokens, o.hidden, o.topk, o.experts, true);
  ep::LowLatencyDispatchInputs d{
      in.x.data(), tokens, o.hidden, in.topkIdx.data(), o.topk, o.experts, c.quant, true, false};
  d.zeroCopy = o.zeroCopyDispatch;
  ep::LowLatencyDispatchOutputs out;
  c.buffer.lowLatencyDispatch(d, out);
  const int local = o.experts / c.ranks;
  const std::size_t rowsPerExpert = static_cast<std::size_t>(out.maxTokens) * c.ranks;
  // The rows as recvX lays them out (gathered after a zero-copy dispatch).
  const Bf16* recvX = out.recvX;
  std::unique_ptr<Bf16[]> gathered;
  if (out.recvRows) {
    gathered.reset(new Bf16[local * rowsPerExpert * o.hidden]);
    copyReceivedRows(out, o.hidden, gathered.get());
    recvX = gathered.get();
  }
  // The reference, from every source's inputs regenerated here: per (local expert, source),
  // the source's tokens naming the expert, in token order.
  std::vector<std::vector<int>> sent(static_cast<std::size_t>(local) * c.ranks);
  for (int s = 0; s < c.ranks; ++s) {
    const EpData src = makeEpData(98, s, tokens, o.hidden, o.topk, o.experts, true);
    for (std::size_t m = 0; m < src.topkIdx.size(); ++m) {
      const std::int64_t g = src.topkIdx[m];
      if (g >= 0 && g / local == c.rank) {
        sent[(g % local) * c.ranks + s].push_back(static_cast<int>(m / o.topk));
      }
    }
  }
  bool ok = true;
  std::vector<Bf16> want(o.hidden);
  for (int e = 0; e < local; ++e) {
    std::int64_t begin = 0;
    for (int s = 0; s < c.ranks; ++s) {
      const std::vector<int>& rows = sent[e * c.ranks + s];
      const auto count = static_cast<std::int64_t>(rows.size());
      const std::int64_t range = out.layoutRange[e * c.ranks + s];
      ok &= (range >> 32) == begin && (range & 0xffffffff) == count;
      for (std::int64_t i = 0; i < count && ok; ++i) {
        const std::size_t row = e * rowsPerExpert + begin + i;
        ok &= out.srcInfo[row] == rows[i];
        expectedRow(s, rows[i], o.hidden, c.quant, want.data());
        ok &= std::memcmp(want.data(), recvX + row * o.hidden, o.hidden * sizeof(Bf16)) == 0;
      }
      begin += count;
    }
    ok &= out.recvCount[e] == begin;
  }
  ep::LowLatencyCombineInputs ci{
      recvX, in.topkIdx.data(), in.topkWeights.data(), out.handle, false, nullptr, false};
  if (o.zeroCopy) {  // the identity experts write the zero-copy buffer
    copyValidRows(out, o.hidden, recvX, c.buffer.lowLatencyCombineBuffer(out.handle));
    ci.x = nullptr;
    ci.zeroCopy = true;
  }
  ep::LowLatencyCombineOutputs back;
  c.buffer.lowLatencyCombine(ci, back);
  std::vector<double> scale(tokens, 0);
  for (int t = 0; t < tokens; ++t) {
    for (int k = 0; k < o.topk; ++k) {
      if (in.topkIdx[t * o.topk + k] >= 0) scale[t] += in.topkWeights[t * o.topk + k];
    }
  }
  const double diff = calcDiff(in.x.data(), scale.data(), back.combinedX, tokens, o.hidden);
  ok &= diff < (ep::isInt8(c.quant) ? 3e-3 : 5e-6);
  if (mpi) {  // --compare mpi: the same outputs through plain MPI
    mpi->llDispatch(in.x.data(), in.topkIdx.data());
    for (int e = 0; e < local; ++e) {
      ok &= mpi->llCount[e] == out.recvCount[e];
      const std::size_t first = e * rowsPerExpert * o.hidden;
      const std::size_t n = static_cast<std::size_t>(out.recvCount[e]) * o.hidden;
      ok &= ep::isInt8(c.quant) ? std::memcmp(&mpi->recvXInt8[first], out.recvXInt8 + first, n) == 0
                                : std::memcmp(&mpi->recvX[first], recvX + first, n * 2) == 0;
    }
    std::vector<Bf16> x(recvX, recvX + local * rowsPerExpert * o.hidden);
    mpi->llCombine(x.data(), in.topkWeights.data());
    ok &= std::memcmp(mpi->combined.data(), back.combinedX, mpi->combined.size() * 2) == 0;
  }
  return trueOnEveryRank(c.comm, ok);
}

void runLowLatency(Ctx& c, int tokens, std::vector<Record>& records) {
  const EpOptions& o = c.o;
  const EpData in = makeEpData(2, c.rank, tokens, o.hidden, o.topk, o.experts, false);
  ep::LowLatencyDispatchInputs d{
      in.x.data(), tokens, o.hidden, in.topkIdx.data(), o.topk, o.experts, c.quant, false, false};
  d.zeroCopy = o.zeroCopyDispatch;
  ep::LowLatencyDispatchOutputs out;
  c.buffer.lowLatencyDispatch(d, out);
  const int local = o.experts / c.ranks;
  const std::size_t rowsPerExpert = static_cast<std::size_t>(out.maxTokens) * c.ranks;
  const std::size_t cells = local * rowsPerExpert * o.hidden;
  // The expert outputs, in the expert-major layout; only the valid rows are ever touched
  // (the arrays are left uninitialised, so the rest is never committed).
  std::unique_ptr<Bf16[]> expertOut(new Bf16[cells]), combineIn(new Bf16[cells]);
  std::size_t received = 0;
  for (int e = 0; e < local; ++e) {
    received += out.recvCount[e];
    const std::size_t first = e * rowsPerExpert * o.hidden;
    for (std::size_t i = 0; i < static_cast<std::size_t>(out.recvCount[e]) * o.hidden; ++i) {
      expertOut[first + i] = toBf16(0.5f + static_cast<float>(i % 7));
    }
  }
  // The experts (untimed): read every received row, as an expert GEMM would, and write the
  // outputs where the combine reads them: the Buffer's zero-copy combine buffer
  // (--zero-copy) or an array of the caller's. bf16: identity experts; int8: the rows are
  // read (summed) and the fixed outputs above written.
  volatile std::int64_t sink = 0;
  auto runExperts = [&](const Bf16* inX, const std::int8_t* inInt8, Bf16* to) {
    if (out.recvRows && inX == out.recvX) return copyReceivedRows(out, o.hidden, to);
    if (inX) return copyValidRows(out, o.hidden, inX, to);
    for (int e = 0; e < local; ++e) {
      const std::size_t first = e * rowsPerExpert * o.hidden;
      const std::size_t n = static_cast<std::size_t>(out.recvCount[e]) * o.hidden;
      std::int64_t sum = 0;
      for (std::size_t i = 0; i < n; ++i) sum += inInt8[first + i];
      sink = sink + sum;
    }
    copyValidRows(out, o.hidden, expertOut.get(), to);
  };
  ep::LowLatencyCombineOutputs back;
  std::vector<Bf16> combined(static_cast<std::size_t>(tokens) * o.hidden);
  const auto [td, tc] = timeIt(
      c, [&] { c.buffer.lowLatencyDispatch(d, out); },
      [&] {
        runExperts(out.recvX, out.recvXInt8,
                   o.zeroCopy ? c.buffer.lowLatencyCombineBuffer(out.handle) : combineIn.get());
      },
      [&] {
        ep::LowLatencyCombineInputs ci{o.zeroCopy ? nullptr : combineIn.get(),
                                       in.topkIdx.data(),
                                       in.topkWeights.data(),
                                       out.handle,
                                       o.zeroCopy,
                                       combined.data(),
                                       false};
        c.buffer.lowLatencyCombine(ci, back);
      });
  const double recv = meanOverRanks(c.comm, static_cast<double>(received));
  Record r{"epcomm",
           "low_latency",
           tokens,
           1,
           td * 1e6,
           tc * 1e6,
           recv * wireRow(c.quant, o.hidden) / td / 1e9,
           recv * 2 * o.hidden / tc / 1e9,
           out.bytesSent,
           c.buffer.footprintBytes(),
           std::nullopt};
  r.netDispatch = c.netDispatch;
  r.netCombine = c.netCombine;
  std::unique_ptr<MpiEp> mpi;  // --compare mpi: the check compares its outputs too
  const MpiShape shape{tokens, o.hidden, o.topk, o.experts, c.quant, out.maxTokens};
  if (o.compareMpi) mpi = std::make_unique<MpiEp>(MPI_COMM_WORLD, shape);
  if (o.check) r.pass = checkLowLatency(c, tokens, mpi.get());
  records.push_back(r);
  if (o.compareMpi) {
    mpi = std::make_unique<MpiEp>(MPI_COMM_WORLD, shape);
    const auto [md, mc] = timeIt(
        c, [&] { mpi->llDispatch(in.x.data(), in.topkIdx.data()); },
        [&] {
          runExperts(ep::isInt8(c.quant) ? nullptr : mpi->recvX.data(),
                     ep::isInt8(c.quant) ? mpi->recvXInt8.data() : nullptr, combineIn.get());
        },
        [&] { mpi->llCombine(combineIn.get(), in.topkWeights.data()); });
    mpi->llDispatch(in.x.data(), in.topkIdx.data());
    records.push_back({"mpi", "low_latency", tokens, 1, md * 1e6, mc * 1e6,
                       recv * wireRow(c.quant, o.hidden) / md / 1e9, recv * 2 * o.hidden / mc / 1e9,
                       mpi->bytesSent, mpi->footprintBytes(), r.pass});
    records.back().netDispatch = c.netDispatch;
    records.back().netCombine = c.netCombine;
  }
}

// ---- main ----

// `comm` is the caller's, so that a failure can abort it.
int run(int argc, char** argv, std::unique_ptr<Communicator>& comm) {
  const Config env = Config::fromEnvironment();
  comm = Communicator::initFromEnvironment(env);
  const int rank = comm->rank(), ranks = comm->size();
  int code = 0;
  const std::optional<EpOptions> parsed = parseEpOptions(argc, argv, rank == 0, code);
  if (!parsed) return code;
  const EpOptions& o = *parsed;
  if (o.experts % ranks != 0 || o.topk > o.experts) {
    if (rank == 0)
      std::fprintf(stderr, "ep-bench: --experts must be a multiple of %d ranks and >= --topk\n",
                   ranks);
    return 1;
  }
  EpEffectiveConfig eff = resolveEpConfig(o.flags, env);
  const bool normal = o.mode != "low_latency", lowLatency = o.mode != "normal";
  // auto: --tokens sizes the prefill batch; the decode batch is T.
  const int normalTokens = o.mode != "low_latency" && o.tokens ? o.tokens : 4096;
  const int llTokens = o.mode == "low_latency" && o.tokens ? o.tokens : eff.buffer.llMaxTokens;
  if (lowLatency && llTokens > eff.buffer.llMaxTokens) {
    if (rank == 0) {
      std::fprintf(stderr,
                   "ep-bench: --tokens %d exceeds the low-latency capacity T=%d (%s); raise T "
                   "(--ll-max-tokens or that variable) or lower --tokens\n",
                   llTokens, eff.buffer.llMaxTokens, eff.llMaxTokens.source.c_str());
    }
    return 1;
  }
  if (o.compareMpi) {
    if (const std::string problem = openMpiWorld(*comm); !problem.empty()) {
      std::fprintf(stderr, "ep-bench: rank %d: %s\n", rank, problem.c_str());
      return 1;
    }
  }
  ep::Buffer buffer(*comm, eff.buffer);
  // What ran: auto resolved by the library.
  eff.transport.source = fmt::format("{}: {}", eff.transport.value, eff.transport.source);
  eff.transport.value = buffer.transport() == ep::Transport::kWindow ? "window" : "collective";
  eff.backend.source = fmt::format("{}: {}", eff.backend.value, eff.backend.source);
  eff.backend.value = comm->backendName();
  Ctx c{o, *comm, buffer, rank, ranks, eff.quant};
  std::vector<Record> records;
  if (normal) runNormal(c, normalTokens, records);
  if (lowLatency) runLowLatency(c, llTokens, records);

  bool failed = false;
  nlohmann::json list = nlohmann::json::array();
  if (rank == 0) {
    std::printf(
        "# ep-bench: backend %s ranks %d hidden %d topk %d experts %d quant %s mode %s "
        "iters %d warmup %d threads %d%s%s\n",
        comm->backendName().c_str(), ranks, o.hidden, o.topk, o.experts,
        eff.quantText.value.c_str(), o.mode.c_str(), o.iters, o.warmup, epcomm::threads(),
        o.zeroCopy ? " zero-copy" : "", o.zeroCopyDispatch ? " zero-copy-dispatch" : "");
    std::printf("# config: %s\n", describe(eff).c_str());
    std::printf("# %-6s %-11s %6s %6s %12s %12s %10s %10s %14s %14s %6s %12s %12s\n", "impl",
                "mode", "tokens", "rounds", "dispatch_us", "combine_us", "disp_GB/s", "comb_GB/s",
                "dispatch_bytes", "buffer_bytes", "check", "net_disp_B", "net_comb_B");
  }
  for (const Record& r : records) {
    failed |= r.pass.has_value() && !*r.pass;
    if (rank != 0) continue;
    std::printf("  %-6s %-11s %6d %6d %12.1f %12.1f %10.2f %10.2f %14zu %14zu %6s %12.0f %12.0f\n",
                r.impl.c_str(), r.mode.c_str(), r.tokens, r.rounds, r.dispatchUs, r.combineUs,
                r.dispatchGBps, r.combineGBps, r.dispatchBytes, r.bufferBytes,
                !r.pass   ? "-"
                : *r.pass ? "pass"
                          : "fail",
                r.netDispatch, r.netCombine);
    list.push_back(
        {{"impl", r.impl},
         {"backend", comm->backendName()},
         {"mode", r.mode},
         {"quant", eff.quantText.value},
         {"quant_source", eff.quantText.source},
         {"ll_max_tokens", eff.buffer.llMaxTokens},
         {"ll_max_tokens_source", eff.llMaxTokens.source},
         {"rounds", r.rounds},
         {"max_rounds", eff.buffer.rounds},
         {"max_rounds_source", eff.rounds.source},
         {"round_tokens", eff.buffer.roundTokens},
         {"round_tokens_source", eff.roundTokens.source},
         {"combine_rounds", eff.buffer.combineRounds},
         {"combine_rounds_source", eff.combineRounds.source},
         {"transport", eff.transport.value},
         {"transport_source", eff.transport.source},
         {"backend_source", eff.backend.source},
         {"ranks", ranks},
         {"threads", r.impl == "epcomm" ? epcomm::threads() : 1},
         {"tokens", r.tokens},
         {"hidden", o.hidden},
         {"topk", o.topk},
         {"experts", o.experts},
         {"dispatch_us", r.dispatchUs},
         {"combine_us", r.combineUs},
         {"dispatch_GBps", r.dispatchGBps},
         {"combine_GBps", r.combineGBps},
         {"dispatch_bytes", r.dispatchBytes},
         {"network_bytes", {{"dispatch", r.netDispatch}, {"combine", r.netCombine}}},
         {"buffer_bytes", r.bufferBytes},
         {"zero_copy", o.zeroCopy && r.impl == "epcomm" && r.mode == "low_latency"},
         {"zero_copy_dispatch",
          o.zeroCopyDispatch && r.impl == "epcomm" && r.mode == "low_latency"},
         {"check", !r.pass ? nlohmann::json(nullptr) : nlohmann::json(*r.pass ? "pass" : "fail")}});
  }
  if (rank == 0 && !o.json.empty()) {
    std::ofstream f(o.json);
    f << list.dump(2) << "\n";
    if (!f) {
      std::fprintf(stderr, "ep-bench: cannot write %s\n", o.json.c_str());
      failed = true;
    }
  }
  std::fflush(stdout);
  return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<Communicator> comm;
  int code = 1;
  try {
    code = run(argc, argv, comm);
  } catch (const std::exception& e) {
    // A failure on one rank may leave the others inside a call: abort them all.
    std::fprintf(stderr, "ep-bench: %s\n", e.what());
    std::fflush(stderr);
    abortRanks(comm.get());
  }
  comm.reset();
  closeMpiWorld();
  return code;
}
