// coll-bench: nccl-tests style benchmark of epcomm's collectives.
//
//   mpirun -np N coll-bench -b 8 -e 256M -f 2 -o allreduce -d f32 --redop sum -c 1 [--compare mpi]
//   EPCOMM_INIT_ADDR=host:port EPCOMM_RANK=r EPCOMM_SIZE=N coll-bench ...   (each rank by hand)
//
// The ranks are epcomm's (Communicator::initFromEnvironment: mpirun, ranks started by hand, or
// any launcher); timings, checks, the table and --json go through its communicator, rank 0
// printing and writing. MPI serves --compare mpi alone, which needs the ranks launched by
// mpirun (MPI_COMM_WORLD must be epcomm's world; bench/bench_ranks.h).
//
// Columns and formulas follow nccl-tests (doc/PERFORMANCE.md): size is the bytes of the
// whole operation (allgather, reducescatter, alltoall: count * ranks * typesize, count being
// the per-rank block), algbw = size / time, busbw = algbw * factor with factor 2(n-1)/n for
// allreduce, (n-1)/n for allgather, reducescatter and alltoall, 1 for broadcast and
// sendrecv. time is the average of -n iterations, the maximum over ranks. Each size runs
// out of place and in place (nccl-tests' two column groups).
//
// --compare mpi runs the MPI library's own collective (MPI_Allreduce, MPI_Allgather,
// MPI_Reduce_scatter_block, MPI_Bcast, MPI_Alltoall, MPI_Sendrecv; bench/coll_bench_mpi.h) on
// the same sizes, with the same warmup, iterations and barrier, on the line after epcomm's.
// avg on MPI divides inside the timed loop. In-place reducescatter on MPI is MPI_IN_PLACE
// (result at the start of the buffer); on epcomm it is NCCL's recv == send + rank * count.
//
// --compare flat (ranks on several hosts, where epcomm runs two levels: shm in each host, the
// network backend among them): the same collective on a second communicator over the
// network backend alone (flat, as EPCOMM_BACKEND=ucx makes it), same buffers, rows "flat".
// Every row's network_bytes (JSON) / "net" column: the bytes the hosts' network interfaces
// sent per call during the timed loop, summed over the hosts (bench/network_bytes.h).
//
// After the sizes, a memcpy reference from the same run: rank 0's single-thread memcpy GB/s
// at the largest size, and the largest size's out-of-place busbw as a fraction of it.
// --registered: epcomm's send and recv come from Communicator::allocate (registered memory,
// which the shm backend's collectives use zero-copy); its rows are labelled
// "epcomm-registered". MPI still runs on ordinary heap buffers (what an MPI user has), with
// the same sizes, inputs and checks.
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
#include "bench/bench_ranks.h"
#include "bench/coll_bench_mpi.h"
#include "bench/network_bytes.h"
#include "comm/communicator.h"
#include "comm/workers.h"

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

enum class Impl { kEpcomm, kMpi, kFlat };

struct Measurement {
  double timeUs = 0;
  double algbw = 0;
  double busbw = 0;
  std::optional<long long> wrong;  // nullopt: not checked (-c 0, or not checkable: N/A)
  std::string algorithm;           // epcomm: the backend's algorithm (Communicator::lastAlgorithm)
  int threads = 1;                 // epcomm: worker threads per rank (comm/workers.h); mpi: 1
  double networkBytes = 0;         // per call, summed over the hosts (network_bytes.h)
};

// Where one implementation's calls read and write.
struct Buffers {
  std::byte* send;
  std::byte* recv;
};

struct Bench {
  const Options& options;
  Communicator& comm;
  MpiPeer* mpi;        // null without --compare mpi
  Communicator* flat;  // null without --compare flat
  Buffers epcomm;      // from Communicator::allocate with --registered, else as mpi's
  Buffers mpiBuffers;  // ordinary (heap) memory, always
};

Measurement measure(Bench& b, Impl impl, bool inPlace, const RunShape& s) {
  const std::size_t es = dtypeSize(s.dtype);
  const std::size_t block = static_cast<std::size_t>(s.rank) * s.count * es;
  // Where the call reads and writes, where the input goes and where the result is read.
  const Buffers& buffers = impl == Impl::kEpcomm ? b.epcomm : b.mpiBuffers;
  Communicator* comm = impl == Impl::kFlat ? b.flat : &b.comm;
  std::byte* send = inPlace ? buffers.recv : buffers.send;
  std::byte* recv = buffers.recv;
  if (inPlace && s.collective == Collective::kAllGather) send = buffers.recv + block;
  if (inPlace && s.collective == Collective::kReduceScatter && impl != Impl::kMpi) recv += block;
  std::byte* input = send;
  std::byte* result = recv;
  const auto call = [&] {
    if (impl == Impl::kMpi)
      b.mpi->run(s, send, recv, inPlace);
    else
      runEpcomm(*comm, s, send, recv);
  };
  const auto prepare = [&] {
    poison(s.dtype, buffers.recv, std::max(inputCount(s), resultCount(s)));
    fillInput(s, input);
  };

  prepare();
  for (int i = 0; i < b.options.warmupIters; ++i) call();
  const std::uint64_t sentBefore = hostSentBytes();  // before the barrier: aligned starts
  b.comm.barrier();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < b.options.iters; ++i) call();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
                   b.options.iters;
  const std::uint64_t sentAfter = hostSentBytes();
  const std::string algorithm = impl == Impl::kMpi ? std::string() : comm->lastAlgorithm();
  seconds = maxOverRanks(b.comm, seconds);

  Measurement m;
  m.algorithm = algorithm;
  m.threads = impl == Impl::kMpi ? 1 : epcomm::threads();
  m.networkBytes = networkBytesPerCall(b.comm, sentBefore, sentAfter, b.options.iters);
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
    m.wrong = sumOverRanks(b.comm, wrong);
  }
  return m;
}

// ---- output ----

std::string formatTime(double us) {
  char text[32];
  std::snprintf(text, sizeof text, us >= 10000.0 ? "%7.0f" : us >= 100.0 ? "%7.1f" : "%7.2f", us);
  return text;
}

void printHeader(const Options& o, Communicator& comm) {
  char line[512];
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::snprintf(line, sizeof line, "#  Rank %2d Pid %6d on %10s localRank %2d\n", comm.rank(),
                static_cast<int>(getpid()), host, comm.localRank());
  std::vector<char> lines(sizeof line * comm.size());
  comm.allGather(line, lines.data(), sizeof line, DataType::kU8);
  if (comm.rank() != 0) return;
  std::printf("# coll-bench %s: backend %s ranks %d dtype %s redop %s root %d%s\n",
              std::string(toString(o.collective)).c_str(), comm.backendName().c_str(), comm.size(),
              std::string(toString(o.dtype)).c_str(),
              usesReduceOp(o.collective) ? std::string(toString(o.redop)).c_str() : "none",
              usesRoot(o.collective) ? o.root : -1,
              o.compareMpi && o.compareFlat ? " compare: mpi, flat"
              : o.compareMpi                ? " compare: mpi"
              : o.compareFlat               ? " compare: flat"
                                            : "");
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
  std::printf("  %6s  net %.0f B  %s threads %d\n", impl, outOfPlace.networkBytes,
              outOfPlace.algorithm.empty() ? "" : ("algo " + outOfPlace.algorithm).c_str(),
              outOfPlace.threads);
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
          {"network_bytes", m.networkBytes},
          {"algorithm", m.algorithm},
          {"threads", m.threads}};
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
// rank 0 alone (the others wait in a barrier) memcpy's `bytes` from the send buffer to the
// recv buffer, both warm, one thread. GB/s counts the bytes copied once (not read + write).
struct MemcpyReference {
  std::size_t bytes = 0;
  double gbps = 0;
};

MemcpyReference measureMemcpy(const Bench& b, std::size_t bytes) {
  MemcpyReference ref{bytes, 0};
  b.comm.barrier();
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
  b.comm.barrier();
  return ref;
}

int runBenchmark(int argc, char** argv) {
  std::unique_ptr<Communicator> comm;
  try {
    comm = Communicator::initFromEnvironment();
    const int rank = comm->rank();
    int exitCode = 0;
    const std::optional<Options> options = parseOptions(argc, argv, rank == 0, exitCode);
    if (!options) return exitCode;
    const Options& o = *options;
    if (const std::string problem = preflight(o, comm->size()); !problem.empty()) {
      return fail(rank == 0, problem);
    }
    if (o.compareMpi) {
      if (const std::string problem = openMpiWorld(*comm); !problem.empty()) {
        return fail(true, fmt::format("rank {}: {}", rank, problem));
      }
    }
    std::ofstream json;
    if (rank == 0 && !o.jsonPath.empty()) json.open(o.jsonPath);
    if (!trueOnEveryRank(*comm, rank != 0 || o.jsonPath.empty() || json.is_open())) {
      return fail(rank == 0, "--json: cannot write " + o.jsonPath);
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
        return fail(rank == 0, std::string("--registered: ") + e.what());
      }
    }
    std::optional<MpiPeer> mpi;
    if (o.compareMpi) mpi.emplace();
    std::unique_ptr<Communicator> flat;
    if (o.compareFlat) {
      const std::string name = comm->backendName();
      const std::size_t plus = name.find('+');
      if (plus == std::string::npos) {
        return fail(rank == 0, "--compare flat: the backend " + name +
                                   " is one level (flat needs ranks on several hosts, where "
                                   "epcomm runs two levels)");
      }
      Config flatConfig = comm->config();
      flatConfig.backend = name.substr(plus + 1);
      Communicator& world = *comm;
      flat = Communicator::init(
          [&world](const void* in, void* out, std::size_t bytes) {
            world.allGather(in, out, bytes, DataType::kU8);
          },
          rank, comm->size(), flatConfig);
    }
    AlignedBuffer send(o.maxBytes), recv(o.maxBytes);
    const Buffers heap{send.data(), recv.data()};
    const Buffers epcommBuffers = o.registered ? Buffers{static_cast<std::byte*>(regSend->data()),
                                                         static_cast<std::byte*>(regRecv->data())}
                                               : heap;
    Bench bench{o, *comm, mpi ? &*mpi : nullptr, flat.get(), epcommBuffers, heap};
    printHeader(o, *comm);
    exitCode = runSizes(bench, json);
    // Collective, before the communicator (comm/window.h).
    regSend.reset();
    regRecv.reset();
    mpi.reset();
    flat.reset();
    comm.reset();
    return exitCode;
  } catch (const std::exception& e) {
    // A failure on one rank may leave the others inside a collective: abort them all.
    // epcomm's messages name the rank already.
    if (dynamic_cast<const Error*>(&e) || !comm)
      std::fprintf(stderr, "coll-bench: %s\n", e.what());
    else
      std::fprintf(stderr, "coll-bench: rank %d: %s\n", comm->rank(), e.what());
    std::fflush(stderr);
    abortRanks(comm.get());
    return 1;
  }
}

int runSizes(Bench& b, std::ofstream& json) {
  const Options& o = b.options;
  const bool root = b.comm.rank() == 0;
  nlohmann::json records = nlohmann::json::array();
  long long failedTests = 0;
  double busbwSum[3] = {0, 0, 0};
  int busbwCount[3] = {0, 0, 0};
  std::size_t largestBytes = 0;
  double largestBusbw[3] = {0, 0, 0};  // out of place, per impl
  for (std::size_t bytes = o.minBytes; bytes <= o.maxBytes; bytes = o.nextSize(bytes)) {
    RunShape s{o.collective, o.dtype, o.redop, o.root, b.comm.rank(), b.comm.size(), 0};
    s.count = callCount(o.collective, bytes, o.dtype, s.ranks);
    if (s.count > 0) {
      for (Impl impl : {Impl::kEpcomm, Impl::kFlat, Impl::kMpi}) {
        if ((impl == Impl::kMpi && !b.mpi) || (impl == Impl::kFlat && !b.flat)) continue;
        // Registered results are labelled as such, in the table and in the JSON.
        const char* name = impl == Impl::kMpi    ? "mpi"
                           : impl == Impl::kFlat ? "flat"
                           : o.registered        ? "epcomm-registered"
                                                 : "epcomm";
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
          const std::string backend =
              impl == Impl::kFlat ? b.flat->backendName() : b.comm.backendName();
          records.push_back(record(s, backend, name, oop, false));
          records.push_back(record(s, backend, name, ip, true));
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
  const int code = runBenchmark(argc, argv);
  closeMpiWorld();
  return code;
}
