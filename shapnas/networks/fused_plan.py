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

__all__ = ["TypePlan", "SourcePlan", "GroupPlan", "Plan", "build_plan", "JOINT"]

_SKIP = PRIMITIVES.index("skip_connect")


class TypePlan(NamedTuple):
    """One parametric op type computed from one input (a source's C/K slice, or s0's and s1's together).

    The input has ``in_channels`` channels (slot k, o) at ``k·C/K + o``; the op runs on n edges per slot, and
    its depthwise output channel ((k, o), j) sits at ``(k·C/K + o)·n + j`` (a channel multiplier n).
    """

    name: str  # parametric op
    in_channels: int  # slots·C/K
    width: int  # slots·C/K·n output channels
    stats: torch.Tensor  # (width,) positions (edge·C/K + o) of each output channel in the BN buffers
    kernels: torch.Tensor  # (width,) rows (edge·C/K + o) of the (E·C/K, k, k) depthwise weights
    block_at: torch.Tensor  # (width·C/K,) flat positions in the width² block-diagonal pointwise matrix ...
    block_from: torch.Tensor  # ... and the flat positions in the (E, C/K, C/K) pointwise weights they copy


class SourcePlan(NamedTuple):
    """The features computed from one input: active pools and parametric op types of its source slots."""

    src: int  # the input: 0 (s0), 1 (s1), j + 2 (node j), or JOINT (s0 and s1 side by side, group 0)
    pools: list[str]  # pools computed on the whole input
    types: list[TypePlan]  # parametric types computed on it
    pool_stats: dict[str, torch.Tensor]  # pool -> (slots·C/K,) positions in the flattened (S, 2, C/K) statistics


JOINT = -1
"""``SourcePlan.src`` of group 0's joint input: s0's and s1's slices together, (N, 2·C/K)."""


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


def _type_plan(name: str, on: list[list[int]], part: int, device: torch.device) -> TypePlan:
    """The index tensors of one parametric type computed on edges ``on[k]`` (n each) of every input slot k."""
    slots, n, o = len(on), len(on[0]), np.arange(part)
    edges = np.asarray(on)  # (slots, n)
    k, out, j = np.meshgrid(np.arange(slots), o, np.arange(n), indexing="ij")  # output channel ((k, o), j)
    stats = (edges[k, j] * part + out).reshape(-1)  # (slots·C/K·n,)
    width = slots * part * n
    k, out, inp, j = np.meshgrid(np.arange(slots), o, o, np.arange(n), indexing="ij")  # entry ((k,o),j) x ((k,i),j)
    block_at = (((k * part + out) * n + j) * width + (k * part + inp) * n + j).reshape(-1)
    block_from = ((edges[k, j] * part + out) * part + inp).reshape(-1)
    return TypePlan(name, slots * part, width, *(torch.from_numpy(a).to(device)
                                                 for a in (stats, stats, block_at, block_from)))


def _on(eff: np.ndarray, mine: list[int], name: str) -> list[int]:
    """The edges of ``mine`` computing op ``name``."""
    return [e for e in mine if eff[e, PRIMITIVES.index(name)]]


def _inputs(eff: np.ndarray, mine: dict[int, list[int]]) -> list[tuple[int, list[int], list[str], list[str]]]:
    """The inputs of one group's features: (src, source slots, pools, types) per input.

    In group 0 a pool active on both s0 and s1, and a type active on as many edges of s0 as of s1, run
    once on the joint input (both slices side by side); the rest run on each source's own slice.
    """
    srcs = list(mine)
    joint_pools, joint_types = [], []
    if len(srcs) == 2:
        joint_pools = [name for name in POOLS if all(_on(eff, mine[s], name) for s in srcs)]
        joint_types = [name for name in PARAMETRIC if len(_on(eff, mine[0], name)) == len(_on(eff, mine[1], name)) > 0]
    inputs = [(JOINT, srcs, joint_pools, joint_types)] if joint_pools or joint_types else []
    for src in srcs:
        pools = [name for name in POOLS if name not in joint_pools and _on(eff, mine[src], name)]
        types = [name for name in PARAMETRIC if name not in joint_types and _on(eff, mine[src], name)]
        if pools or types:
            inputs.append((src, [src], pools, types))
    return inputs


def build_plan(eff: np.ndarray, edge_on: np.ndarray, channels: int, k: int, num_nodes: int,
                device: torch.device) -> Plan:
    """Index bookkeeping for one pattern of computed ops (``eff`` (E, P) bool) and edges (``edge_on``).

    The features of a group stack, per input (a source's C/K slice, or in group 0 s0's and s1's slices side
    by side for the pools and types they share, see :func:`_inputs`), each pool of the input and, per
    parametric type, the depthwise outputs of its n edges per source before their last pointwise conv
    (channel ((k, o), j) at ``(k·C/K + o)·n + j``). Coefficient row ``t·C + r`` is channel r of edge t's
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
        mine = {src: [e for e in out if edges[e][1] == src] for src in srcs}
        rows, cols, values, col, sources = [], [], [], 0, []
        o = np.arange(part)
        for src, slots, pools, type_names in _inputs(eff, mine):
            for name in pools:  # pooled channel (k, o) at k·C/K + o
                op = PRIMITIVES.index(name)
                for k, slot in enumerate(slots):
                    for e in _on(eff, mine[slot], name):
                        rows.append(target[e] * channels + shuffled[o])
                        cols.append(col + k * part + o)
                        values.append(np.full(part, e * num_ops + op))
                col += len(slots) * part
            types = []
            for name in type_names:  # depthwise channel ((k, o), j) at (k·C/K + o)·n + j
                op = PRIMITIVES.index(name)
                on = [_on(eff, mine[slot], name) for slot in slots]
                n = len(on[0])
                for k, slot_edges in enumerate(on):
                    for j, e in enumerate(slot_edges):
                        rows.append(target[e] * channels + shuffled[o])
                        cols.append(col + (k * part + o) * n + j)
                        values.append(np.full(part, e * num_ops + op))
                col += len(slots) * part * n
                types.append(_type_plan(name, on, part, device))
            pool_stats = {name: torch.from_numpy(np.concatenate([(slot * len(POOLS) + POOLS.index(name)) * part + o
                                                                 for slot in slots])).to(device) for name in pools}
            sources.append(SourcePlan(src, pools, types, pool_stats))
        positions = (np.concatenate(rows) * col + np.concatenate(cols)) if rows else np.zeros(0, dtype=np.int64)
        groups.append(GroupPlan(sources, out, (len(out) * channels, col), torch.from_numpy(positions).to(device),
                                 torch.from_numpy(np.concatenate(values) if values else positions).to(device)))
    links = (np.concatenate(flat), np.concatenate(index)) if flat else (np.zeros(0, np.int64),) * 2
    return Plan(groups, torch.from_numpy(links[0]).to(device), torch.from_numpy(links[1]).to(device))
