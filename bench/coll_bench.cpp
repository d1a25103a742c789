// coll-bench: nccl-tests style benchmark of epcomm's collectives.
//
//   mpirun -np N coll-bench -b 8 -e 256M -f 2 -o allreduce -d f32 --redop sum -c 1 [--compare mpi]
//
// Columns and formulas follow nccl-tests (doc/PERFORMANCE.md): size is the bytes of the
// whole operation (allgather, reducescatter, alltoall: count * ranks * typesize, count being
// the per-rank block), algbw = size / time, busbw = algbw * factor with factor 2(n-1)/n for
// allreduce, (n-1)/n for allgather, reducescatter and alltoall, 1 for broadcast and
// sendrecv. time is the average of -n iterations, the maximum over ranks. Each size runs
// out of place and in place (nccl-tests' two column groups).
//
// --compare mpi runs the MPI library's own collective (MPI_Allreduce, MPI_Allgather,
// MPI_Reduce_scatter_block, MPI_Bcast, MPI_Alltoall, MPI_Sendrecv) on the same sizes, with
// the same warmup, iterations and barrier, on the line after epcomm's. MPI has no bf16/f16:
// they travel as MPI_Type_contiguous(2, MPI_BYTE) with commutative user ops that compute in
// f32 and round back. MPI has no avg: MPI_SUM, then each rank divides its result (inside the
// timed loop). Out-of-place broadcast on MPI copies send to recv on the root, then MPI_Bcast
// (NCCL semantics). In-place reducescatter on MPI is MPI_IN_PLACE (result at the start of the
// buffer); on epcomm it is NCCL's recv == send + rank * count.
//
// After the sizes, a memcpy reference from the same run: rank 0's single-thread memcpy GB/s
// at the largest size, and the largest size's out-of-place busbw as a fraction of it.
// --registered: epcomm's send and recv come from Communicator::allocate (registered memory,
// which the shm backend's collectives use zero-copy); its rows are labelled
// "epcomm-registered". MPI still runs on ordinary heap buffers (what an MPI user has), with
// the same sizes, inputs and checks.
#include <mpi.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "bench/bench_check.h"
#include "bench/bench_options.h"
#include "comm/communicator.h"
#include "comm/half.h"

namespace {

using namespace epcomm;
using namespace epcomm::bench;

constexpr std::size_t kAlignment = 64;

// Zero-filled (first-touched by this rank) 64-byte aligned memory.
class AlignedBuffer {
 public:
  explicit AlignedBuffer(std::size_t bytes) {
    const std::size_t rounded =
        std::max(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
    data_.reset(static_cast<std::byte*>(std::aligned_alloc(kAlignment, rounded)));
    if (!data_) throw std::bad_alloc();
    std::memset(data_.get(), 0, rounded);
  }
  std::byte* data() const { return data_.get(); }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> data_;
};

// ---- the MPI library's own collectives ----

template <typename H>
H fromFloat(float f) {
  if constexpr (std::is_same_v<H, Bf16>)
    return toBf16(f);
  else
    return toF16(f);
}

template <typename H, ReduceOp kOp>
void halfReduce(void* in, void* inout, int* len, MPI_Datatype*) {
  const H* a = static_cast<const H*>(in);
  H* b = static_cast<H*>(inout);
  for (int i = 0; i < *len; ++i) {
    const float x = toFloat(a[i]), y = toFloat(b[i]);
    float r = x + y;
    if constexpr (kOp == ReduceOp::kProd) r = x * y;
    if constexpr (kOp == ReduceOp::kMax) r = std::max(x, y);
    if constexpr (kOp == ReduceOp::kMin) r = std::min(x, y);
    b[i] = fromFloat<H>(r);
  }
}

template <typename T>
void divideBy(void* data, std::size_t count, int ranks) {
  T* p = static_cast<T*>(data);
  if constexpr (std::is_same_v<T, Bf16> || std::is_same_v<T, F16>) {
    for (std::size_t i = 0; i < count; ++i)
      p[i] = fromFloat<T>(toFloat(p[i]) / static_cast<float>(ranks));
  } else {
    for (std::size_t i = 0; i < count; ++i) p[i] = static_cast<T>(p[i] / static_cast<T>(ranks));
  }
}

class MpiPeer {
 public:
  explicit MpiPeer(MPI_Comm comm) : comm_(comm) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &ranks_);
    MPI_Type_contiguous(2, MPI_BYTE, &half_);
    MPI_Type_commit(&half_);
    // ops_: bf16 sum prod max min, then f16 sum prod max min (epcomm's ReduceOp order).
    MPI_User_function* const kHalfOps[] = {
        &halfReduce<Bf16, ReduceOp::kSum>, &halfReduce<Bf16, ReduceOp::kProd>,
        &halfReduce<Bf16, ReduceOp::kMax>, &halfReduce<Bf16, ReduceOp::kMin>,
        &halfReduce<F16, ReduceOp::kSum>,  &halfReduce<F16, ReduceOp::kProd>,
        &halfReduce<F16, ReduceOp::kMax>,  &halfReduce<F16, ReduceOp::kMin>};
    for (int i = 0; i < 8; ++i) MPI_Op_create(kHalfOps[i], 1, &ops_[i]);
  }
  ~MpiPeer() {
    for (MPI_Op& op : ops_) MPI_Op_free(&op);
    MPI_Type_free(&half_);
  }
  MpiPeer(const MpiPeer&) = delete;
  MpiPeer& operator=(const MpiPeer&) = delete;

  // One call of the collective; in place per MPI (MPI_IN_PLACE) when inPlace.
  void run(const RunShape& s, void* send, void* recv, bool inPlace) {
    const int c = static_cast<int>(s.count);
    const MPI_Datatype t = type(s.dtype);
    const std::size_t bytes = s.count * dtypeSize(s.dtype);
    switch (s.collective) {
      case Collective::kAllReduce:
        MPI_Allreduce(inPlace ? MPI_IN_PLACE : send, recv, c, t, op(s), comm_);
        if (s.redop == ReduceOp::kAvg) divide(s.dtype, recv, s.count);
        break;
      case Collective::kAllGather:
        if (inPlace)
          MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, recv, c, t, comm_);
        else
          MPI_Allgather(send, c, t, recv, c, t, comm_);
        break;
      case Collective::kReduceScatter:
        MPI_Reduce_scatter_block(inPlace ? MPI_IN_PLACE : send, recv, c, t, op(s), comm_);
        if (s.redop == ReduceOp::kAvg) divide(s.dtype, recv, s.count);
        break;
      case Collective::kBroadcast:
        if (!inPlace && rank_ == s.root) std::memcpy(recv, send, bytes);
        MPI_Bcast(recv, c, t, s.root, comm_);
        break;
      case Collective::kAllToAll:
        if (inPlace)
          MPI_Alltoall(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, recv, c, t, comm_);
        else
          MPI_Alltoall(send, c, t, recv, c, t, comm_);
        break;
      case Collective::kSendRecv: {
        const int next = (rank_ + 1) % ranks_, prev = (rank_ + ranks_ - 1) % ranks_;
        if (inPlace)
          MPI_Sendrecv_replace(recv, c, t, next, 0, prev, 0, comm_, MPI_STATUS_IGNORE);
        else
          MPI_Sendrecv(send, c, t, next, 0, recv, c, t, prev, 0, comm_, MPI_STATUS_IGNORE);
        break;
      }
    }
  }

 private:
  MPI_Datatype type(DataType d) const {
    switch (d) {
      case DataType::kI8: return MPI_INT8_T;
      case DataType::kU8: return MPI_UINT8_T;
      case DataType::kI32: return MPI_INT32_T;
      case DataType::kI64: return MPI_INT64_T;
      case DataType::kF32: return MPI_FLOAT;
      case DataType::kBf16:
      case DataType::kF16: return half_;
    }
    return MPI_DATATYPE_NULL;
  }
  MPI_Op op(const RunShape& s) const {
    const int index = s.redop == ReduceOp::kAvg ? 0 : static_cast<int>(s.redop);  // avg = sum
    if (s.dtype == DataType::kBf16) return ops_[index];
    if (s.dtype == DataType::kF16) return ops_[4 + index];
    static constexpr MPI_Op kBuiltin[] = {MPI_SUM, MPI_PROD, MPI_MAX, MPI_MIN};
    return kBuiltin[index];
  }
  void divide(DataType d, void* data, std::size_t count) const {
    switch (d) {
      case DataType::kI8: return divideBy<std::int8_t>(data, count, ranks_);
      case DataType::kU8: return divideBy<std::uint8_t>(data, count, ranks_);
      case DataType::kI32: return divideBy<std::int32_t>(data, count, ranks_);
      case DataType::kI64: return divideBy<std::int64_t>(data, count, ranks_);
      case DataType::kF32: return divideBy<float>(data, count, ranks_);
      case DataType::kBf16: return divideBy<Bf16>(data, count, ranks_);
      case DataType::kF16: return divideBy<F16>(data, count, ranks_);
    }
  }

  MPI_Comm comm_;
  int rank_ = 0;
  int ranks_ = 1;
  MPI_Datatype half_ = MPI_DATATYPE_NULL;
  MPI_Op ops_[8] = {};
};

// ---- epcomm ----

void runEpcomm(Communicator& comm, const RunShape& s, void* send, void* recv) {
  switch (s.collective) {
    case Collective::kAllReduce: comm.allReduce(send, recv, s.count, s.dtype, s.redop); break;
    case Collective::kAllGather: comm.allGather(send, recv, s.count, s.dtype); break;
    case Collective::kReduceScatter:
      comm.reduceScatter(send, recv, s.count, s.dtype, s.redop);
      break;
    case Collective::kBroadcast: comm.broadcast(send, recv, s.count, s.dtype, s.root); break;
    case Collective::kAllToAll: comm.allToAll(send, recv, s.count, s.dtype); break;
    case Collective::kSendRecv: {
      // epcomm's send and recv block: even ranks send first, odd ranks receive first, so the
      // ring never waits on itself.
      const int next = (s.rank + 1) % s.ranks, prev = (s.rank + s.ranks - 1) % s.ranks;
      if (s.rank % 2 == 0) {
        comm.send(send, s.count, s.dtype, next);
        comm.recv(recv, s.count, s.dtype, prev);
      } else {
        comm.recv(recv, s.count, s.dtype, prev);
        comm.send(send, s.count, s.dtype, next);
      }
      break;
    }
  }
}

// ---- measurement ----

enum class Impl { kEpcomm, kMpi };

struct Measurement {
  double timeUs = 0;
  double algbw = 0;
  double busbw = 0;
  std::optional<long long> wrong;  // nullopt: not checked (-c 0, or not checkable: N/A)
  std::string algorithm;           // epcomm: the backend's algorithm (Communicator::lastAlgorithm)
};

// Where one implementation's calls read and write.
struct Buffers {
  std::byte* send;
  std::byte* recv;
};

struct Bench {
  const Options& options;
  Communicator& comm;
  MPI_Comm mpiComm;
  MpiPeer* mpi;        // null without --compare mpi
  Buffers epcomm;      // from Communicator::allocate with --registered, else as mpi's
  Buffers mpiBuffers;  // ordinary (heap) memory, always
};

Measurement measure(Bench& b, Impl impl, bool inPlace, const RunShape& s) {
  const std::size_t es = dtypeSize(s.dtype);
  const std::size_t block = static_cast<std::size_t>(s.rank) * s.count * es;
  // Where the call reads and writes, where the input goes and where the result is read.
  const Buffers& buffers = impl == Impl::kEpcomm ? b.epcomm : b.mpiBuffers;
  std::byte* send = inPlace ? buffers.recv : buffers.send;
  std::byte* recv = buffers.recv;
  if (inPlace && s.collective == Collective::kAllGather) send = buffers.recv + block;
  if (inPlace && s.collective == Collective::kReduceScatter && impl == Impl::kEpcomm) recv += block;
  std::byte* input = send;
  std::byte* result = recv;
  const auto call = [&] {
    if (impl == Impl::kEpcomm)
      runEpcomm(b.comm, s, send, recv);
    else
      b.mpi->run(s, send, recv, inPlace);
  };
  const auto prepare = [&] {
    poison(s.dtype, buffers.recv, std::max(inputCount(s), resultCount(s)));
    fillInput(s, input);
  };

  prepare();
  for (int i = 0; i < b.options.warmupIters; ++i) call();
  MPI_Barrier(b.mpiComm);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < b.options.iters; ++i) call();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
                   b.options.iters;
  const std::string algorithm = impl == Impl::kEpcomm ? b.comm.lastAlgorithm() : std::string();
  MPI_Allreduce(MPI_IN_PLACE, &seconds, 1, MPI_DOUBLE, MPI_MAX, b.mpiComm);

  Measurement m;
  m.algorithm = algorithm;
  m.timeUs = seconds * 1e6;
  m.algbw = static_cast<double>(operationBytes(s)) / 1e9 / seconds;
  m.busbw = m.algbw * busFactor(s.collective, s.ranks);
  // In-place send/recv on one buffer is a race for blocking send + recv (as for nccl-tests).
  const bool checkable =
      !(inPlace && impl == Impl::kEpcomm && s.collective == Collective::kSendRecv);
  if (b.options.check && checkable) {
    // Out of place, the last timed iteration's output is checkable too (inputs are intact).
    long long wrong = inPlace ? 0 : static_cast<long long>(countWrong(s, result));
    prepare();
    call();
    wrong += static_cast<long long>(countWrong(s, result));
    MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_LONG_LONG, MPI_SUM, b.mpiComm);
    m.wrong = wrong;
  }
  return m;
}

// ---- output ----

std::string formatTime(double us) {
  char text[32];
  std::snprintf(text, sizeof text, us >= 10000.0 ? "%7.0f" : us >= 100.0 ? "%7.1f" : "%7.2f", us);
  return text;
}

void printHeader(const Options& o, const Communicator& comm, MPI_Comm mpiComm) {
  char line[512];
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::snprintf(line, sizeof line, "#  Rank %2d Pid %6d on %10s localRank %2d\n", comm.rank(),
                static_cast<int>(getpid()), host, comm.localRank());
  std::vector<char> lines(comm.rank() == 0 ? sizeof line * comm.size() : 1);
  MPI_Gather(line, sizeof line, MPI_CHAR, lines.data(), sizeof line, MPI_CHAR, 0, mpiComm);
  if (comm.rank() != 0) return;
  std::printf("# coll-bench %s: backend %s ranks %d dtype %s redop %s root %d%s\n",
              std::string(toString(o.collective)).c_str(), comm.backendName().c_str(), comm.size(),
              std::string(toString(o.dtype)).c_str(),
              usesReduceOp(o.collective) ? std::string(toString(o.redop)).c_str() : "none",
              usesRoot(o.collective) ? o.root : -1, o.compareMpi ? " compare: mpi" : "");
  std::printf(
      "# minBytes %zu maxBytes %zu step: %s warmup iters: %d iters: %d validation: %d "
      "registered: %d\n",
      o.minBytes, o.maxBytes, o.stepDescription().c_str(), o.warmupIters, o.iters, o.check ? 1 : 0,
      o.registered ? 1 : 0);
  if (o.compareMpi) {
    std::printf(
        "# mpi: bf16/f16 as a 2-byte type with f32-accumulating user ops; avg = MPI_SUM "
        "then divide (timed)\n");
  }
  std::printf("#\n# Using ranks\n");
  for (int r = 0; r < comm.size(); ++r) std::printf("%s", lines.data() + r * sizeof line);
  std::printf("#\n");
  std::printf("# %10s  %12s  %8s  %6s  %6s           out-of-place                       in-place\n",
              "", "", "", "", "");
  std::printf("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s %6s  %7s  %6s  %6s %6s  %6s\n", "size",
              "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time", "algbw",
              "busbw", "#wrong", "impl");
  std::printf("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %5s  %7s  %6s  %6s  %5s\n", "(B)",
              "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)",
              "");
  std::fflush(stdout);
}

std::string wrongText(const Measurement& m) {
  return m.wrong ? fmt::format("{}", *m.wrong) : std::string("N/A");
}

void printRow(const RunShape& s, const char* impl, const Measurement& outOfPlace,
              const Measurement& inPlace) {
  std::printf("%12zu  %12zu  %8s  %6s  %6d", operationBytes(s), s.count,
              std::string(toString(s.dtype)).c_str(),
              usesReduceOp(s.collective) ? std::string(toString(s.redop)).c_str() : "none",
              usesRoot(s.collective) ? s.root : -1);
  for (const Measurement* m : {&outOfPlace, &inPlace}) {
    std::printf("  %7s  %6.2f  %6.2f  %5s", formatTime(m->timeUs).c_str(), m->algbw, m->busbw,
                wrongText(*m).c_str());
  }
  std::printf("  %6s  %s\n", impl,
              outOfPlace.algorithm.empty() ? "" : ("algo " + outOfPlace.algorithm).c_str());
  std::fflush(stdout);
}

nlohmann::json record(const RunShape& s, const std::string& backend, const char* impl,
                      const Measurement& m, bool inPlace) {
  return {{"op", toString(s.collective)},
          {"impl", impl},
          {"backend", backend},
          {"dtype", toString(s.dtype)},
          {"redop", usesReduceOp(s.collective) ? toString(s.redop) : std::string_view("none")},
          {"ranks", s.ranks},
          {"bytes", operationBytes(s)},
          {"count", s.count},
          {"time_us", m.timeUs},
          {"algbw", m.algbw},
          {"busbw", m.busbw},
          {"wrong", m.wrong ? nlohmann::json(*m.wrong) : nlohmann::json(nullptr)},
          {"in_place", inPlace},
          {"algorithm", m.algorithm}};
}

// Problems every rank finds alike from the options and the rank count ("" if none).
std::string preflight(const Options& o, int ranks) {
  if (usesRoot(o.collective) && o.root >= ranks) {
    return fmt::format("-R/--root {} is not a rank ({} ranks)", o.root, ranks);
  }
  if (o.collective == Collective::kSendRecv && ranks < 2) return "sendrecv needs at least 2 ranks";
  if (o.compareMpi && o.maxBytes / dtypeSize(o.dtype) > static_cast<std::size_t>(INT_MAX)) {
    return fmt::format("--compare mpi: -e/--maxbytes {} needs element counts beyond MPI's int",
                       o.maxBytes);
  }
  return {};
}

int fail(bool print, const std::string& message) {
  if (print) std::fprintf(stderr, "coll-bench: %s\n", message.c_str());
  return 1;
}

int runSizes(Bench& b, std::ofstream& json);

// The machine's own copy speed, measured in the same run as a yardstick for the large sizes:
// rank 0 alone (the others wait in MPI_Barrier) memcpy's `bytes` from the send buffer to the
// recv buffer, both warm, one thread. GB/s counts the bytes copied once (not read + write).
struct MemcpyReference {
  std::size_t bytes = 0;
  double gbps = 0;
};

MemcpyReference measureMemcpy(const Bench& b, std::size_t bytes) {
  MemcpyReference ref{bytes, 0};
  MPI_Barrier(b.mpiComm);
  if (b.comm.rank() == 0 && bytes > 0) {
    for (int i = 0; i < 3; ++i) std::memcpy(b.mpiBuffers.recv, b.mpiBuffers.send, bytes);
    // At least 5 copies and about 0.1 s.
    const int iters = static_cast<int>(std::clamp<std::size_t>((1000u << 20) / bytes, 5, 100000));
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) {
      std::memcpy(b.mpiBuffers.recv, b.mpiBuffers.send, bytes);
      asm volatile("" ::: "memory");  // every copy happens
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / iters;
    ref.gbps = static_cast<double>(bytes) / 1e9 / seconds;
  }
  MPI_Barrier(b.mpiComm);
  return ref;
}

int runBenchmark(int argc, char** argv) {
  int worldRank = 0, worldSize = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &worldRank);
  MPI_Comm_size(MPI_COMM_WORLD, &worldSize);
  int exitCode = 0;
  const std::optional<Options> options = parseOptions(argc, argv, worldRank == 0, exitCode);
  if (!options) return exitCode;
  const Options& o = *options;
  if (const std::string problem = preflight(o, worldSize); !problem.empty()) {
    return fail(worldRank == 0, problem);
  }
  std::ofstream json;
  int jsonOk = 1;
  if (worldRank == 0 && !o.jsonPath.empty()) {
    json.open(o.jsonPath);
    jsonOk = json.is_open() ? 1 : 0;
  }
  MPI_Bcast(&jsonOk, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (!jsonOk) return fail(worldRank == 0, "--json: cannot write " + o.jsonPath);

  std::unique_ptr<Communicator> comm;
  try {
    comm = Communicator::initFromEnvironment();
    int mismatch = comm->rank() != worldRank || comm->size() != worldSize;
    MPI_Allreduce(MPI_IN_PLACE, &mismatch, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (mismatch) {
      comm.reset();
      return fail(worldRank == 0,
                  "epcomm's ranks differ from MPI_COMM_WORLD's; run under "
                  "mpirun without EPCOMM_INIT_ADDR/EPCOMM_RANK/EPCOMM_SIZE");
    }
    // --registered: epcomm's buffers come from Communicator::allocate (the backend's
    // registered memory, zero-copy where it has such paths); MPI keeps ordinary memory. A
    // backend without windows refuses alike on every rank (kInvalidUsage).
    std::unique_ptr<RegisteredBuffer> regSend, regRecv;
    if (o.registered) {
      try {
        regSend = comm->allocate(std::max<std::size_t>(o.maxBytes, 1));
        regRecv = comm->allocate(std::max<std::size_t>(o.maxBytes, 1));
      } catch (const Error& e) {
        if (e.code() != ErrorCode::kInvalidUsage) throw;
        const std::string problem = std::string("--registered: ") + e.what();
        comm.reset();
        return fail(worldRank == 0, problem);
      }
    }
    MPI_Comm mpiComm;
    MPI_Comm_dup(MPI_COMM_WORLD, &mpiComm);
    std::optional<MpiPeer> mpi;
    if (o.compareMpi) mpi.emplace(mpiComm);
    AlignedBuffer send(o.maxBytes), recv(o.maxBytes);
    const Buffers heap{send.data(), recv.data()};
    const Buffers epcommBuffers = o.registered ? Buffers{static_cast<std::byte*>(regSend->data()),
                                                         static_cast<std::byte*>(regRecv->data())}
                                               : heap;
    Bench bench{o, *comm, mpiComm, mpi ? &*mpi : nullptr, epcommBuffers, heap};
    printHeader(o, *comm, mpiComm);
    exitCode = runSizes(bench, json);
    // Collective, before the communicator (comm/window.h).
    regSend.reset();
    regRecv.reset();
    mpi.reset();
    MPI_Comm_free(&mpiComm);
    comm.reset();
    return exitCode;
  } catch (const std::exception& e) {
    // A failure on one rank may leave the others inside a collective: abort them all.
    // epcomm's messages name the rank already.
    if (dynamic_cast<const Error*>(&e))
      std::fprintf(stderr, "coll-bench: %s\n", e.what());
    else
      std::fprintf(stderr, "coll-bench: rank %d: %s\n", worldRank, e.what());
    std::fflush(stderr);
    if (comm) comm->abort();
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
}

int runSizes(Bench& b, std::ofstream& json) {
  const Options& o = b.options;
  const bool root = b.comm.rank() == 0;
  nlohmann::json records = nlohmann::json::array();
  long long failedTests = 0;
  double busbwSum[2] = {0, 0};
  int busbwCount[2] = {0, 0};
  std::size_t largestBytes = 0;
  double largestBusbw[2] = {0, 0};  // out of place, per impl
  for (std::size_t bytes = o.minBytes; bytes <= o.maxBytes; bytes = o.nextSize(bytes)) {
    RunShape s{o.collective, o.dtype, o.redop, o.root, b.comm.rank(), b.comm.size(), 0};
    s.count = callCount(o.collective, bytes, o.dtype, s.ranks);
    if (s.count > 0) {
      for (Impl impl : {Impl::kEpcomm, Impl::kMpi}) {
        if (impl == Impl::kMpi && !b.mpi) continue;
        // Registered results are labelled as such, in the table and in the JSON.
        const char* name =
            impl == Impl::kMpi ? "mpi" : (o.registered ? "epcomm-registered" : "epcomm");
        const Measurement oop = measure(b, impl, false, s);
        const Measurement ip = measure(b, impl, true, s);
        for (const Measurement* m : {&oop, &ip}) {
          if (m->wrong && *m->wrong > 0) ++failedTests;
          busbwSum[static_cast<int>(impl)] += m->busbw;
          ++busbwCount[static_cast<int>(impl)];
        }
        largestBytes = operationBytes(s);
        largestBusbw[static_cast<int>(impl)] = oop.busbw;
        if (root) {
          printRow(s, name, oop, ip);
          records.push_back(record(s, b.comm.backendName(), name, oop, false));
          records.push_back(record(s, b.comm.backendName(), name, ip, true));
        }
      }
    }
    // The next size, without overflowing.
    if (o.stepBytes > 0 ? bytes > o.maxBytes - o.stepBytes
                        : o.stepFactor < 2 || bytes > o.maxBytes / o.stepFactor) {
      break;
    }
  }
  // The copy the reference measures stays within the buffers (maxBytes each).
  const MemcpyReference ref = measureMemcpy(b, std::min(largestBytes, o.maxBytes));
  if (root) {
    std::printf("# Out of bounds values : %lld %s\n", failedTests, failedTests ? "FAILED" : "OK");
    std::printf("# Avg bus bandwidth    : %g \n",
                busbwCount[0] ? busbwSum[0] / busbwCount[0] : 0.0);
    if (b.mpi) {
      std::printf("# Avg bus bandwidth mpi: %g \n",
                  busbwCount[1] ? busbwSum[1] / busbwCount[1] : 0.0);
    }
    if (ref.gbps > 0) {
      std::printf("# memcpy reference     : %g GB/s (rank 0 alone, 1 thread, %zu B, this run)\n",
                  ref.gbps, ref.bytes);
      std::printf("# largest size busbw / memcpy: epcomm %.2f", largestBusbw[0] / ref.gbps);
      if (b.mpi) std::printf(", mpi %.2f", largestBusbw[1] / ref.gbps);
      std::printf(" (out of place, %zu B)\n", largestBytes);
      records.push_back({{"op", "memcpy_reference"},
                         {"impl", "memcpy"},
                         {"ranks", 1},
                         {"bytes", ref.bytes},
                         {"gbps", ref.gbps},
                         {"largest_bytes", largestBytes},
                         {"busbw_fraction_epcomm", largestBusbw[0] / ref.gbps},
                         {"busbw_fraction_mpi",
                          b.mpi ? nlohmann::json(largestBusbw[1] / ref.gbps) : nlohmann::json()}});
    }
    std::printf("#\n");
    std::fflush(stdout);
    if (json.is_open()) json << records.dump(2) << "\n";
  }
  return failedTests > 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  const int code = runBenchmark(argc, argv);
  MPI_Finalize();
  return code;
}
