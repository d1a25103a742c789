"""epcomm for Python and torch.

Importing this package registers the torch.distributed backend ``"epcomm"``::

    import epcomm
    torch.distributed.init_process_group("epcomm", ...)

It runs torch.distributed's collectives on CPU tensors over epcomm's communicator (shared
memory on one host; see the README for the backends). Every call completes before it
returns; ``async_op=True`` gives a work object that is already complete.
"""

import torch
import torch.distributed as _dist

from . import _C

__all__ = ["ProcessGroupEpcomm", "empty", "set_threads", "threads"]

ProcessGroupEpcomm = _C.ProcessGroupEpcomm


def _create_process_group(store, rank, size, timeout):
    """torch.distributed's creator for backend "epcomm": the group's ranks bootstrap through
    its store; ``timeout`` is the deadline unless EPCOMM_TIMEOUT_MS is set."""
    return _C.ProcessGroupEpcomm(store, rank, size, timeout)


if "EPCOMM" not in _dist.Backend._plugins:
    _dist.Backend.register_backend("epcomm", _create_process_group)


def set_threads(count):
    """Worker threads of this process for epcomm's large copies, reductions and EP row loops
    (EPCOMM_THREADS; results are bitwise the same for any count). An engine hands its own
    count, e.g. ``epcomm.set_threads(torch.get_num_threads())``; 0 returns to EPCOMM_THREADS
    or the default (OMP_NUM_THREADS, else the cpus the process owns, at most 8). Call it
    between calls."""
    _C.set_threads(int(count))


def threads():
    """The worker threads epcomm's loops use now."""
    return _C.threads()


def empty(shape, dtype=torch.float32, group=None):
    """A tensor in epcomm's registered memory, for the zero-copy paths (a collective on
    registered tensors on every rank skips the staging copies). Collective over ``group`` (a
    group of backend "epcomm"; default the default group): every rank, same shape and dtype.
    The memory is held until the group is destroyed; allocate once and reuse."""
    group = group if group is not None else _dist.group.WORLD
    if not isinstance(group, _C.ProcessGroupEpcomm):
        raise TypeError("epcomm.empty needs a group of backend \"epcomm\"")
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    count = 1
    for d in shape:
        count *= d
    size = torch.tensor([], dtype=dtype).element_size()
    return group._registered_bytes(count * size).view(dtype).view(shape)
