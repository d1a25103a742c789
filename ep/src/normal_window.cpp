#include "ep/src/normal_window.h"

#include <algorithm>

#include "ep/src/normal_plan.h"
#include "ep/src/window_create.h"

namespace epcomm::ep {

std::size_t NormalWindow::bytesFor(int numRanks, std::size_t rowBytes, std::size_t metaBytes,
                                   std::size_t capacity) {
  const std::size_t region = alignUp(capacity * rowBytes, 64) + alignUp(capacity * metaBytes, 64);
  return static_cast<std::size_t>(numRanks) * std::max<std::size_t>(region, 64);
}

std::uint64_t NormalWindow::begin(Communicator& comm, std::size_t rowBytes, std::size_t metaBytes,
                                  std::size_t capacity) {
  const int R = comm.size();
  const std::size_t needed = bytesFor(R, rowBytes, metaBytes, capacity);
  if (!window_ || window_->bytes() < needed) {
    window_.reset();  // collective: every rank takes this branch (agreed values)
    window_ = createEpWindow(comm, needed, 2 * R,
                             "the normal-mode window is bounded by EPCOMM_EP_BUFFSIZE (lower it)");
  }
  comm_ = &comm;
  rowBytes_ = rowBytes;
  metaBytes_ = metaBytes;
  metaAt_ = alignUp(capacity * rowBytes, 64);
  region_ = needed / R;
  runs_.assign(R, RowRun{});
  return ++calls_;
}

void NormalWindow::putRow(int peer, std::size_t index, const void* src) {
  const auto* p = static_cast<const std::byte*>(src);
  const std::uintptr_t at = index * rowBytes_;
  if (runs_[peer].extend(at, p, rowBytes_)) return;
  flush(peer);
  runs_[peer].extend(at, p, rowBytes_);
}

void NormalWindow::flush(int peer) {
  RowRun& run = runs_[peer];
  if (run.count == 0) return;
  window_->put(peer, comm_->rank() * region_ + run.dst, run.src, run.count * rowBytes_);
  run = RowRun{};
}

void NormalWindow::putRows(int peer, const void* src, std::size_t count) {
  if (count > 0) window_->put(peer, comm_->rank() * region_, src, count * rowBytes_);
}

void NormalWindow::putMeta(int peer, const void* src, std::size_t count) {
  if (count > 0 && metaBytes_ > 0) {
    window_->put(peer, comm_->rank() * region_ + metaAt_, src, count * metaBytes_);
  }
}

void NormalWindow::flushAndSignal(int base) {
  const int R = comm_->size(), me = comm_->rank();
  for (int i = 1; i < R; ++i) {
    const int peer = (me + i) % R;
    flush(peer);
    window_->signal(peer, base + me, calls_, SignalOp::kSet);
  }
}

void NormalWindow::waitAll(int base) {
  const int R = comm_->size(), me = comm_->rank();
  for (int i = 1; i < R; ++i) {
    const int src = (me + R - i) % R;
    window_->waitSignal(base + src, calls_);
  }
}

}  // namespace epcomm::ep
