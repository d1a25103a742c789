// The ucx backend's collective algorithms (backends/ucx/algorithms.h) over threads
// (ThreadTransport, ucx_thread_transport.h). Each test runs a list of cases on every rank
// count from 1 to 9 and 16, under eager and lazy delivery. Checked: results against a
// reference (integers exact, floats within a tolerance of a double reduction), every rank's
// bits equal, send buffers unchanged, nothing written outside recv's blocks, every op
// waited, no message left unmatched.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <latch>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backends/ucx/algorithms.h"
#include "comm/half.h"
#include "tests/unit/ucx_thread_transport.h"

namespace epcomm::ucx {
namespace {

using namespace test;  // the harness: Fabric, ThreadTransport, runRanks

constexpr int kSizes[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 16};
constexpr std::size_t kGuard = 64;
constexpr auto kGuardByte = std::byte{0x5a};
constexpr auto kUntouched = std::byte{0x77};

// `bytes` with a guard zone either side; data() is the usable part.
struct Guarded {
  explicit Guarded(std::size_t bytes, std::byte fill = kUntouched)
      : all(bytes + 2 * kGuard, kGuardByte) {
    std::fill(data(), data() + bytes, fill);
  }
  std::byte* data() { return all.data() + kGuard; }
  std::size_t size() const { return all.size() - 2 * kGuard; }
  bool guardsIntact() const {
    const auto ok = [](std::byte b) { return b == kGuardByte; };
    return std::all_of(all.begin(), all.begin() + kGuard, ok) &&
           std::all_of(all.end() - kGuard, all.end(), ok);
  }
  Bytes bytes(std::size_t from, std::size_t n) { return Bytes(data() + from, data() + from + n); }
  Bytes all;
};

// Thread-safe list of problems found on the rank threads.
struct Problems {
  void add(const std::string& p) {
    std::lock_guard lock(mu);
    list.push_back(p);
  }
  void report() {
    for (std::size_t i = 0; i < list.size() && i < 20; ++i) ADD_FAILURE() << list[i];
    if (list.size() > 20) ADD_FAILURE() << list.size() - 20 << " more";
  }
  std::mutex mu;
  std::vector<std::string> list;
};

std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}
// Deterministic byte pattern for data of `who` (rank, peer, case) at offset i.
std::byte pattern(std::uint64_t who, std::size_t i) {
  return static_cast<std::byte>(mix(who * 0x9e3779b97f4a7c15ull + i) & 0xff);
}
Bytes patternBytes(std::uint64_t who, std::size_t n) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = pattern(who, i);
  return b;
}

// ---- reductions ----

const char* dtypeName(DataType d) {
  switch (d) {
    case DataType::kF32: return "f32";
    case DataType::kBf16: return "bf16";
    case DataType::kF16: return "f16";
    case DataType::kI32: return "i32";
    case DataType::kI64: return "i64";
    case DataType::kI8: return "i8";
    case DataType::kU8: return "u8";
  }
  return "?";
}
const char* opName(ReduceOp op) {
  static constexpr const char* kNames[] = {"sum", "prod", "max", "min", "avg"};
  return kNames[static_cast<int>(op)];
}

bool isFloat(DataType d) {
  return d == DataType::kF32 || d == DataType::kBf16 || d == DataType::kF16;
}

// Element i of rank `rank`'s input: floats in [-1, 1) ([0.5, 1.5) for prod), integers small
// enough that no sum or product overflows the type (but u8 and i8 products, which wrap the
// same way in any order).
double inputValue(DataType d, ReduceOp op, std::uint64_t seed, int rank, std::size_t i) {
  const std::uint64_t h = mix(seed * 1000003u + static_cast<std::uint64_t>(rank) * 7919u + i);
  if (isFloat(d)) {
    const double unit = static_cast<double>(h >> 11) * 0x1p-53;
    return op == ReduceOp::kProd ? 0.5 + unit : 2 * unit - 1;
  }
  if (op == ReduceOp::kProd) {
    static constexpr int kSigned[] = {1, 1, 2, -1};
    static constexpr int kUnsigned[] = {1, 1, 2, 3};
    return d == DataType::kU8 ? kUnsigned[h % 4] : kSigned[h % 4];
  }
  switch (d) {
    case DataType::kU8: return static_cast<double>(h % 26);
    case DataType::kI8: return static_cast<double>(h % 21) - 10;
    default: return static_cast<double>(h % 2001) - 1000;
  }
}

void store(DataType d, double v, std::byte* at) {
  const auto put = [&](auto x) { std::memcpy(at, &x, sizeof x); };
  switch (d) {
    case DataType::kF32: put(static_cast<float>(v)); break;
    case DataType::kBf16: put(toBf16(static_cast<float>(v)).bits); break;
    case DataType::kF16: put(toF16(static_cast<float>(v)).bits); break;
    case DataType::kI32: put(static_cast<std::int32_t>(v)); break;
    case DataType::kI64: put(static_cast<std::int64_t>(v)); break;
    case DataType::kI8: put(static_cast<std::int8_t>(v)); break;
    case DataType::kU8: put(static_cast<std::uint8_t>(v)); break;
  }
}

double load(DataType d, const std::byte* at) {
  const auto get = [&](auto x) {
    std::memcpy(&x, at, sizeof x);
    return x;
  };
  switch (d) {
    case DataType::kF32: return get(float{});
    case DataType::kBf16: return toFloat(Bf16{get(std::uint16_t{})});
    case DataType::kF16: return toFloat(F16{get(std::uint16_t{})});
    case DataType::kI32: return get(std::int32_t{});
    case DataType::kI64: return static_cast<double>(get(std::int64_t{}));
    case DataType::kI8: return get(std::int8_t{});
    case DataType::kU8: return get(std::uint8_t{});
  }
  return 0;
}

Bytes makeInput(DataType d, ReduceOp op, std::uint64_t seed, int rank, std::size_t count) {
  Bytes b(count * dtypeSize(d));
  for (std::size_t i = 0; i < count; ++i) {
    store(d, inputValue(d, op, seed, rank, i), b.data() + i * dtypeSize(d));
  }
  return b;
}

// Integers wrap to the type as the kernels' do (two's complement, C++20).
double wrapInteger(DataType d, std::uint64_t v) {
  switch (d) {
    case DataType::kI32: return static_cast<std::int32_t>(v);
    case DataType::kI64: return static_cast<double>(static_cast<std::int64_t>(v));
    case DataType::kI8: return static_cast<std::int8_t>(v);
    case DataType::kU8: return static_cast<std::uint8_t>(v);
    default: return 0;
  }
}

// "" when `got` (count elements) is the reduction of element `offset` + i of every input.
std::string checkReduced(DataType d, ReduceOp op, const std::vector<Bytes>& inputs,
                         std::size_t offset, const Bytes& got) {
  const std::size_t es = dtypeSize(d);
  const int size = static_cast<int>(inputs.size());
  for (std::size_t i = 0; i < got.size() / es; ++i) {
    const double v = load(d, got.data() + i * es);
    double want = 0;
    double tolerance = 0;
    if (isFloat(d)) {
      const double eps = d == DataType::kF32 ? 0x1p-23 : d == DataType::kBf16 ? 0x1p-7 : 0x1p-10;
      double sum = 0, magnitude = 0, prod = 1;
      double hi = -INFINITY, lo = INFINITY;
      for (const Bytes& in : inputs) {
        const double x = load(d, in.data() + (offset + i) * es);
        sum += x;
        magnitude += std::fabs(x);
        prod *= x;
        hi = std::max(hi, x);
        lo = std::min(lo, x);
      }
      switch (op) {
        case ReduceOp::kSum: want = sum, tolerance = eps * (size + 1) * magnitude; break;
        case ReduceOp::kAvg:
          want = sum / size, tolerance = eps * ((size + 1) * magnitude / size + std::fabs(want));
          break;
        case ReduceOp::kProd: want = prod, tolerance = eps * (size + 1) * std::fabs(prod); break;
        case ReduceOp::kMax: want = hi; break;
        case ReduceOp::kMin: want = lo; break;
      }
    } else {
      std::uint64_t sum = 0, prod = 1;
      double hi = -INFINITY, lo = INFINITY;
      for (const Bytes& in : inputs) {
        const double x = load(d, in.data() + (offset + i) * es);
        sum += static_cast<std::uint64_t>(static_cast<std::int64_t>(x));
        prod *= static_cast<std::uint64_t>(static_cast<std::int64_t>(x));
        hi = std::max(hi, x);
        lo = std::min(lo, x);
      }
      switch (op) {
        case ReduceOp::kSum: want = wrapInteger(d, sum); break;
        case ReduceOp::kAvg:
          want = static_cast<double>(static_cast<std::int64_t>(wrapInteger(d, sum)) / size);
          break;
        case ReduceOp::kProd: want = wrapInteger(d, prod); break;
        case ReduceOp::kMax: want = hi; break;
        case ReduceOp::kMin: want = lo; break;
      }
    }
    if (!(std::fabs(v - want) <= tolerance)) {
      return "element " + std::to_string(i) + ": got " + std::to_string(v) + ", want " +
             std::to_string(want) + " (tolerance " + std::to_string(tolerance) + ")";
    }
  }
  return "";
}

// Where the result goes: its own buffer, in place (all-reduce: send == recv; reduce-scatter:
// recv is this rank's block of send) or, for reduce-scatter only, recv == send.
enum class Place { kApart, kInPlace, kSendIsRecv };

struct ReduceCase {
  DataType dtype;
  ReduceOp op;
  std::size_t count;  // all-reduce: of the whole; reduce-scatter: per rank
  Place place;
  std::size_t chunkBytes;
  std::string label() const {
    return std::string(dtypeName(dtype)) + " " + opName(op) + " count " + std::to_string(count) +
           " place " + std::to_string(static_cast<int>(place)) + " chunk " +
           std::to_string(chunkBytes);
  }
};

// Every dtype x op on counts 0, 1, < size, odd, not a multiple of 16 and several chunks (of
// 64, 100 or 1 byte), in place and apart; reduce-scatter adds recv == send.
std::vector<ReduceCase> reduceCases(int size, bool scatter) {
  std::vector<ReduceCase> cases;
  std::vector<Place> places = {Place::kApart, Place::kInPlace};
  if (scatter) places.push_back(Place::kSendIsRecv);
  const auto p = static_cast<std::size_t>(size);
  std::vector<std::size_t> counts = {0, 1, 17};
  if (size > 2) counts.push_back(p - 1);
  counts.push_back(scatter ? 45 : 3 * p + 46);
  for (DataType d : kAllDataTypes) {
    for (ReduceOp op : kAllReduceOps) {
      for (std::size_t n : counts) {
        for (Place place : places) {
          cases.push_back({d, op, n, place, n == 17 ? std::size_t{1} : std::size_t{64}});
        }
      }
    }
  }
  for (DataType d : {DataType::kF32, DataType::kBf16, DataType::kI64, DataType::kU8}) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax}) {
      for (Place place : places) cases.push_back({d, op, scatter ? 97u : 1001u, place, 100});
    }
  }
  cases.push_back({DataType::kF32, ReduceOp::kSum, scatter ? 5000u : 40000u, Place::kApart, 4096});
  cases.push_back(
      {DataType::kBf16, ReduceOp::kAvg, scatter ? 5000u : 40000u, Place::kInPlace, 1000});
  return cases;
}

using ReduceFn = std::function<void(Transport&, const Reduction&, const void* send, void* recv,
                                    std::size_t count, std::size_t chunkBytes)>;

// Runs every case of reduceCases on `size` ranks; scatter: fn is a reduce-scatter.
void testReduction(const ReduceFn& fn, bool scatter, int size, Delivery delivery) {
  const std::vector<ReduceCase> cases = reduceCases(size, scatter);
  std::vector<std::vector<Bytes>> results(cases.size(), std::vector<Bytes>(size));
  Problems problems;
  runRanks(size, delivery, [&](ThreadTransport& t) {
    for (std::size_t k = 0; k < cases.size(); ++k) {
      const ReduceCase& c = cases[k];
      t.label = c.label();
      const std::size_t es = dtypeSize(c.dtype);
      const std::size_t inCount = scatter ? c.count * size : c.count;
      const Bytes input = makeInput(c.dtype, c.op, k, t.rank(), inCount);
      Guarded send(input.size());
      std::copy(input.begin(), input.end(), send.data());
      Guarded apart(c.count * es, std::byte{0x33});
      const std::size_t at = scatter ? t.rank() * c.count * es : 0;
      Guarded& out = c.place == Place::kApart ? apart : send;
      const std::size_t outAt = c.place == Place::kInPlace ? at : 0;
      const Reduction red{c.dtype, c.op, kernels::detectedIsa()};
      fn(t, red, send.data(), out.data() + outAt, c.count, c.chunkBytes);
      t.endCollective();
      results[k][t.rank()] = out.bytes(outAt, c.count * es);
      if (!send.guardsIntact() || !apart.guardsIntact()) {
        problems.add(t.label + ": rank " + std::to_string(t.rank()) + " wrote past a buffer");
      }
      if (c.place == Place::kApart && send.bytes(0, input.size()) != input) {
        problems.add(t.label + ": rank " + std::to_string(t.rank()) + " changed send");
      }
    }
  });
  problems.report();
  if (testing::Test::HasFailure()) return;
  for (std::size_t k = 0; k < cases.size(); ++k) {
    const ReduceCase& c = cases[k];
    const std::size_t inCount = scatter ? c.count * size : c.count;
    std::vector<Bytes> inputs;
    for (int r = 0; r < size; ++r) inputs.push_back(makeInput(c.dtype, c.op, k, r, inCount));
    for (int r = 0; r < size; ++r) {
      const std::string error =
          checkReduced(c.dtype, c.op, inputs, scatter ? r * c.count : 0, results[k][r]);
      EXPECT_EQ(error, "") << "P=" << size << " " << name(delivery) << " rank " << r << " "
                           << c.label();
      // Every rank the same bits (reduce-scatter: nothing to compare).
      if (!scatter) {
        EXPECT_TRUE(results[k][r] == results[k][0])
            << "P=" << size << " " << name(delivery) << " rank " << r << " differs from rank 0, "
            << c.label();
      }
    }
  }
}

TEST(UcxAlgorithms, AllReduceRecursiveDoubling) {
  for (int size : kSizes) {
    for (Delivery d : kDeliveries) {
      testReduction(
          [](Transport& t, const Reduction& red, const void* send, void* recv, std::size_t count,
             std::size_t) { allReduceRecursiveDoubling(t, red, send, recv, count); },
          false, size, d);
    }
  }
}

TEST(UcxAlgorithms, AllReduceRing) {
  for (int size : kSizes) {
    for (Delivery d : kDeliveries) testReduction(allReduceRing, false, size, d);
  }
}

TEST(UcxAlgorithms, ReduceScatterRing) {
  for (int size : kSizes) {
    for (Delivery d : kDeliveries) testReduction(reduceScatterRing, true, size, d);
  }
}

// ---- data movement ----

// Rank `from`'s data for rank `to` in case k.
std::uint64_t who(std::size_t k, int from, int to = 0) {
  return (k << 16) ^ (static_cast<std::uint64_t>(from) << 8) ^ static_cast<std::uint64_t>(to);
}

// recv (bytes) must hold `want` at each (offset, data) and kUntouched everywhere else.
std::string checkLayout(Guarded& recv, const std::vector<std::pair<std::size_t, Bytes>>& want) {
  Bytes expected(recv.size(), kUntouched);
  for (const auto& [at, data] : want) std::copy(data.begin(), data.end(), expected.begin() + at);
  if (!recv.guardsIntact()) return "wrote past recv";
  const Bytes got = recv.bytes(0, recv.size());
  const auto diff = std::mismatch(got.begin(), got.end(), expected.begin());
  if (diff.first != got.end())
    return "recv byte " + std::to_string(diff.first - got.begin()) + " wrong";
  return "";
}

// Block sizes of allGatherV case k: all empty, 1 byte each, uneven with some empty, one rank
// only; in rank order or reversed with gaps.
struct Layout {
  std::vector<std::size_t> bytes, displs;
  std::size_t total = 0;
};
Layout gatherLayout(int size, std::size_t k) {
  Layout l;
  for (int b = 0; b < size; ++b) {
    const std::uint64_t h = mix(who(k, b));
    switch (k % 5) {
      case 0: l.bytes.push_back(0); break;
      case 1: l.bytes.push_back(1); break;
      case 2: l.bytes.push_back(b % 3 == 1 ? 0 : h % 301); break;
      case 3: l.bytes.push_back(b == size - 1 ? 1000 : 0); break;
      default: l.bytes.push_back(h % 97); break;
    }
  }
  l.displs.resize(size);
  const bool reversed = k % 2 == 1;
  for (int i = 0; i < size; ++i) {
    const int b = reversed ? size - 1 - i : i;
    l.displs[b] = l.total + (reversed ? 5 : 0);
    l.total = l.displs[b] + l.bytes[b];
  }
  return l;
}

TEST(UcxAlgorithms, AllGatherVRing) {
  constexpr std::size_t kChunks[] = {1, 7, 64, std::size_t{1} << 20};
  for (int size : kSizes) {
    for (Delivery d : kDeliveries) {
      Problems problems;
      runRanks(size, d, [&](ThreadTransport& t) {
        for (std::size_t k = 0; k < 40; ++k) {
          const Layout l = gatherLayout(size, k);
          const bool inPlace = (k / 5) % 2 == 1;
          const std::size_t chunk = kChunks[(k / 10) % 4];
          t.label = "case " + std::to_string(k) + " chunk " + std::to_string(chunk);
          const int r = t.rank();
          const Bytes mine = patternBytes(who(k, r), l.bytes[r]);
          Guarded recv(l.total);
          Guarded send(mine.size());
          std::copy(mine.begin(), mine.end(), inPlace ? recv.data() + l.displs[r] : send.data());
          allGatherVRing(t, inPlace ? recv.data() + l.displs[r] : send.data(), mine.size(),
                         recv.data(), l.bytes.data(), l.displs.data(), chunk);
          t.endCollective();
          std::vector<std::pair<std::size_t, Bytes>> want;
          for (int b = 0; b < size; ++b) {
            want.emplace_back(l.displs[b], patternBytes(who(k, b), l.bytes[b]));
          }
          const std::string error = checkLayout(recv, want);
          if (!error.empty() ||
              send.bytes(0, mine.size()) != (inPlace ? Bytes(mine.size(), kUntouched) : mine)) {
            problems.add(t.label + ": rank " + std::to_string(r) + ": " + error);
          }
        }
      });
      problems.report();
    }
  }
}

TEST(UcxAlgorithms, AllGatherBruck) {
  constexpr std::size_t kBlockBytes[] = {0, 1, 5, 64, 333};
  for (int size : kSizes) {
    for (Delivery d : kDeliveries) {
      Problems problems;
      runRanks(size, d, [&](ThreadTransport& t) {
        std::size_t k = 0;
        for (const std::size_t n : kBlockBytes) {
          for (const bool inPlace : {false, true}) {
            ++k;
            t.label = std::to_string(n) + " bytes, in place " + std::to_string(inPlace);
            const int r = t.rank();
            const Bytes mine = patternBytes(who(k, r), n);
            Guarded recv(n * size);
            Guarded send(n);
            std::copy(mine.begin(), mine.end(), inPlace ? recv.data() + r * n : send.data());
            allGatherBruck(t, inPlace ? recv.data() + r * n : send.data(), recv.data(), n);
            t.endCollective();
            std::vector<std::pair<std::size_t, Bytes>> want;
            for (int b = 0; b < size; ++b) want.emplace_back(b * n, patternBytes(who(k, b), n));
            const std::string error = checkLayout(recv, want);
            if (!error.empty() || !send.guardsIntact()) {
              problems.add(t.label + ": rank " + std::to_string(r) + ": " + error);
            }
          }
        }
      });
      problems.report();
    }
  }
}

TEST(UcxAlgorithms, BroadcastBinomial) {
  constexpr std::size_t kBytes[] = {0, 1, 100, 1000};
  constexpr std::size_t kChunks[] = {1, 7, 64, std::size_t{1} << 20};
  for (int size : kSizes) {
    for (Delivery d : kDeliveries) {
      Problems problems;
      runRanks(size, d, [&](ThreadTransport& t) {
        std::size_t k = 0;
        for (int root = 0; root < size; ++root) {
          for (const std::size_t n : kBytes) {
            for (const std::size_t chunk : kChunks) {
              if (chunk == 1 && n > 100) continue;
              ++k;
              t.label = "root " + std::to_string(root) + ", " + std::to_string(n) +
                        " bytes, chunk " + std::to_string(chunk);
              const Bytes data = patternBytes(who(k, root), n);
              Guarded buf(n);
              if (t.rank() == root) std::copy(data.begin(), data.end(), buf.data());
              broadcastBinomial(t, buf.data(), n, root, chunk);
              t.endCollective();
              const std::string error = checkLayout(buf, {{0, data}});
              if (!error.empty())
                problems.add(t.label + ": rank " + std::to_string(t.rank()) + ": " + error);
            }
          }
        }
      });
      problems.report();
    }
  }
}

TEST(UcxAlgorithms, AllToAllVPairwise) {
  for (int size : kSizes) {
    for (Delivery d : kDeliveries) {
      Problems problems;
      runRanks(size, d, [&](ThreadTransport& t) {
        const int r = t.rank();
        for (std::size_t k = 0; k < 12; ++k) {
          const bool inPlace = k % 2 == 1;
          const int window = k % 6 < 2 ? 1 : k % 6 < 4 ? 2 : size;
          // Bytes from s to d: random, a quarter empty; symmetric in place.
          const auto bytes = [&](int s, int to) -> std::size_t {
            const std::uint64_t h =
                inPlace ? mix(who(k, std::min(s, to), std::max(s, to))) : mix(who(k, s, to));
            return h % 4 == 0 ? 0 : (h >> 8) % 50;
          };
          t.label = "case " + std::to_string(k) + " window " + std::to_string(window);
          std::vector<std::size_t> sendBytes(size), sendDispls(size), recvBytes(size),
              recvDispls(size);
          std::size_t sendTotal = 0, recvTotal = 0;
          for (int p = 0; p < size; ++p) {
            sendBytes[p] = bytes(r, p);
            sendDispls[p] = sendTotal + 1;
            sendTotal = sendDispls[p] + sendBytes[p];
          }
          for (int p = size - 1; p >= 0; --p) {  // reversed, with gaps
            recvBytes[p] = bytes(p, r);
            recvDispls[p] = recvTotal + 3;
            recvTotal = recvDispls[p] + recvBytes[p];
          }
          if (inPlace) recvDispls = sendDispls, recvTotal = sendTotal;
          Guarded send(sendTotal);
          Guarded apart(recvTotal);
          std::vector<std::pair<std::size_t, Bytes>> sent, want;
          for (int p = 0; p < size; ++p) {
            sent.emplace_back(sendDispls[p], patternBytes(who(k, r, p), sendBytes[p]));
            std::copy(sent.back().second.begin(), sent.back().second.end(),
                      send.data() + sendDispls[p]);
            want.emplace_back(recvDispls[p], patternBytes(who(k, p, r), recvBytes[p]));
          }
          Guarded& recv = inPlace ? send : apart;
          allToAllVPairwise(t, send.data(), sendBytes.data(), sendDispls.data(), recv.data(),
                            recvBytes.data(), recvDispls.data(), window);
          const std::size_t inFlight = t.endCollective();
          std::string error = checkLayout(recv, want);
          if (inFlight > 2 * static_cast<std::size_t>(window)) {
            error += std::to_string(inFlight) + " ops in flight";
          }
          if (error.empty() && !inPlace) error = checkLayout(send, sent);
          if (!error.empty()) problems.add(t.label + ": rank " + std::to_string(r) + ": " + error);
        }
      });
      problems.report();
    }
  }
}

TEST(UcxAlgorithms, BarrierDissemination) {
  for (int size : kSizes) {
    for (Delivery d : kDeliveries) {
      constexpr int kRounds = 30;
      std::vector<std::atomic<int>> arrived(kRounds);
      Problems problems;
      runRanks(size, d, [&](ThreadTransport& t) {
        for (int round = 0; round < kRounds; ++round) {
          t.label = "round " + std::to_string(round);
          // One straggler per round.
          if (round % size == t.rank()) std::this_thread::sleep_for(std::chrono::microseconds(500));
          arrived[round].fetch_add(1);
          barrierDissemination(t);
          t.endCollective();
          if (arrived[round].load() != size) {
            problems.add("rank " + std::to_string(t.rank()) + " left " + t.label +
                         " before every rank arrived");
          }
        }
      });
      problems.report();
    }
  }
}

// The harness itself: a size mismatch and a message nobody sends fail (not hang), and lazy
// delivery moves a send's data only when it is waited.
TEST(UcxAlgorithms, ThreadTransportFailsLoudly) {
  EXPECT_NONFATAL_FAILURE(runRanks(2, Delivery::kLazy,
                                   [](ThreadTransport& t) {
                                     std::byte b[8]{};
                                     if (t.rank() == 0) t.postSend(1, 0, b, 4);
                                     if (t.rank() == 1) t.postRecv(0, 0, b, 8);
                                     t.waitAll();
                                   }),
                          "byte count mismatch");
  EXPECT_NONFATAL_FAILURE(runRanks(
                              2, Delivery::kEager,
                              [](ThreadTransport& t) {
                                std::byte b[8]{};
                                if (t.rank() == 1) t.postRecv(0, 3, b, 8);
                                t.waitAll();
                              },
                              std::chrono::milliseconds(200)),
                          "no completion within 200 ms");
  for (Delivery d : kDeliveries) {
    std::byte got{};
    std::latch posted(2);
    runRanks(2, d, [&](ThreadTransport& t) {
      std::byte b{1};
      if (t.rank() == 0) {
        t.postSend(1, 0, &b, 1);
        b = std::byte{2};  // a bug the lazy delivery shows
      } else {
        t.postRecv(0, 0, &got, 1);
      }
      posted.arrive_and_wait();  // the pair is matched, nothing moved yet
      t.waitAll();
    });
    EXPECT_EQ(got, d == Delivery::kEager ? std::byte{1} : std::byte{2}) << name(d);
  }
}

}  // namespace
}  // namespace epcomm::ucx
