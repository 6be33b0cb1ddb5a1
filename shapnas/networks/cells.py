"""Implantable cells: the PC-DARTS search cell (partial channels, edge normalisation) and the discrete cell.

``MixedOp`` is the per-edge PC-DARTS mixed op (Xu et al., ICLR 2020, ``model_search.py``), the readable
reference. ``SearchCell`` computes the same function (tested against it) with all its edges batched by
:class:`shapnas.networks.fused_edges.FusedEdges`, the fast CPU kernel; ``SearchCell.mixed_op(e)`` exports edge ``e`` as a
``MixedOp``. ``DiscreteCell`` is the cell of a derived genotype, one full-width op per kept edge (DARTS).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from shapnas.networks.fused_edges import FusedEdges
from shapnas.networks.genotype import Genotype, num_edges
from shapnas.networks.ops import (
    OPS,
    PRIMITIVES,
    ReLUConvBN,
    folded_batch_norm,
    init_uniform_,
    input_mask,
    search_op,
    with_decoder,
)
from shapnas.runtime import float32_region

__all__ = ["channel_shuffle", "MixedOp", "SearchCell", "DiscreteCell"]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle (PC-DARTS ``channel_shuffle``): (B, C, H, W) -> (B, C, H, W).

    Channel ``g·(C/groups) + j`` moves to position ``j·groups + g``.
    """
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2)
    return x.reshape(batch, channels, height, width)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """``channels_last`` for a channels-last (and not also contiguous) image, else ``contiguous_format``."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _full_precision(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 (an autocast region's output) as float32; other dtypes unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class MixedOp(nn.Module):
    """PC-DARTS partial-channel mixed op of one edge (reference implementation).

    The first ``channels // k`` channels go through the weighted sum of the ops, the others bypass it;
    the two parts are concatenated and channel-shuffled with ``k`` groups. With ``k = 1`` this is the
    DARTS mixed op.

    Args:
        channels: C, divisible by ``k``.
        k: K, the partial-channel ratio.
    """

    def __init__(self, channels: int, k: int) -> None:
        super().__init__()
        if channels % k:
            raise ValueError(f"MixedOp: channels={channels} not divisible by k={k}")
        self.k = k
        self.ops = nn.ModuleList(search_op(name, channels // k) for name in PRIMITIVES)

    def forward(self, x: torch.Tensor, op_weights: torch.Tensor, active_ops: Sequence[int]) -> torch.Tensor:
        """Mixed op on ``x`` (B, C, H, W).

        Args:
            x: input (B, C, H, W).
            op_weights: (P,) mixing weights.
            active_ops: indices of the ops to compute (never ``none``, index 0, which adds zero);
                ops not listed are not executed.

        Returns:
            (B, C, H, W).
        """
        part = x.shape[1] // self.k
        x1, x2 = x[:, :part], x[:, part:]  # (B, C/K, H, W), (B, C - C/K, H, W)
        mixed = torch.zeros_like(x1)
        for op in active_ops:
            if op == 0:
                raise ValueError("MixedOp: 'none' (index 0) is never computed; leave it out of active_ops")
            mixed = mixed + op_weights[op] * self.ops[op](x1)
        return channel_shuffle(torch.cat([mixed, x2], dim=1), self.k)


class SearchCell(nn.Module):
    """PC-DARTS search cell implanted on a skip: 2 input states, ``num_nodes`` nodes, 14 edges for 4.

    ``s0 = pre0(e)`` and ``s1 = pre1(e)`` are two ReLU-Conv1×1-BN of the skip ``e`` (one conv with 2C
    outputs; a reconstruction that keeps the DARTS layout, see :mod:`shapnas.networks.genotype`), or, with
    ``decoder_channels``, ``s1 = pre1(d)`` of the decoder feature ``d`` at the skip's level (the conv's
    weight is masked block-diagonal, so ``s0`` sees only the skip and ``s1`` only the decoder); node ``i``
    sums ``edge_weights[e] · mixed_e(state)`` over its ``2 + i`` inputs; the output is a 1×1 conv of the
    concatenated nodes back to the skip's channels. Computed by :class:`FusedEdges`; ``mixed_op(e)``
    exports edge ``e`` as a reference :class:`MixedOp`.

    Args:
        in_channels: the skip's channels.
        channels: C, the cell width, divisible by ``k``.
        k: K, partial-channel ratio (PC-DARTS: 4).
        num_nodes: intermediate nodes. Defaults to 4.
        generator: draws the initial weights (PyTorch's default init); None uses the global RNG.
        decoder_channels: channels of the decoder input (0: both states come from the skip). Defaults to 0.
        zero_output: initialise the output projection to zero (the cell then outputs exactly 0, the
            residual ``e + cell(e)`` is the backbone's skip at implant time). Defaults to False.
    """

    def __init__(self, in_channels: int, channels: int, k: int, num_nodes: int = 4,
                 generator: torch.Generator | None = None, decoder_channels: int = 0,
                 zero_output: bool = False) -> None:
        super().__init__()
        if channels % k or channels < k:
            raise ValueError(f"SearchCell: channels={channels} must be a positive multiple of k={k}")
        self.in_channels, self.channels, self.k, self.num_nodes = in_channels, channels, k, num_nodes
        self.decoder_channels = int(decoder_channels)
        self.num_edges = num_edges(num_nodes)
        self.preprocess = ReLUConvBN(in_channels + self.decoder_channels, 2 * channels)  # s0 = [:C], s1 = [C:]
        self.register_buffer("input_mask", input_mask(in_channels, self.decoder_channels, channels), persistent=False)
        self.edges = FusedEdges(channels, k, num_nodes)
        self.project = nn.Conv2d(num_nodes * channels, in_channels, 1)
        init_uniform_(self.preprocess.op[1].weight, in_channels, generator)
        init_uniform_(self.project.weight, num_nodes * channels, generator)
        init_uniform_(self.project.bias, num_nodes * channels, generator)
        if zero_output:
            nn.init.zeros_(self.project.weight)
            nn.init.zeros_(self.project.bias)
        self.edges.reset_parameters(generator)

    def forward(self, x: torch.Tensor, op_weights: torch.Tensor, edge_weights: torch.Tensor,
                active: torch.Tensor, decoder: torch.Tensor | None = None) -> torch.Tensor:
        """Cell on a skip tensor (and the decoder feature at its level).

        Ops that are inactive are not computed. Under ``torch.no_grad`` ops and edges of zero weight are
        skipped too; with gradients enabled they are computed so that gradients w.r.t. α, β stay exact.

        Args:
            x: skip tensor (B, in_channels, H, W).
            op_weights: (E, P) mixing weights of the ops.
            edge_weights: (E,) normalised edge weights.
            active: (E, P) bool, the ops that may be computed.
            decoder: (B, decoder_channels, H, W), required iff the cell was built with decoder channels.

        Returns:
            (B, in_channels, H, W).
        """
        batch, _, height, width = x.shape
        layout = _memory_format(x)
        with float32_region(x):  # under autocast the cell computes in float32 (batch-norm folding)
            x = with_decoder(_full_precision(x), None if decoder is None else _full_precision(decoder),
                             self.decoder_channels)
            rows = F.relu(x).permute(0, 2, 3, 1).reshape(-1, x.shape[1])  # (N, C_in + C_dec), N = B·H·W
            conv, norm = self.preprocess.op[1], self.preprocess.op[2]
            weight = conv.weight[:, :, 0, 0] * self.input_mask  # (2C, C_in + C_dec)
            folded, shift = folded_batch_norm(rows, weight, norm.running_mean, norm.running_var, None, self.training,
                                              (batch, height, width))  # BN(conv(x)) = rows @ folded.T + shift
            out = self.edges(rows, (batch, height, width), folded, shift,
                             self.project.weight[:, :, 0, 0], self.project.bias, op_weights, edge_weights,
                             active)  # (N, C_in)
        return out.view(batch, height, width, -1).permute(0, 3, 1, 2).contiguous(memory_format=layout)

    def mixed_op(self, edge: int) -> MixedOp:
        """A reference :class:`MixedOp` holding a copy of edge ``edge``'s weights and BN statistics."""
        return self.edges.copy_edge_to(MixedOp(self.channels, self.k).to(self.edges.pool_mean.device), edge)


class DiscreteCell(nn.Module):
    """The discrete cell of a genotype: one full-width op per kept edge (no partial channels).

    Same wiring, inputs and output shape as :class:`SearchCell`; BNs are affine as in the DARTS
    evaluation network.

    Args:
        in_channels: the skip's channels.
        channels: C, the cell width.
        genotype: the :class:`~shapnas.networks.genotype.Genotype`.
        generator: draws the conv weights (PyTorch's default init); None uses the global RNG.
        decoder_channels: channels of the decoder input (0: both states from the skip). Defaults to 0.
        zero_output: zero-initialised output projection. Defaults to False.
    """

    def __init__(self, in_channels: int, channels: int, genotype: Genotype,
                 generator: torch.Generator | None = None, decoder_channels: int = 0,
                 zero_output: bool = False) -> None:
        super().__init__()
        self.channels, self.genotype, self.decoder_channels = channels, genotype, int(decoder_channels)
        self.preprocess = ReLUConvBN(in_channels + self.decoder_channels, 2 * channels, affine=True)
        self.register_buffer("input_mask", input_mask(in_channels, self.decoder_channels, channels), persistent=False)
        self.ops = nn.ModuleList(OPS[op](channels, affine=True) for _, _, op in genotype.edges)
        self.project = nn.Conv2d(genotype.num_nodes * channels, in_channels, 1)
        if generator is not None:
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    fan_in = module.weight[0].numel()
                    init_uniform_(module.weight, fan_in, generator)
                    if module.bias is not None:
                        init_uniform_(module.bias, fan_in, generator)
        if zero_output:
            nn.init.zeros_(self.project.weight)
            nn.init.zeros_(self.project.bias)

    def forward(self, x: torch.Tensor, decoder: torch.Tensor | None = None) -> torch.Tensor:
        """The cell on a skip tensor ``x`` (B, in_channels, H, W) (and the decoder feature at its level, if
        built with decoder channels); returns (B, in_channels, H, W) in ``x``'s memory format.

        On CPU the cell computes channels-last: oneDNN's depthwise convolutions (and their gradients) are
        several times faster in that layout: a re-training step (tiny backbone, batch 16, one thread) takes 82 ms
        instead of 115 at 32 px and 239 instead of 351 at 64 px (``python benchmarks/cell_cost.py --slice S``,
        ``discrete_step_ms``, before and after one after the other on a 2-core CPU at 1e492e6). The values differ from the channels-first
        ones by float round-off only.
        """
        layout = _memory_format(x)
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
            decoder = None if decoder is None else decoder.contiguous(memory_format=torch.channels_last)
        x = with_decoder(x, decoder, self.decoder_channels)  # (B, C_in + C_dec, H, W)
        _, conv, norm = self.preprocess.op
        pre = norm(F.conv2d(F.relu(x), conv.weight * self.input_mask[:, :, None, None]))  # (B, 2C, H, W)
        states = [pre[:, : self.channels], pre[:, self.channels:]]
        for node in range(self.genotype.num_nodes):
            states.append(sum(op(states[src]) for (n, src, _), op in zip(self.genotype.edges, self.ops) if n == node))
        return self.project(torch.cat(states[2:], dim=1)).contiguous(memory_format=layout)  # (B, in_channels, H, W)

