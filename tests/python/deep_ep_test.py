"""epcomm.deep_ep against DeepEP's documented behaviour (normal mode), every rank computing
the expected result from every rank's inputs (seeded per rank):
layout counts, received rows bitwise (grouped by source rank, then token order), local
expert ids with -1 elsewhere and weight 0 there, num_recv_tokens_per_expert_list aligned,
handle[0] (rank prefix matrix), cached dispatch, combine sums (weighted inputs, unweighted
sum), a rank with no tokens, and bad input raising on every rank. Runs on a group of backend
"epcomm" and on a gloo group (UniqueId carried by the group).

  python3 deep_ep_test.py --spawn N     torch.multiprocessing + TCPStore
  mpirun -np N python3 deep_ep_test.py
"""

import datetime
import sys

import torch
import torch.distributed as dist

import epcomm  # noqa: F401
from epcomm import deep_ep
from epcomm import launch

HIDDEN = 256
TOPK = 4
EXPERTS_PER_RANK = 4


def tokens_of(rank):
    return 0 if rank == 1 else 20 + 7 * rank  # rank 1 sends nothing


def inputs_of(rank, size):
    g = torch.Generator().manual_seed(1000 + rank)
    n, e = tokens_of(rank), EXPERTS_PER_RANK * size
    x = (torch.randn(n, HIDDEN, generator=g) * 4).to(torch.bfloat16)
    scores = torch.rand(n, e, generator=g)
    topk_idx = scores.topk(TOPK, dim=1).indices.to(torch.int64)
    topk_idx[torch.rand(n, TOPK, generator=g) < 0.1] = -1  # some slots masked
    w = torch.rand(n, TOPK, generator=g).to(torch.float32)
    return x, topk_idx, w


def expect_equal(got, want, what):
    if not torch.equal(got, want):
        raise AssertionError(f"{what}: got {got.flatten()[:10].tolist()} want "
                             f"{want.flatten()[:10].tolist()}")


def normal_mode(buffer, rank, size, alignment):
    e = EXPERTS_PER_RANK * size
    all_inputs = [inputs_of(r, size) for r in range(size)]
    x, topk_idx, w = all_inputs[rank]
    per_rank, per_rdma, per_expert, in_rank, event = buffer.get_dispatch_layout(topk_idx, e)
    assert per_rdma is None and isinstance(event, deep_ep.EventOverlap)
    owner = torch.where(topk_idx >= 0, topk_idx // EXPERTS_PER_RANK, -1)
    want_in_rank = torch.stack([(owner == r).any(1) for r in range(size)], 1) \
        if x.size(0) else torch.zeros(0, size, dtype=torch.bool)
    expect_equal(in_rank, want_in_rank, "is_token_in_rank")
    expect_equal(per_rank, want_in_rank.sum(0).to(torch.int32), "num_tokens_per_rank")
    expect_equal(per_expert, torch.bincount(topk_idx[topk_idx >= 0], minlength=e)
                 .to(torch.int32), "num_tokens_per_expert")

    recv_x, recv_idx, recv_w, counts, handle, _ = buffer.dispatch(
        x, topk_idx=topk_idx, topk_weights=w, num_tokens_per_rank=per_rank,
        is_token_in_rank=in_rank, num_tokens_per_expert=per_expert,
        expert_alignment=alignment, async_finish=True)
    # Expected: sources in rank order, tokens in order, those with an expert here.
    lo = rank * EXPERTS_PER_RANK
    rows, idx, wts = [], [], []
    for s in range(size):
        sx, sidx, sw = all_inputs[s]
        for t in range(sx.size(0)):
            local = (sidx[t] >= lo) & (sidx[t] < lo + EXPERTS_PER_RANK)
            if local.any():
                rows.append(sx[t])
                idx.append(torch.where(local, sidx[t] - lo, torch.full_like(sidx[t], -1)))
                wts.append(torch.where(local, sw[t], torch.zeros_like(sw[t])))
    want_x = torch.stack(rows) if rows else torch.zeros(0, HIDDEN, dtype=torch.bfloat16)
    expect_equal(recv_x, want_x, "recv_x")
    expect_equal(recv_idx, torch.stack(idx) if idx else torch.zeros(0, TOPK, dtype=torch.int64),
                 "recv_topk_idx")
    expect_equal(recv_w, torch.stack(wts) if wts else torch.zeros(0, TOPK), "recv_topk_weights")
    want_counts = [int((recv_idx == j).sum()) for j in range(EXPERTS_PER_RANK)]
    want_counts = [(c + alignment - 1) // alignment * alignment for c in want_counts]
    assert counts == want_counts and isinstance(counts, list), (counts, want_counts)
    # handle[0][src][dst]: rows dst received from sources 0..src.
    received = torch.tensor([[sum(1 for t in range(all_inputs[s][0].size(0))
                                  if ((all_inputs[s][1][t] // EXPERTS_PER_RANK) == d).any())
                              for d in range(size)] for s in range(size)], dtype=torch.int32)
    expect_equal(handle[0], received.cumsum(0).to(torch.int32), "rank_prefix_matrix")

    # num_worst_tokens: the same rows padded to exactly that many (ids -1, weights 0).
    worst = sum(all_inputs[s][0].size(0) for s in range(size)) + 3
    px, pidx, pw, pcounts, phandle, _ = buffer.dispatch(
        x, topk_idx=topk_idx, topk_weights=w, num_tokens_per_expert=per_expert,
        num_worst_tokens=worst)
    n = recv_x.size(0)
    assert px.shape == (worst, HIDDEN) and pidx.shape == (worst, TOPK) and pcounts == []
    expect_equal(px[:n], recv_x, "padded recv_x")
    expect_equal(pidx[n:], torch.full((worst - n, TOPK), -1, dtype=torch.int64), "padding ids")
    expect_equal(pw[n:], torch.zeros(worst - n, TOPK), "padding weights")
    padded_combined, _, _ = buffer.combine(px, phandle)
    expect_equal(padded_combined[:x.size(0)],
                 (x.float() * want_in_rank.sum(1, keepdim=True)).to(torch.bfloat16),
                 "combine of a padded dispatch")

    # Pre-quantised x (DeepEP's (data, scales) tuple; scales column-major as DeepEP's tests
    # pass them): the rows and scales arrive as sent.
    def quantised(xs):
        groups = xs.float().view(xs.size(0), HIDDEN // 128, 128)
        scales = groups.abs().amax(-1).clamp(min=1e-6) / 127
        data = torch.round(groups / scales[..., None]).to(torch.int8).view(xs.size(0), HIDDEN)
        return data, scales.t().contiguous().t()
    qdata, qscales = quantised(x)
    (rq, rs), _, _, _, qhandle, _ = buffer.dispatch(
        (qdata, qscales), topk_idx=topk_idx, topk_weights=w, num_tokens_per_expert=per_expert)
    want_q = [quantised(all_inputs[s][0]) for s in range(size)]
    rows_q, rows_s = [], []
    for s in range(size):
        sx, sidx, _ = all_inputs[s]
        for t in range(sx.size(0)):
            if ((sidx[t] >= lo) & (sidx[t] < lo + EXPERTS_PER_RANK)).any():
                rows_q.append(want_q[s][0][t])
                rows_s.append(want_q[s][1][t])
    if rows_q:
        expect_equal(rq, torch.stack(rows_q), "pre-quantised recv data")
        expect_equal(rs, torch.stack(rows_s), "pre-quantised recv scales")
    else:
        assert rq.shape == (0, HIDDEN) and rs.shape == (0, HIDDEN // 128)
    (cq, cs), *_ = buffer.dispatch((qdata, qscales), handle=qhandle)
    expect_equal(cq, rq, "cached pre-quantised data")

    # Cached: the same rows again, no topk outputs.
    again, none_idx, none_w, none_counts, none_handle, _ = buffer.dispatch(x, handle=handle)
    assert none_idx is None and none_w is None and none_counts is None and none_handle is None
    expect_equal(again, recv_x, "cached recv_x")

    # Combine: each token comes back summed over the ranks it went to.
    combined, combined_w, _ = buffer.combine(recv_x, handle, topk_weights=recv_w)
    hits = want_in_rank.sum(1, keepdim=True).to(torch.float32)
    want = (x.to(torch.float32) * hits).to(torch.bfloat16)
    expect_equal(combined, want, "combined_x")
    expect_equal(combined_w, torch.where(topk_idx >= 0, w, torch.zeros_like(w)),
                 "combined_topk_weights")
    combined, no_w, _ = buffer.combine(recv_x, handle)
    assert no_w is None
    expect_equal(combined, want, "combined_x without weights")


def low_latency_mode(buffer, rank, size):
    t_cap = buffer.runtime.low_latency_capacity
    e = EXPERTS_PER_RANK * size
    lo = rank * EXPERTS_PER_RANK
    all_inputs = []
    for r in range(size):
        x, topk_idx, w = inputs_of(r, size)
        n = min(x.size(0), t_cap)
        all_inputs.append((x[:n].contiguous(), topk_idx[:n].contiguous(), w[:n].contiguous()))
    x, topk_idx, w = all_inputs[rank]
    stats = torch.zeros(EXPERTS_PER_RANK, dtype=torch.int32)
    for hook_mode in (False, True):
        recv, count, handle, event, hook = buffer.low_latency_dispatch(
            x, topk_idx, t_cap, e, cumulative_local_expert_recv_stats=stats, use_fp8=False,
            return_recv_hook=hook_mode)
        assert (hook is not None) == hook_mode
        if hook:
            hook()
        src_info, layout_range, t_handle, hidden, num_experts = handle
        assert (t_handle, hidden, num_experts) == (t_cap, HIDDEN, e)
        assert recv.shape == (EXPERTS_PER_RANK, size * t_cap, HIDDEN) and count.dtype == torch.int32
        for j in range(EXPERTS_PER_RANK):
            rows, srcs, begin = [], [], 0
            for s in range(size):
                sx, sidx, _ = all_inputs[s]
                mine = [t for t in range(sx.size(0)) if (sidx[t] == lo + j).any()]
                rows += [sx[t] for t in mine]
                srcs += mine
                assert int(layout_range[j, s]) == (begin << 32) | len(mine), "layout_range"
                begin += len(mine)
            assert int(count[j]) == len(rows), ("packed_recv_count", int(count[j]), len(rows))
            if rows:
                expect_equal(recv[j, :len(rows)], torch.stack(rows), f"packed_recv_x expert {j}")
                expect_equal(src_info[j, :len(rows)], torch.tensor(srcs, dtype=torch.int32),
                             "src_info")
        # Combine: expert outputs = the received rows, so combined[t] = x[t] * sum of t's
        # valid weights.
        want = (x.float() * torch.where(topk_idx >= 0, w, torch.zeros_like(w)).sum(1,
                keepdim=True)).to(torch.bfloat16)
        combined, _, chook = buffer.low_latency_combine(recv, topk_idx, w, handle,
                                                         return_recv_hook=hook_mode)
        if chook:
            chook()
        assert torch.allclose(combined.float(), want.float(), rtol=2e-2, atol=2e-2), "combine"
        # Zero copy, into out=.
        buffer.get_next_low_latency_combine_buffer(handle).copy_(recv)
        out = torch.empty(x.size(0), HIDDEN, dtype=torch.bfloat16)
        combined2, _, _ = buffer.low_latency_combine(recv, topk_idx, w, handle, zero_copy=True,
                                                     out=out)
        assert combined2.data_ptr() == out.data_ptr()
        expect_equal(combined2, combined, "zero-copy combine")
    # A call's T' below the capacity: views of R*T' rows per expert, same rows and combine.
    t_call = max([all_inputs[s][0].size(0) for s in range(size)] + [t_cap // 2])
    if t_call < t_cap:
        recv2, count2, handle2, _, _ = buffer.low_latency_dispatch(x, topk_idx, t_call, e,
                                                                  use_fp8=False)
        assert recv2.shape == (EXPERTS_PER_RANK, size * t_call, HIDDEN) and handle2[2] == t_call
        for j in range(EXPERTS_PER_RANK):
            n = int(count2[j])
            expect_equal(recv2[j, :n], recv[j, :n], f"T'={t_call} rows of expert {j}")
        combined3, _, _ = buffer.low_latency_combine(recv2.contiguous(), topk_idx, w, handle2)
        expect_equal(combined3, combined, f"T'={t_call} combine")
        buffer.get_next_low_latency_combine_buffer(handle2).copy_(recv2)
        combined4, _, _ = buffer.low_latency_combine(recv2, topk_idx, w, handle2, zero_copy=True)
        expect_equal(combined4, combined, f"T'={t_call} zero-copy combine")
    want_stats = torch.tensor([sum(int((all_inputs[s][1] == lo + j).any(1).sum())
                                   for s in range(size)) for j in range(EXPERTS_PER_RANK)],
                              dtype=torch.int32) * 2
    expect_equal(stats, want_stats, "cumulative_local_expert_recv_stats")
    # use_fp8 (DeepEP's default) is int8 with one scale per 128 channels.
    (q, scales), count, handle, _, _ = buffer.low_latency_dispatch(x, topk_idx, t_cap, e)
    assert q.dtype == torch.int8 and scales.shape == (EXPERTS_PER_RANK, size * t_cap,
                                                      HIDDEN // 128)
    deq = (q.float().view(*q.shape[:2], -1, 128) * scales[..., None]).view(q.shape)
    for j in range(EXPERTS_PER_RANK):
        rows = [all_inputs[s][0][t] for s in range(size)
                for t in range(all_inputs[s][0].size(0)) if (all_inputs[s][1][t] == lo + j).any()]
        if rows:
            ref = torch.stack(rows).float()
            bound = ref.view(len(rows), -1, 128).abs().amax(-1, keepdim=True) / 127 * 0.51 + 1e-6
            err = (deq[j, :len(rows)].view(len(rows), -1, 128) - ref.view(len(rows), -1, 128))
            assert (err.abs() <= bound).all(), "int8 outside its bound"


def bad_input(buffer, rank, size):
    e = EXPERTS_PER_RANK * size
    x, topk_idx, _ = inputs_of(0, size)
    _, _, per_expert, _, _ = buffer.get_dispatch_layout(topk_idx, e)
    bad = size - 1
    try:
        buffer.dispatch(x.float() if rank == bad else x, topk_idx=topk_idx,
                        num_tokens_per_expert=per_expert)
    except RuntimeError as err:
        needle = "x has dtype Float" if rank == bad else f"rank {bad}"
        assert needle in str(err), str(err)
    else:
        raise AssertionError("no exception for a float32 x")
    # Still usable.
    recv_x, *_ = buffer.dispatch(x, topk_idx=topk_idx, num_tokens_per_expert=per_expert)
    assert recv_x.dtype == torch.bfloat16


def run(rank, size, store):
    dist.init_process_group("epcomm", store=store, rank=rank, world_size=size,
                            timeout=datetime.timedelta(seconds=60))
    groups = {"epcomm": dist.group.WORLD, "gloo": dist.new_group(backend="gloo")}
    for name, group in groups.items():
        buffer = deep_ep.Buffer(group, int(1e9), 0)
        for alignment in (1, 4):
            normal_mode(buffer, rank, size, alignment)
        low_latency_mode(buffer, rank, size)
        bad_input(buffer, rank, size)
        print(f"rank {rank}: deep_ep on a {name} group passed", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(launch.main(run, __doc__))
