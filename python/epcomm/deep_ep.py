"""DeepEP's Python API on CPU tensors, over epcomm (``from epcomm import deep_ep``).

Names, arguments, defaults and return tuples follow ``deep_ep.Buffer``; the semantics live in
C++ (``ep/``, shared with the C and C++ APIs). On CPU every call completes before it returns:
``previous_event``, ``async_finish`` and ``allocate_on_comm_stream`` are accepted, and the
returned ``EventOverlap`` is a completed one (``current_stream_wait()`` returns at once).
``Config`` and the ``num_sms`` / chunk settings are GPU tuning: accepted and ignored.

Outputs are tensors over epcomm's memory, not copies: normal-mode outputs stay valid while
referenced; low-latency outputs live in one of the Buffer's two slots and stay valid until
the dispatch after next (as DeepEP documents), and never beyond the Buffer.

Low-latency ``use_fp8=True`` (DeepEP's default) maps to epcomm's int8, as DeepEP-Ascend does
on hardware without fp8: ``packed_recv_x`` is then ``(int8 [L, R*T, H], float32 scales
[L, R*T, H/128])`` with one scale per 128 channels (``use_int8=`` is accepted as an explicit
alias). ``num_max_dispatch_tokens_per_rank`` (T') may be any value up to the Buffer's
capacity T; the outputs are then views of R*T' rows per expert (experts R*T rows apart).

The Buffer bootstraps through ``group``: a group of backend ``"epcomm"`` lends its
communicator; any other group (gloo, ...) carries a UniqueId made on its rank 0.
``num_nvl_bytes`` / ``num_rdma_bytes`` do not size anything up front: epcomm sizes its
memory from the calls (``EPCOMM_EP_BUFFSIZE`` bounds normal mode's staging,
``EPCOMM_EP_LL_MAX_TOKENS`` or SGLang's ``SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK``
is the low-latency capacity; see docs/configuration.md).
"""

from typing import Optional, Tuple, Union

import torch
import torch.distributed as dist

from . import _C

__all__ = ["Buffer", "Config", "EventOverlap"]


class Config:
    """DeepEP's performance config (SMs and chunk sizes): GPU tuning, ignored on CPU."""

    def __init__(self, num_sms: int = 20, num_max_nvl_chunked_send_tokens: int = 6,
                 num_max_nvl_chunked_recv_tokens: int = 256,
                 num_max_rdma_chunked_send_tokens: int = 6,
                 num_max_rdma_chunked_recv_tokens: int = 256) -> None:
        self.num_sms = num_sms
        self.num_max_nvl_chunked_send_tokens = num_max_nvl_chunked_send_tokens
        self.num_max_nvl_chunked_recv_tokens = num_max_nvl_chunked_recv_tokens
        self.num_max_rdma_chunked_send_tokens = num_max_rdma_chunked_send_tokens
        self.num_max_rdma_chunked_recv_tokens = num_max_rdma_chunked_recv_tokens

    def get_nvl_buffer_size_hint(self, hidden_bytes: int, num_ranks: int) -> int:
        return 0

    def get_rdma_buffer_size_hint(self, hidden_bytes: int, num_ranks: int) -> int:
        return 0


class EventOverlap:
    """A completed event: on CPU the call it came from finished before returning."""

    def __init__(self, event=None, extra_tensors: Optional[Tuple[torch.Tensor, ...]] = None):
        self.event = event
        self.extra_tensors = extra_tensors

    def current_stream_wait(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        pass


def _epcomm_process_group(group):
    """The ProcessGroupEpcomm behind `group`, or None (torch 1.13 keeps it as the group)."""
    if isinstance(group, _C.ProcessGroupEpcomm):
        return group
    return None


class Buffer:
    """DeepEP's communication buffer for MoE dispatch and combine, on CPU tensors."""

    num_sms: int = 20

    def __init__(self, group: dist.ProcessGroup, num_nvl_bytes: int = 0, num_rdma_bytes: int = 0,
                 low_latency_mode: bool = False, num_qps_per_rank: int = 24,
                 allow_nvlink_for_low_latency_mode: bool = True, allow_mnnvl: bool = False,
                 explicitly_destroy: bool = False) -> None:
        self.group = group
        self.rank = group.rank()
        self.group_size = group.size()
        self.num_nvl_bytes = num_nvl_bytes
        self.num_rdma_bytes = num_rdma_bytes
        self.low_latency_mode = low_latency_mode
        self.explicitly_destroy = explicitly_destroy
        self._ll_handles = {}  # src_info's address -> epcomm's handle (two slots)
        pg = _epcomm_process_group(group)
        if pg is not None:
            self.runtime = _C._EpBuffer(pg)
        else:
            ids = [_C.unique_id() if self.rank == 0 else None]
            dist.broadcast_object_list(ids, src=dist.get_global_rank(group, 0)
                                       if hasattr(dist, "get_global_rank") else 0, group=group)
            self.runtime = _C._EpBuffer(ids[0], self.rank, self.group_size)

    # ---- static helpers ----
    @staticmethod
    def set_num_sms(new_num_sms: int) -> None:
        assert new_num_sms % 2 == 0, "The SM count must be even"
        Buffer.num_sms = new_num_sms

    @staticmethod
    def capture() -> EventOverlap:
        return EventOverlap()

    @staticmethod
    def get_dispatch_config(num_ranks: int) -> Config:
        return Config(Buffer.num_sms)

    @staticmethod
    def get_combine_config(num_ranks: int) -> Config:
        return Config(Buffer.num_sms)

    def destroy(self) -> None:
        """Releases the buffer (collective); later calls fail."""
        self.runtime = None

    # ---- normal mode ----
    def get_dispatch_layout(self, topk_idx: torch.Tensor, num_experts: int,
                            previous_event: Optional[EventOverlap] = None,
                            async_finish: bool = False, allocate_on_comm_stream: bool = False
                            ) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor,
                                       torch.Tensor, EventOverlap]:
        """Returns (num_tokens_per_rank int32 [R], None (one node), num_tokens_per_expert
        int32 [E], is_token_in_rank bool [N, R], event)."""
        per_rank, per_expert, in_rank = self.runtime.get_dispatch_layout(topk_idx, num_experts)
        return per_rank, None, per_expert, in_rank, EventOverlap()

    def dispatch(self, x: Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]],
                 handle: Optional[Tuple] = None,
                 num_tokens_per_rank: Optional[torch.Tensor] = None,
                 num_tokens_per_rdma_rank: Optional[torch.Tensor] = None,
                 is_token_in_rank: Optional[torch.Tensor] = None,
                 num_tokens_per_expert: Optional[torch.Tensor] = None,
                 topk_idx: Optional[torch.Tensor] = None,
                 topk_weights: Optional[torch.Tensor] = None, expert_alignment: int = 1,
                 num_worst_tokens: int = 0, config: Optional[Config] = None,
                 previous_event: Optional[EventOverlap] = None, async_finish: bool = False,
                 allocate_on_comm_stream: bool = False):
        """Returns (recv_x, recv_topk_idx, recv_topk_weights, num_recv_tokens_per_expert_list,
        handle, event). Rows arrive grouped by source rank, then in token order;
        recv_topk_idx holds local expert ids (-1 elsewhere, weight 0). With `handle` the
        layout of that dispatch is reused (cached mode; topk outputs are None). With
        num_worst_tokens > 0 every output has exactly that many rows (padding: topk ids -1,
        weights and x 0) and the count list is empty. x may be DeepEP's pre-quantised tuple
        (data, scales): on CPU the data is int8 [N, H] (epcomm's stand-in for fp8) and the
        scales float32 [N, H / 128] in any strides; recv_x is then the same kind of tuple."""
        x, x_scales = x if isinstance(x, tuple) else (x, None)
        num_experts = 0 if num_tokens_per_expert is None else int(num_tokens_per_expert.numel())
        cached = handle[-1] if handle is not None else None
        recv_x, recv_idx, recv_w, per_expert, native = self.runtime.dispatch(
            x, x_scales, None if cached is not None else topk_idx,
            None if cached is not None else topk_weights, num_experts, cached, expert_alignment,
            num_worst_tokens, is_token_in_rank, num_tokens_per_expert)
        if cached is not None:
            return recv_x, None, None, None, None, EventOverlap()
        # DeepEP's intranode handle: (rank_prefix_matrix, channel_prefix_matrix,
        # recv_channel_prefix_matrix, recv_src_idx, is_token_in_rank, send_head); the channel
        # matrices are GPU scheduling (None) and the last element is epcomm's own handle.
        new_handle = (self.runtime.rank_prefix_matrix(native), None, None,
                      native.recv_src_idx, native.is_token_in_rank, native)
        return recv_x, recv_idx, recv_w, list(per_expert), new_handle, EventOverlap()

    def combine(self, x: torch.Tensor, handle: Tuple,
                topk_weights: Optional[torch.Tensor] = None,
                bias: Optional[Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]] = None,
                config: Optional[Config] = None,
                previous_event: Optional[EventOverlap] = None, async_finish: bool = False,
                allocate_on_comm_stream: bool = False):
        """Returns (combined_x, combined_topk_weights, event): each token's rows from every
        rank it went to, summed (unweighted, as DeepEP) in f32."""
        combined, weights = self.runtime.combine(x, handle[-1], topk_weights)
        if bias is not None:
            for b in bias if isinstance(bias, tuple) else (bias,):
                if b is not None:
                    combined = combined + b
        return combined, weights, EventOverlap()

    # ---- low-latency mode ----
    @staticmethod
    def get_low_latency_rdma_size_hint(num_max_dispatch_tokens_per_rank: int, hidden: int,
                                       num_ranks: int, num_experts: int) -> int:
        """An estimate of the memory epcomm's two low-latency slots take for this shape
        (bf16 and int8 receive regions, scales, combine buffer). epcomm sizes its memory
        itself; the value only lets DeepEP-style code size num_rdma_bytes as it does."""
        rows = num_max_dispatch_tokens_per_rank * num_experts
        per_slot = rows * hidden * (2 + 1 + 2) + rows * (hidden // 128) * 4 + rows * 16
        return ((2 * per_slot + 4095) // 4096) * 4096

    def clean_low_latency_buffer(self, num_max_dispatch_tokens_per_rank: int, hidden: int,
                                 num_experts: int) -> None:
        """Nothing to clean on CPU: every dispatch writes the counts it uses."""

    def low_latency_dispatch(self, x: torch.Tensor, topk_idx: torch.Tensor,
                             num_max_dispatch_tokens_per_rank: int, num_experts: int,
                             cumulative_local_expert_recv_stats: Optional[torch.Tensor] = None,
                             dispatch_wait_recv_cost_stats: Optional[torch.Tensor] = None,
                             use_fp8: bool = True, round_scale: bool = False,
                             use_ue8m0: bool = False, async_finish: bool = False,
                             return_recv_hook: bool = False, use_int8: Optional[bool] = None):
        """Returns (packed_recv_x, packed_recv_count, handle, event, hook).

        packed_recv_x: bf16 [L, R*T, H], or with use_fp8 / use_int8 the tuple (int8 [L, R*T, H],
        float32 scales [L, R*T, H/128]); rows of expert e from source rank 0 first, each
        source's tokens in order; packed_recv_count int32 [L] rows are valid. handle:
        (src_info int32 [L, R*T], layout_range int64 [L, R] holding (begin << 32) | count,
        T, hidden, num_experts). With return_recv_hook only the sends run: call hook() once
        (every rank, same order) before reading the outputs.
        cumulative_local_expert_recv_stats (int32 [L]) is incremented by the counts."""
        int8 = use_fp8 if use_int8 is None else use_int8
        recv, count, src_info, layout_range, native, hook = self.runtime.low_latency_dispatch(
            x, topk_idx, num_max_dispatch_tokens_per_rank, num_experts, bool(int8),
            return_recv_hook)
        handle = (src_info, layout_range, num_max_dispatch_tokens_per_rank, x.size(1),
                  num_experts)
        self._ll_handles[src_info.data_ptr()] = native
        stats = cumulative_local_expert_recv_stats
        if hook is not None:
            def recv_hook(inner=hook):
                inner()
                if stats is not None:
                    stats.add_(count.to(stats.dtype))
            return recv, count, handle, EventOverlap(), recv_hook
        if stats is not None:
            stats.add_(count.to(stats.dtype))
        return recv, count, handle, EventOverlap(), None

    def _native(self, handle: Tuple):
        native = self._ll_handles.get(handle[0].data_ptr())
        if native is None:
            raise RuntimeError("epcomm.deep_ep: this low-latency handle does not come from "
                               "this Buffer")
        return native

    def low_latency_combine(self, x: torch.Tensor, topk_idx: torch.Tensor,
                            topk_weights: torch.Tensor, handle: Tuple, use_logfmt: bool = False,
                            zero_copy: bool = False, async_finish: bool = False,
                            return_recv_hook: bool = False, out: Optional[torch.Tensor] = None,
                            combine_wait_recv_cost_stats: Optional[torch.Tensor] = None):
        """Returns (combined_x, event, hook): combined_x[t] = sum over t's experts k of
        topk_weights[t, k] * x[row of (t, k)], accumulated in f32. zero_copy: the expert
        outputs were written into get_next_low_latency_combine_buffer(handle) (x's storage is
        ignored). out: written and returned."""
        combined, hook = self.runtime.low_latency_combine(
            None if zero_copy else x, topk_idx, topk_weights, self._native(handle), zero_copy,
            return_recv_hook, out)
        return combined, EventOverlap(), hook

    def get_next_low_latency_combine_buffer(self, handle: Tuple) -> torch.Tensor:
        """bf16 [L, R*T, H] in the Buffer: write expert outputs here for zero_copy=True."""
        return self.runtime.low_latency_combine_buffer(self._native(handle), handle[2])
