"""The cost of epcomm.deep_ep's Python layer: DeepEP's calls from Python beside the same
ep::Buffer calls made in a C++ loop in the same processes, on the same tensors (the C++ loop
reuses its outputs as ep-bench does), alternated `--reps` times (each side first in turn); the slowest rank's times,
and the median of the paired (adjacent) Python / C++ ratios. Cases: normal-mode dispatch of `--tokens` tokens, and low-latency dispatch + combine of
`--ll-tokens` tokens (capacity EPCOMM_EP_LL_MAX_TOKENS).

  python3 bench/python/deep_ep_bench.py --spawn 2 [--json out.json]
  mpirun -np 2 python3 bench/python/deep_ep_bench.py
"""

import json
import statistics
import sys

import torch
import torch.distributed as dist

import epcomm  # noqa: F401
from epcomm import deep_ep
from epcomm import launch


def inputs(rank, tokens, hidden, num_experts, topk):
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(tokens, hidden, generator=g).to(torch.bfloat16)
    idx = torch.rand(tokens, num_experts, generator=g).topk(topk, dim=1).indices.to(torch.int64)
    w = torch.rand(tokens, topk, generator=g)
    return x, idx, w


def bench(rank, size, args):
    buffer = deep_ep.Buffer(dist.group.WORLD, int(1e9), int(1e9), low_latency_mode=True)
    rt = buffer.runtime
    num_experts = args.experts
    rows = []

    x, idx, w = inputs(rank, args.tokens, args.hidden, num_experts, args.topk)
    _, _, per_expert, _, _ = buffer.get_dispatch_layout(idx, num_experts)

    def py_normal():
        buffer.dispatch(x, topk_idx=idx, topk_weights=w, num_tokens_per_expert=per_expert)

    cases = [("normal dispatch", args.tokens, py_normal,
              lambda n: rt._time_normal_dispatch(x, idx, w, num_experts, n), args.iters_normal)]

    capacity = rt.low_latency_capacity
    lx, lidx, lw = inputs(rank + 100, min(args.ll_tokens, capacity), args.hidden, num_experts,
                          args.topk)

    def py_ll():
        recv, _, handle, _, _ = buffer.low_latency_dispatch(lx, lidx, capacity, num_experts,
                                                            use_fp8=False)
        buffer.low_latency_combine(recv, lidx, lw, handle)

    cases.append(("low-latency dispatch+combine", lx.size(0), py_ll,
                  lambda n: rt._time_low_latency(lx, lidx, lw, num_experts, n), args.iters_ll))

    for name, tokens, py_fn, cpp_fn, iters in cases:
        py_fn()
        cpp_fn(1)
        t_py, t_cpp = [], []
        for rep in range(args.reps):
            # Which side goes first alternates, so neither always follows the other.
            if rep % 2:
                t_cpp.append(cpp_fn(iters))
                dist.barrier()
            t_py.append(launch.time_per_call(py_fn, iters))
            if rep % 2 == 0:
                dist.barrier()
                t_cpp.append(cpp_fn(iters))
        # The slowest rank's time per repetition; each Python repetition is paired with the
        # C++ one that ran right after it, so the machine's drift between minutes cancels in
        # the paired ratio (reported as `ratio`, the median of the pairs).
        times = torch.tensor([t_py, t_cpp], dtype=torch.float32)
        dist.all_reduce(times, op=dist.ReduceOp.MAX)
        t_py, t_cpp = times[0].tolist(), times[1].tolist()
        paired = statistics.median(p / c for p, c in zip(t_py, t_cpp))
        row = {"case": name, "tokens": tokens, "hidden": args.hidden, "experts": num_experts,
               "topk": args.topk, "ranks": size, "iterations": iters, "reps": args.reps,
               "python_us": statistics.median(t_py) * 1e6,
               "cpp_us": statistics.median(t_cpp) * 1e6, "ratio": paired}
        rows.append(row)
        if rank == 0:
            print(f"{name:30s} {tokens:5d} tokens  python {row['python_us']:10.1f} us  "
                  f"C++ {row['cpp_us']:10.1f} us  python/C++ {row['ratio']:.3f} "
                  f"(median of {len(t_py)} pairs)", flush=True)
    if rank == 0 and args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "deep_ep_python_overhead", "results": rows}, f, indent=1)
    buffer.destroy()
    dist.destroy_process_group()


def worker(rank, size, store, args):
    dist.init_process_group("epcomm", store=store, rank=rank, world_size=size)
    bench(rank, size, args)


def add_arguments(parser):
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--ll-tokens", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=7168)
    parser.add_argument("--experts", type=int, default=256)
    parser.add_argument("--topk", type=int, default=8)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--iters-normal", type=int, default=5)
    parser.add_argument("--iters-ll", type=int, default=200)
    parser.add_argument("--json", default="")


if __name__ == "__main__":
    sys.exit(launch.main(worker, __doc__, add_arguments))
