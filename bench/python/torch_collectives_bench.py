"""torch.distributed collectives on backend "epcomm" beside torch's "gloo", in the same
processes on the same tensors: each size runs epcomm and gloo alternately, `--reps` times,
and the medians are reported (time per call, algorithm bandwidth, epcomm / gloo ratio).

  python3 bench/python/torch_collectives_bench.py --spawn 2 [--json out.json]
  mpirun -np 2 python3 bench/python/torch_collectives_bench.py

gloo (torch 1.13) has no bfloat16 all-reduce: for bfloat16 the gloo column runs float32
tensors of the same element count (twice the bytes; noted as "gloo-f32").
"""

import json
import statistics
import sys

import torch
import torch.distributed as dist

import epcomm  # noqa: F401  (registers the torch.distributed backend "epcomm")
from epcomm import launch

SIZES = [8, 64, 1024, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20]


def iterations(nbytes):
    return max(5, min(2000, (64 << 20) // max(nbytes, 1) * 2))


def bench(rank, size, args):
    gloo = dist.new_group(backend="gloo")
    rows = []
    for op in args.ops:
        for dtype_name in args.dtypes:
            dtype = getattr(torch, dtype_name)
            gloo_dtype = torch.float32 if dtype == torch.bfloat16 else dtype
            for nbytes in SIZES:
                n = max(1, nbytes // torch.tensor([], dtype=dtype).element_size())
                if op == "all_gather":
                    n = max(1, n // size)
                mine = torch.ones(n, dtype=dtype)
                theirs = torch.ones(n, dtype=gloo_dtype)
                out_mine = torch.empty(n * size, dtype=dtype)
                out_theirs = torch.empty(n * size, dtype=gloo_dtype)

                def call(t, out, group):
                    if op == "all_reduce":
                        return lambda: dist.all_reduce(t, group=group)
                    return lambda: dist.all_gather_into_tensor(out, t, group=group)

                iters = iterations(nbytes)
                fn_mine, fn_theirs = call(mine, out_mine, None), call(theirs, out_theirs, gloo)
                fn_mine()
                fn_theirs()
                t_mine, t_theirs = [], []
                for _ in range(args.reps):
                    t_mine.append(launch.time_per_call(fn_mine, iters))
                    t_theirs.append(launch.time_per_call(fn_theirs, iters))
                # Every rank reports the slowest rank's median.
                med = torch.tensor([statistics.median(t_mine), statistics.median(t_theirs)],
                                   dtype=torch.float64)
                dist.all_reduce(med, op=dist.ReduceOp.MAX, group=gloo)
                row = {
                    "op": op, "dtype": dtype_name, "bytes": n * mine.element_size(),
                    "count": n, "ranks": size, "iterations": iters, "reps": args.reps,
                    "epcomm_us": med[0].item() * 1e6, "gloo_us": med[1].item() * 1e6,
                    "gloo_dtype": "float32" if gloo_dtype != dtype else dtype_name,
                    "ratio": med[0].item() / med[1].item(),
                }
                nb = row["bytes"] * (size if op == "all_gather" else 1)
                row["epcomm_GBps"] = nb / med[0].item() / 1e9
                row["gloo_GBps"] = n * theirs.element_size() * (size if op == "all_gather" else 1) \
                    / med[1].item() / 1e9
                rows.append(row)
                if rank == 0:
                    print(f"{op:10s} {dtype_name:9s} {row['bytes']:>10d} B  epcomm {row['epcomm_us']:10.2f} us"
                          f"  gloo{'-f32' if row['gloo_dtype'] != dtype_name else ''} {row['gloo_us']:10.2f} us"
                          f"  ratio {row['ratio']:.3f}  ({row['epcomm_GBps']:.2f} vs {row['gloo_GBps']:.2f} GB/s)",
                          flush=True)
    if rank == 0 and args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "torch_collectives", "backend_epcomm": "epcomm",
                       "peer": "gloo", "results": rows}, f, indent=1)
    dist.destroy_process_group()


def worker(rank, size, store, args):
    dist.init_process_group("epcomm", store=store, rank=rank, world_size=size)
    bench(rank, size, args)


def add_arguments(parser):
    parser.add_argument("--reps", type=int, default=5, help="alternations per size")
    parser.add_argument("--ops", nargs="+", default=["all_reduce"],
                        choices=["all_reduce", "all_gather"])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--json", default="", help="write the results here (rank 0)")


if __name__ == "__main__":
    sys.exit(launch.main(worker, __doc__, add_arguments))
