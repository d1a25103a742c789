"""Starting ranks the two ways engines do, for epcomm's tests, benchmarks and examples:

    launch.run(worker, spawn=N, args=(...))   # torch.multiprocessing + a TCPStore, no mpirun
    launch.run(worker, args=(...))            # under mpirun: ranks from Open MPI's
                                              # environment, a FileStore in the temp folder

``worker(rank, size, store, *args)`` runs in every rank; ``store`` is a torch.distributed
store all ranks share (pass it to ``init_process_group(store=...)``).
"""

import datetime
import os
import tempfile

import torch.distributed as dist

TIMEOUT = datetime.timedelta(seconds=120)


def _spawned(rank, worker, size, port, args):
    worker(rank, size, dist.TCPStore("127.0.0.1", port, size, False, TIMEOUT), *args)


def run(worker, spawn=0, args=()):
    if spawn:
        import torch.multiprocessing as mp
        # The parent hosts the store on a free port; the children connect to it.
        store = dist.TCPStore("127.0.0.1", 0, spawn + 1, True, TIMEOUT, wait_for_workers=False)
        mp.spawn(_spawned, args=(worker, spawn, store.port, tuple(args)), nprocs=spawn)
        return
    rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
    size = int(os.environ["OMPI_COMM_WORLD_SIZE"])
    job = os.environ.get("OMPI_MCA_ess_base_jobid", str(os.getppid()))
    path = os.path.join(tempfile.gettempdir(), f"epcomm-store-{job}")
    try:
        worker(rank, size, dist.FileStore(path, size), *args)
    finally:
        if rank == 0 and os.path.exists(path):
            os.remove(path)


def main(worker, description, add_arguments=None):
    """A script's main: ``--spawn N`` or mpirun (see run). With ``add_arguments(parser)``
    the script adds its own options and ``worker`` receives the parsed namespace last."""
    import argparse
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spawn", type=int, default=0, help="ranks to spawn (no mpirun)")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args()
    run(worker, args.spawn, (args,) if add_arguments else ())
    return 0


def time_per_call(fn, iters, group=None):
    """Seconds per call of ``fn`` over ``iters`` calls, the ranks of ``group`` starting
    together (a barrier first)."""
    import time
    dist.barrier(group=group)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters
