"""Edge layout of the implanted cell and its discrete genotype (DARTS layout, PC-DARTS derivation rule).

Layout (a reconstruction: only the IAC abstracts are public). DARTS cells read two input states; an IAC
reads one skip tensor ``e``. To keep the "4-node / 14-edge DARTS layout" the method states, the cell makes
its two input states from the same skip tensor through two different ReLU-Conv1×1-BN preprocessings:
``s0 = pre0(e)``, ``s1 = pre1(e)``. Intermediate node ``i`` (0-based) reads ``2 + i`` states: ``s0``, ``s1``
and the nodes ``n0 … n(i−1)``; sources are numbered ``src = 0`` (s0), ``1`` (s1), ``j + 2`` (node j).
Edges are numbered node by node, source by source (DARTS order), so 4 nodes give 2+3+4+5 = 14 edges.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from shapnas.networks.ops import PRIMITIVES

__all__ = ["num_edges", "edge_index", "edge_list", "source_name", "Genotype", "derive_genotype"]


def num_edges(num_nodes: int) -> int:
    """Edges of a cell with ``num_nodes`` intermediate nodes and two input states (14 for 4)."""
    return 2 * num_nodes + num_nodes * (num_nodes - 1) // 2


def edge_index(node: int, src: int) -> int:
    """Index of the edge from source ``src`` into intermediate node ``node`` (DARTS order).

    Args:
        node: 0-based intermediate node.
        src: 0 (s0), 1 (s1) or ``j + 2`` for intermediate node ``j < node``.

    Returns:
        The edge index (row of α, β).
    """
    if node < 0 or not 0 <= src < node + 2:
        raise ValueError(f"edge (node={node}, src={src}); node {node} reads sources 0..{node + 1}")
    return num_edges(node) + src


def edge_list(num_nodes: int) -> list[tuple[int, int]]:
    """``(node, src)`` of every edge, in edge-index order."""
    return [(node, src) for node in range(num_nodes) for src in range(node + 2)]


def source_name(src: int) -> str:
    """``s0``, ``s1`` or ``n<j>`` for source ``src``."""
    return f"s{src}" if src < 2 else f"n{src - 2}"


@dataclass(frozen=True)
class Genotype:
    """A discrete cell: two ``(node, src, op)`` edges per intermediate node.

    Args:
        edges: ``(node, src, op name)`` triples, sorted by (node, src); ``op`` is not ``none``.
        num_nodes: intermediate nodes. Defaults to 4.
    """

    edges: tuple[tuple[int, int, str], ...]
    num_nodes: int = 4

    def __post_init__(self) -> None:
        edges = tuple(sorted((int(n), int(s), str(o)) for n, s, o in self.edges))
        object.__setattr__(self, "edges", edges)
        for node in range(self.num_nodes):
            sources = [s for n, s, _ in edges if n == node]
            if len(sources) != 2 or len(set(sources)) != 2:
                raise ValueError(f"genotype: node {node} has inputs {sources}; expected 2 distinct sources")
        for node, src, op in edges:
            if not 0 <= node < self.num_nodes or not 0 <= src < node + 2:
                raise ValueError(f"genotype: edge ({node}, {src}) outside a {self.num_nodes}-node cell")
            if op not in PRIMITIVES or op == "none":
                raise ValueError(f"genotype: op {op!r} on edge ({node}, {src}); expected a non-'none' primitive")

    def triples(self) -> frozenset[tuple[int, int, str]]:
        """The set of ``(node, src, op)`` triples (for Jaccard similarity across seeds)."""
        return frozenset(self.edges)

    def to_dict(self) -> dict[str, Any]:
        """Plain types: ``{"num_nodes": 4, "edges": [[node, src, op], ...]}``."""
        return {"num_nodes": self.num_nodes, "edges": [list(t) for t in self.edges]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Genotype:
        """Inverse of :meth:`to_dict`."""
        return cls(edges=tuple(tuple(t) for t in data["edges"]), num_nodes=int(data.get("num_nodes", 4)))

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def __str__(self) -> str:
        lines = []
        for node in range(self.num_nodes):
            inputs = ", ".join(f"{op}({source_name(src)})" for n, src, op in self.edges if n == node)
            lines.append(f"node {node} <- {inputs}")
        return "\n".join(lines)


def derive_genotype(op_probs: torch.Tensor, edge_probs: torch.Tensor, num_nodes: int = 4,
                    primitives: Sequence[str] = PRIMITIVES) -> Genotype:
    """Discretise with the PC-DARTS rule (``model_search.py: genotype()``).

    Per node, every incoming edge is scored by its strongest non-``none`` op, strength = op probability ×
    normalised edge weight; the 2 strongest edges are kept, each with its arg-max non-``none`` op. Ties go
    to the lower edge index and the lower op index.

    Args:
        op_probs: (E, P) op distribution per edge (softmax of α, inactive ops 0).
        edge_probs: (E,) edge weights normalised over each node's inputs (softmax of β).
        num_nodes: intermediate nodes. Defaults to 4.
        primitives: column names of ``op_probs``; ``primitives[0]`` must be ``none``.

    Returns:
        The :class:`Genotype`.
    """
    num = num_edges(num_nodes)
    if tuple(op_probs.shape) != (num, len(primitives)) or tuple(edge_probs.shape) != (num,):
        raise ValueError(f"op_probs {tuple(op_probs.shape)}, edge_probs {tuple(edge_probs.shape)}; "
                         f"expected ({num}, {len(primitives)}) and ({num},) for {num_nodes} nodes")
    if primitives[0] != "none":
        raise ValueError(f"primitives[0]={primitives[0]!r}; expected 'none'")
    probs = op_probs.detach().double().cpu()[:, 1:]  # (E, P-1) without 'none'
    betas = edge_probs.detach().double().cpu()
    best = [max(range(probs.shape[1]), key=lambda o: (float(probs[e, o]), -o)) for e in range(num)]
    edges = []
    for node in range(num_nodes):
        candidates = [edge_index(node, src) for src in range(node + 2)]
        strength = {e: float(probs[e, best[e]] * betas[e]) for e in candidates}
        kept = sorted(candidates, key=lambda e: (-strength[e], e))[:2]
        edges += [(node, e - num_edges(node), primitives[best[e] + 1]) for e in kept]
    return Genotype(edges=tuple(edges), num_nodes=num_nodes)
