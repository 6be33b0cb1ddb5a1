"""Index plans of the fused search cell: where each active op's channels enter the cell's matrix products.

For one pattern of active ops and edges, :func:`build_plan` lists, per group of source states, the features
:class:`shapnas.networks.fused_edges.FusedEdges` computes (pools, depthwise outputs per parametric op type) and the flat
positions of their mixing coefficients, including PC-DARTS's partial-channel bypass and channel shuffle
(Xu et al., ICLR 2020). Plain bookkeeping; no parameters.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from shapnas.networks.genotype import edge_list
from shapnas.networks.ops import PARAMETRIC, POOLS, PRIMITIVES

__all__ = ["TypePlan", "SourcePlan", "GroupPlan", "Plan", "build_plan"]

_SKIP = PRIMITIVES.index("skip_connect")


class TypePlan(NamedTuple):
    """One parametric op type leaving a source state."""

    name: str  # parametric op
    on: torch.Tensor  # (n,) edges computing it, in order j
    stats: torch.Tensor  # (C/K·n,) positions (edge·C/K + o) of channel (o, j) in the BN buffers
    eye: torch.Tensor  # (n, n)


class SourcePlan(NamedTuple):
    """One source state: its active pools and parametric op types."""

    src: int  # 0 (s0), 1 (s1) or j + 2 (node j)
    pools: list[str]  # active pools on its computed outgoing edges
    types: list[TypePlan]  # active parametric op types on them


class GroupPlan(NamedTuple):
    """One group of source states and the coefficient layout of their outgoing edges."""

    sources: list[SourcePlan]  # (s0, s1) for group 0, node g-1 for group g
    edges: list[int]  # computed edges leaving them; edge t owns rows t·C .. t·C + C - 1 of the coefficients
    shape: tuple[int, int]  # coefficients (len(edges)·C, feature columns)
    flat: torch.Tensor  # flat positions of the non-zero coefficients
    index: torch.Tensor  # their source in [op_weights·edge_weights (E·P), edge_weights (E)]


class Plan(NamedTuple):
    """The plan of a whole cell: its groups and the identity/bypass links."""

    groups: list[GroupPlan]
    links_flat: torch.Tensor  # non-zeros of the (E, C, C) identity/bypass maps
    links_index: torch.Tensor


def _shuffled(channels: int, k: int) -> np.ndarray:
    """Destination of channel q under ``channel_shuffle(·, k)``: ``(q mod C/K)·K + q div C/K``."""
    q = np.arange(channels)
    return (q % (channels // k)) * k + q // (channels // k)


def build_plan(eff: np.ndarray, edge_on: np.ndarray, channels: int, k: int, num_nodes: int,
                device: torch.device) -> Plan:
    """Index bookkeeping for one pattern of computed ops (``eff`` (E, P) bool) and edges (``edge_on``).

    The features of a group stack, per source, each active pool of its C/K slice and, per active
    parametric type, the depthwise outputs of its n active edges before their last pointwise conv
    (C/K·n columns, channel (o, j) at ``o·n + j``). Coefficient row ``t·C + r`` is channel r of edge t's
    mixed op (weighted, shuffled); the identity (``skip_connect``) and bypass parts of each mixed op are
    the (C, C) "links" maps.
    """
    part, num_ops, edges = channels // k, len(PRIMITIVES), edge_list(num_nodes)
    shuffled, q = _shuffled(channels, k), np.arange(channels)
    flat, index = [], []
    for e in np.flatnonzero(edge_on):
        keep = (q >= part) | bool(eff[e, _SKIP])  # identity on x1 needs skip_connect; bypass always
        flat.append(e * channels * channels + shuffled[keep] * channels + q[keep])
        index.append(np.where(q[keep] >= part, len(edges) * num_ops + e, e * num_ops + _SKIP))
    groups = []
    for group in range(num_nodes):
        srcs = [0, 1] if group == 0 else [group + 1]
        out = [e for src in srcs for e, (_, s) in enumerate(edges) if s == src and edge_on[e]]
        target = {e: t for t, e in enumerate(out)}
        rows, cols, values, col, sources = [], [], [], 0, []
        for src in srcs:
            mine = [e for e in out if edges[e][1] == src]
            pools = [name for name in POOLS if eff[mine, PRIMITIVES.index(name)].any()]
            for name in pools:
                op = PRIMITIVES.index(name)
                for e in (e for e in mine if eff[e, op]):
                    rows.append(target[e] * channels + shuffled[:part])
                    cols.append(col + np.arange(part))
                    values.append(np.full(part, e * num_ops + op))
                col += part
            types = []
            for name in PARAMETRIC:
                op = PRIMITIVES.index(name)
                on = [e for e in mine if eff[e, op]]
                if not on:
                    continue
                n, o = len(on), np.arange(part)
                for j, e in enumerate(on):
                    rows.append(target[e] * channels + shuffled[o])
                    cols.append(col + o * n + j)
                    values.append(np.full(part, e * num_ops + op))
                col += part * n
                stats = (np.asarray(on)[None, :] * part + o[:, None]).reshape(-1)  # channel (o, j)
                types.append(TypePlan(name, torch.tensor(on, device=device), torch.from_numpy(stats).to(device),
                                       torch.eye(n, device=device)))
            sources.append(SourcePlan(src, pools, types))
        positions = (np.concatenate(rows) * col + np.concatenate(cols)) if rows else np.zeros(0, dtype=np.int64)
        groups.append(GroupPlan(sources, out, (len(out) * channels, col), torch.from_numpy(positions).to(device),
                                 torch.from_numpy(np.concatenate(values) if values else positions).to(device)))
    links = (np.concatenate(flat), np.concatenate(index)) if flat else (np.zeros(0, np.int64),) * 2
    return Plan(groups, torch.from_numpy(links[0]).to(device), torch.from_numpy(links[1]).to(device))
