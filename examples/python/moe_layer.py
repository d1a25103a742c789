"""An MoE layer on epcomm.deep_ep, written as DeepEP code is (only the import and the device
differ): gate, top-k routing, dispatch, one bf16 torch.nn.Linear per expert, combine. Each
rank checks its tokens' outputs against the same layer run in one process, for a prefill
batch (normal mode) and a decode batch (low-latency mode).

  python3 examples/python/moe_layer.py --spawn 3      torch.multiprocessing, TCPStore
  mpirun -np 2 python3 examples/python/moe_layer.py

Exit status 0 when every rank's outputs match.
"""

import datetime
import os
import sys

import torch
import torch.distributed as dist

import epcomm  # noqa: F401  (registers the torch.distributed backend "epcomm")
from epcomm import deep_ep
from epcomm import launch

HIDDEN = 512
EXPERTS_PER_RANK = 4
TOPK = 4


class MoELayer(torch.nn.Module):
    """The whole layer's parameters on every rank (seeded), so each rank can also run it
    alone as the reference; in the EP run a rank uses only its own experts."""

    def __init__(self, num_experts):
        super().__init__()
        torch.manual_seed(7)
        self.gate = torch.nn.Linear(HIDDEN, num_experts, bias=False)
        self.experts = torch.nn.ModuleList(
            torch.nn.Linear(HIDDEN, HIDDEN, bias=False).to(torch.bfloat16)
            for _ in range(num_experts))

    def route(self, x):
        probs = torch.softmax(self.gate(x.float()), dim=-1)
        weights, idx = probs.topk(TOPK, dim=-1)
        return idx.to(torch.int64), (weights / weights.sum(-1, keepdim=True)).to(torch.float32)

    def reference(self, x):
        idx, weights = self.route(x)
        out = torch.zeros(x.size(0), HIDDEN, dtype=torch.float32)
        for t in range(x.size(0)):
            for k in range(TOPK):
                out[t] += weights[t, k] * self.experts[int(idx[t, k])](x[t:t + 1]).float()[0]
        return out.to(torch.bfloat16)


def prefill(layer, buffer, x, rank, num_experts):
    topk_idx, topk_weights = layer.route(x)
    num_tokens_per_rank, num_tokens_per_rdma_rank, num_tokens_per_expert, is_token_in_rank, _ = \
        buffer.get_dispatch_layout(topk_idx, num_experts)
    recv_x, recv_topk_idx, recv_topk_weights, num_recv_tokens_per_expert_list, handle, _ = \
        buffer.dispatch(x, topk_idx=topk_idx, topk_weights=topk_weights,
                        num_tokens_per_rank=num_tokens_per_rank,
                        num_tokens_per_rdma_rank=num_tokens_per_rdma_rank,
                        is_token_in_rank=is_token_in_rank,
                        num_tokens_per_expert=num_tokens_per_expert)
    # Each received row: the weighted sum of its local experts' outputs.
    y = torch.zeros(recv_x.size(0), HIDDEN, dtype=torch.float32)
    for j in range(EXPERTS_PER_RANK):
        rows, slots = (recv_topk_idx == j).nonzero(as_tuple=True)
        if rows.numel():
            expert = layer.experts[rank * EXPERTS_PER_RANK + j]
            y[rows] += recv_topk_weights[rows, slots, None] * expert(recv_x[rows]).float()
    combined_x, _, _ = buffer.combine(y.to(torch.bfloat16), handle)
    return combined_x


def decode(layer, buffer, x, rank, num_experts, capacity):
    topk_idx, topk_weights = layer.route(x)
    recv_x, recv_count, handle, _, hook = buffer.low_latency_dispatch(
        x, topk_idx, capacity, num_experts, use_fp8=False, return_recv_hook=True)
    hook()  # on a GPU the expert work of another micro-batch would overlap here
    out = torch.empty_like(recv_x)
    for j in range(EXPERTS_PER_RANK):
        n = int(recv_count[j])
        out[j, :n] = layer.experts[rank * EXPERTS_PER_RANK + j](recv_x[j, :n])
    combined_x, _, _ = buffer.low_latency_combine(out, topk_idx, topk_weights, handle)
    return combined_x


def run(rank, size, store):
    dist.init_process_group("epcomm", store=store, rank=rank, world_size=size,
                            timeout=datetime.timedelta(seconds=120))
    num_experts = EXPERTS_PER_RANK * size
    layer = MoELayer(num_experts)
    capacity = int(os.environ.get("EPCOMM_EP_LL_MAX_TOKENS", "128"))
    buffer = deep_ep.Buffer(dist.group.WORLD, int(1e9), int(1e9), low_latency_mode=True)
    failures = 0
    with torch.no_grad():
        for name, tokens in (("prefill", 96 + 17 * rank), ("decode", min(capacity, 5 + rank))):
            torch.manual_seed(100 + rank)
            x = torch.randn(tokens, HIDDEN).to(torch.bfloat16)
            got = prefill(layer, buffer, x, rank, num_experts) if name == "prefill" else \
                decode(layer, buffer, x, rank, num_experts, capacity)
            want = layer.reference(x)
            scale = want.float().abs().max().item() + 1e-6
            err = (got.float() - want.float()).abs().max().item() / scale
            ok = err < 2e-2
            failures += not ok
            print(f"rank {rank}: {name} {tokens} tokens: max error {err:.2e} of the output range "
                  f"{'ok' if ok else 'FAILED'}", flush=True)
    dist.destroy_process_group()
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    sys.exit(launch.main(run, __doc__))
