#include "backends/ucx/call_check.h"

#include <cstring>
#include <vector>

#include "backends/ucx/recursive_doubling.h"

namespace epcomm::ucx {

void CallCheck::exchange(Transport& t, const Reduction* red) {
  const std::size_t slots = message_.slots();
  recursiveDoubling(
      t, message_.data(), message_.bytes(), [&](const void* lower, const void* upper, void* out) {
        // CallCheckMessage::combine reduces `in` into `inout`, `in` first: into
        // upper when that is out, else into a copy of upper (kept across calls).
        auto* o = static_cast<std::int64_t*>(out);
        std::int64_t* inout = o;
        if (out != upper) {
          const auto* up = static_cast<const std::int64_t*>(upper);
          upper_.assign(up, up + slots);
          inout = upper_.data();
        }
        CallCheckMessage::combine(
            static_cast<const std::int64_t*>(lower), inout, slots,
            [&](const std::int64_t* first, std::int64_t* second, std::size_t count, int, int) {
              if (red) red->combine(second, first, second, count);
            });
        if (inout != o) std::memcpy(o, inout, slots * sizeof(std::int64_t));
      });
}

void CallCheck::settle(Transport& t, int rank, const char* op) {
  if (!message_.armed()) return;
  message_.prepare();
  exchange(t, nullptr);
  message_.judge(rank, op);
}

bool CallCheck::settleAllReduce(Transport& t, int rank, const char* op, const Reduction& red,
                                const void* send, void* recv, std::size_t count) {
  if (!message_.armed()) return false;
  const std::size_t bytes = count * red.elementSize();
  const bool folds =
      message_.prepare(count, static_cast<int>(red.dtype), static_cast<int>(red.op), bytes);
  if (folds) std::memcpy(message_.payload(), send, bytes);
  exchange(t, folds ? &red : nullptr);
  message_.judge(rank, op);  // throws on every rank alike when the record does not agree
  if (!folds) return false;
  red.finish(message_.payload(), count, t.size());
  std::memcpy(recv, message_.payload(), bytes);
  return true;
}

}  // namespace epcomm::ucx
