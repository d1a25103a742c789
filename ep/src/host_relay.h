// Normal mode across hosts, DeepEP's internode way (EPCOMM_EP_HOST_RELAY): a token crosses to
// each remote host at most once, to the rank with the sender's local index there (its rail
// peer), which forwards it inside its host to the ranks of the token's experts; combine
// sums each token's rows inside that host first and sends one row per token and host back.
//
// Built by the Buffer when the communicator spans several hosts with the same number of
// ranks on each: `hostComm` holds the ranks of this host (by local index), `railComm` the
// ranks with this local index (one per host, by host). Used for dispatches and combines in
// one round with the collective transport. Dispatch's outputs (layout, order, handle) are
// exactly the flat path's; combine rounds each host's partial sum to bf16 once before it
// crosses (as DeepEP's internode combine), so combinedX may differ from the flat path's in
// the last bf16 bit (and combinedTopkWeights in f32 summation order).
//
// One dispatch: the rows of each remote host (with a record per token: its index, which
// local ranks there need it, its topk ids, weights and int8 scales) go over the rail in one
// all-to-all-v; each rank then forwards what it received, and its own tokens for its own
// host, to the local ranks named (in-host all-to-all-v, the standard per-row metadata),
// grouped by source host; the receiver puts each row where the flat path would have. The
// handle keeps, per source host, the (token, local ranks) records this rank forwarded, which
// combine retraces: rows back to their forwarder (in host), a bf16 sum per token there
// (weighted when asked, in f32 in local-rank order), and one row per token and host back
// over the rail, summed at the source with its own row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "comm/communicator.h"
#include "ep/normal.h"

namespace epcomm::ep {

struct NormalPlan;

class HostRelay {
 public:
  // Collective over `comm`. nullptr where the ranks are on one host or the hosts hold
  // different numbers of ranks (every rank decides alike).
  static std::unique_ptr<HostRelay> create(Communicator& comm);

  // Dispatch of all tokens in one round (plan.numRounds == 1), after the layout and counts
  // are settled: fills the outputs as the flat path does, and out.handle's relay records.
  void dispatch(const DispatchInputs& in, DispatchOutputs& out, const NormalPlan& plan, Quant quant,
                int group);
  // Combine of a dispatch that ran here (handle.relayCounts set).
  void combine(const CombineInputs& in, CombineOutputs& out, int numTopk);

 private:
  HostRelay(Communicator& comm, std::vector<int> members, int hosts, int local);

  // Fills masks_ (per token and host, the local ranks there it goes to, this rank excepted)
  // and returns per host how many tokens go there.
  std::vector<std::int64_t> maskTokens(const DispatchHandle& h);
  // Per local index l: the rows this rank received from the sources with local index l (its
  // own excepted), which travel through local rank l.
  std::vector<std::int64_t> rowsBySourceIndex(const DispatchHandle& h) const;
  // Per local rank l: the forwarded records (h.relayRecords) whose mask names l.
  std::vector<std::int64_t> recordsPerLocal(const DispatchHandle& h) const;

  // The rank with local index l on host h.
  int member(int h, int l) const { return members_[static_cast<std::size_t>(h * local_ + l)]; }

  Communicator& comm_;
  std::unique_ptr<Communicator> hostComm_;
  std::unique_ptr<Communicator> railComm_;
  std::vector<int> members_;  // [hosts, local]
  int hosts_ = 1;
  int local_ = 1;
  int myHost_ = 0;
  int myLocal_ = 0;
  // Staging kept between calls (grows only).
  std::vector<std::byte> railRowsOut_, railRowsIn_, hostRowsOut_, hostRowsIn_;
  std::vector<std::int32_t> railRecOut_, railRecIn_, hostMetaOut_, hostMetaIn_;
  std::vector<float> railWOut_, railWIn_, hostWOut_, hostWIn_;
  std::vector<Bf16> ownRows_;  // combine: this host's partial of each of this rank's tokens
  std::vector<float> ownW_;
  std::vector<std::int32_t> masks_;  // [numTokens, hosts] (maskTokens)
};

}  // namespace epcomm::ep
