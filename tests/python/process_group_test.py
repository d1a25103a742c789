"""torch.distributed backend "epcomm": every collective x dtype x op against a reference
computed from every rank's inputs, then bad arguments (an exception on every rank, the group
still usable afterwards).

Launch either way engines do:
  python3 process_group_test.py --spawn N     torch.multiprocessing + TCPStore, no mpirun
  mpirun -np N python3 process_group_test.py   ranks from Open MPI's environment, FileStore
"""

import datetime
import sys

import torch
import torch.distributed as dist
from epcomm import launch

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.int32, torch.int64, torch.int8,
          torch.uint8]
SIZES = [0, 1, 7, 1000, 70001]
OPS = {
    "sum": dist.ReduceOp.SUM,
    "product": dist.ReduceOp.PRODUCT,
    "min": dist.ReduceOp.MIN,
    "max": dist.ReduceOp.MAX,
    "avg": dist.ReduceOp.AVG,
}


def values(rank, n, dtype, salt=0):
    """Small integers, exact in every dtype (uint8: non-negative)."""
    base = torch.arange(n, dtype=torch.int64) * 7 + rank * 3 + salt
    v = base % 7 - (0 if dtype == torch.uint8 else 3)
    return v.to(dtype)


def reference(op, inputs, size):
    wide = [t.to(torch.float64) for t in inputs]
    if op == "sum":
        out = sum(wide)
    elif op == "product":
        out = wide[0]
        for t in wide[1:]:
            out = out * t
    elif op == "min":
        out = torch.stack(wide).min(0).values
    elif op == "max":
        out = torch.stack(wide).max(0).values
    else:
        out = sum(wide) / size
        if not inputs[0].is_floating_point():
            out = torch.trunc(out)
    return out


def check_equal(got, want, what):
    if got.is_floating_point():
        ok = torch.allclose(got.to(torch.float64), want.to(torch.float64), rtol=1e-2, atol=1e-2)
    else:
        ok = torch.equal(got, want.to(got.dtype))
    if not ok:
        raise AssertionError(f"{what}: got {got[:8].tolist()} want {want[:8].tolist()}")


def wrap(t, dtype):
    """Values as the dtype wraps them (int8/uint8 products and sums overflow like C)."""
    if dtype in (torch.int8, torch.uint8, torch.int32):
        return t.to(torch.int64).to(dtype)
    return t.to(dtype)


def collectives(rank, size):
    for dtype in DTYPES:
        for n in SIZES:
            inputs = [values(r, n, dtype) for r in range(size)]
            for name, op in OPS.items():
                t = inputs[rank].clone()
                dist.all_reduce(t, op=op)
                check_equal(t, wrap(reference(name, inputs, size), dtype),
                            f"all_reduce {name} {dtype} n={n}")
            # reduce_scatter (tensor and list forms): block r of every rank's input.
            full = [values(r, n * size, dtype, 1) for r in range(size)]
            want = wrap(reference("sum", full, size), dtype)[rank * n:(rank + 1) * n]
            out = torch.empty(n, dtype=dtype)
            dist.reduce_scatter_tensor(out, full[rank].clone())
            check_equal(out, want, f"reduce_scatter_tensor {dtype} n={n}")
            out = torch.empty(n, dtype=dtype)
            dist.reduce_scatter(out, list(full[rank].clone().chunk(size)) if n else
                                [torch.empty(0, dtype=dtype) for _ in range(size)])
            check_equal(out, want, f"reduce_scatter {dtype} n={n}")
            # all_gather (tensor and list forms).
            out = torch.empty(n * size, dtype=dtype)
            dist.all_gather_into_tensor(out, inputs[rank])
            check_equal(out, torch.cat(inputs), f"all_gather_into_tensor {dtype} n={n}")
            outs = [torch.empty(n, dtype=dtype) for _ in range(size)]
            dist.all_gather(outs, inputs[rank])
            check_equal(torch.cat(outs), torch.cat(inputs), f"all_gather {dtype} n={n}")
            # broadcast from every root.
            for root in range(size):
                t = inputs[rank].clone()
                dist.broadcast(t, src=root)
                check_equal(t, inputs[root], f"broadcast root {root} {dtype} n={n}")
        # all_to_all_single: even blocks, then uneven splits (rank s sends s + d + 1 rows to d).
        rows = 3
        x = torch.stack([values(rank, 5, dtype, d) for d in range(size * rows)])
        out = torch.empty_like(x)
        dist.all_to_all_single(out, x)
        want = torch.cat([torch.stack([values(s, 5, dtype, d) for d in range(size * rows)])
                          [rank * rows:(rank + 1) * rows] for s in range(size)])
        check_equal(out, want, f"all_to_all_single even {dtype}")
        send_splits = [rank + d + 1 for d in range(size)]
        recv_splits = [s + rank + 1 for s in range(size)]
        x = torch.stack([values(rank, 4, dtype, i) for i in range(sum(send_splits))])
        out = torch.empty(sum(recv_splits), 4, dtype=dtype)
        dist.all_to_all_single(out, x, recv_splits, send_splits)
        parts = []
        for s in range(size):
            first = sum(s + d + 1 for d in range(rank))
            parts += [values(s, 4, dtype, i) for i in range(first, first + s + rank + 1)]
        check_equal(out, torch.stack(parts), f"all_to_all_single splits {dtype}")
    # The list forms and the rooted collectives, in float32.
    ins = [torch.full((2, 3), float(rank * 10 + d)) for d in range(size)]
    outs = [torch.empty(2, 3) for _ in range(size)]
    dist.all_to_all(outs, ins)
    for s in range(size):
        check_equal(outs[s], torch.full((2, 3), float(s * 10 + rank)), "all_to_all list")
    t = torch.full((4,), float(rank + 1))
    dist.reduce(t, dst=size - 1)
    if rank == size - 1:
        check_equal(t, torch.full((4,), float(size * (size + 1) // 2)), "reduce")
    gathered = [torch.empty(4) for _ in range(size)] if rank == 0 else None
    dist.gather(torch.full((4,), float(rank)), gathered, dst=0)
    if rank == 0:
        check_equal(torch.stack(gathered), torch.arange(size, dtype=torch.float32)[:, None]
                    .expand(size, 4), "gather")
    out = torch.empty(3)
    dist.scatter(out, [torch.full((3,), float(r * 2)) for r in range(size)] if rank == 0
                 else None, src=0)
    check_equal(out, torch.full((3,), float(rank * 2)), "scatter")
    # Point to point around the ring.
    t = torch.full((9,), float(rank), dtype=torch.bfloat16)
    got = torch.empty(9, dtype=torch.bfloat16)
    if rank % 2 == 0:
        dist.send(t, (rank + 1) % size)
        dist.recv(got, (rank - 1) % size)
    else:
        dist.recv(got, (rank - 1) % size)
        dist.send(t, (rank + 1) % size)
    check_equal(got, torch.full((9,), float((rank - 1) % size)), "send/recv")
    # Registered memory (epcomm.empty): the same results, and shm's zero-copy path (from
    # 32 KiB).
    import epcomm
    n = 40000
    for dtype in (torch.float32, torch.bfloat16):
        reg = epcomm.empty((n,), dtype)
        reg.copy_(values(rank, n, dtype))
        dist.all_reduce(reg)
        check_equal(reg, wrap(reference("sum", [values(r, n, dtype) for r in range(size)],
                                        size), dtype), f"all_reduce on epcomm.empty {dtype}")
        pg = dist.group.WORLD
        if pg.backend == "shm":
            assert pg.last_algorithm.startswith("registered"), pg.last_algorithm
    work = dist.all_reduce(torch.ones(3), async_op=True)
    assert work.is_completed() and work.wait()
    dist.barrier()


def thread_counts(rank, size):
    # Worker threads (epcomm.set_threads, as an engine hands torch.get_num_threads()) change
    # no bit of a large all-reduce of values whose sums round.
    import epcomm
    n = (1 << 18) + 5
    results = []
    for count in (1, 3):
        epcomm.set_threads(count)
        assert epcomm.threads() == count, epcomm.threads()
        t = values(rank, n, torch.bfloat16, salt=3) * 1.37
        dist.all_reduce(t)
        results.append(t)
    assert torch.equal(results[0].view(torch.int16), results[1].view(torch.int16)), \
        "all_reduce with 3 threads differs from 1 thread"
    try:
        epcomm.set_threads(-1)
        raise AssertionError("set_threads(-1) accepted")
    except RuntimeError as e:
        assert "setThreads(-1)" in str(e), str(e)
    epcomm.set_threads(0)


def expect_error_everywhere(rank, fn, *needles):
    try:
        fn()
    except RuntimeError as e:
        text = str(e)
        for needle in needles:
            if needle not in text:
                raise AssertionError(f"message lacks {needle!r}: {text}")
        return
    raise AssertionError(f"rank {rank}: no exception for {needles}")


def bad_arguments(rank, size):
    bad = size - 1
    expect_error_everywhere(
        rank, lambda: dist.all_reduce(torch.ones(4, dtype=torch.float64 if rank == bad else
                                                 torch.float32)),
        "dtype Double" if rank == bad else f"rank {bad}")
    expect_error_everywhere(
        rank, lambda: dist.all_reduce(torch.ones(4, 2).t() if rank == bad else torch.ones(8)),
        "not contiguous" if rank == bad else f"rank {bad}")
    expect_error_everywhere(rank, lambda: dist.all_reduce(torch.ones(3 + (rank == bad))),
                            "disagree on count")
    expect_error_everywhere(
        rank, lambda: dist.all_reduce(torch.ones(4, dtype=torch.int32 if rank == bad else
                                                 torch.float32)), "disagree on dtype")
    expect_error_everywhere(rank, lambda: dist.all_reduce(torch.ones(4, dtype=torch.int32),
                                                          op=dist.ReduceOp.BAND),
                            "not supported by the epcomm backend")
    expect_error_everywhere(
        rank, lambda: dist.all_gather_into_tensor(torch.empty(3), torch.ones(2)),
        "world_size * input.numel()")
    # Still usable.
    t = torch.ones(5)
    dist.all_reduce(t)
    check_equal(t, torch.full((5,), float(size)), "all_reduce after errors")


def run(rank, size, store):
    import epcomm  # noqa: F401  (registers the backend)
    dist.init_process_group("epcomm", store=store, rank=rank, world_size=size,
                            timeout=datetime.timedelta(seconds=60))
    collectives(rank, size)
    thread_counts(rank, size)
    bad_arguments(rank, size)
    dist.destroy_process_group()
    print(f"rank {rank}: process_group_test passed", flush=True)


if __name__ == "__main__":
    sys.exit(launch.main(run, __doc__))
