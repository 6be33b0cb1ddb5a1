"""Chance levels of the stability metrics: how much seeds agree when the cells are random.

An agreement figure (modal-op agreement, genotype Jaccard, arg-max agreement, :mod:`.metrics`) only
says something about a search when it is above what random cells of the same shape reach; this module draws
such cells and reports the 95th percentile of each metric over them (without it, agreement between seeds has no reference).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np

from shapnas.experiments.stability.metrics import Triple, edge_choices, mean_pairwise_jaccard, modal_op_agreement

__all__ = ["chance_levels", "CHANCE_DRAWS"]

CHANCE_DRAWS = 1000  # random genotype sets per chance level


def _random_genotype(shape: Mapping[int, int], ops: Sequence[str], rng: np.random.Generator) -> frozenset[Triple]:
    """A genotype with ``shape[node]`` distinct inputs per node (of the ``node + 2`` it may read), random ops."""
    triples = []
    for node, count in shape.items():
        for src in rng.choice(node + 2, size=min(count, node + 2), replace=False).tolist():
            triples.append((node, int(src), str(ops[rng.integers(len(ops))])))
    return frozenset(triples)


def chance_levels(genotype: Iterable[Triple], num_seeds: int, ops: Sequence[str], *, num_edges_argmax: int = 0,
                  equivalent_inputs: bool = False, draws: int = CHANCE_DRAWS, seed: int = 0) -> dict[str, float]:
    """95th percentiles of the agreement metrics over sets of random genotypes of the same shape.

    Each draw makes ``num_seeds`` random genotypes with the nodes and in-degrees of ``genotype`` and ops drawn
    uniformly from ``ops``, and scores them through the same metrics (and input equivalence) as the search
    records; the argmax agreement draws a uniform op per edge of a cell with ``num_edges_argmax`` edges.

    Args:
        genotype: a genotype of the group (its shape: nodes and edges per node).
        num_seeds: genotypes per draw (the group's seeds, at least 2).
        ops: the candidate ops (non-``none``).
        num_edges_argmax: edges of the op-probability rows (0: no argmax chance level).
        equivalent_inputs: s0 and s1 are interchangeable (see :func:`shapnas.experiments.stability.metrics.modal_op_agreement`).
        draws: random genotype sets.
        seed: seed of ``np.random.default_rng``.

    Returns:
        ``chance_modal_agreement_p95``, ``chance_jaccard_p95``, ``chance_argmax_agreement_p95`` (NaN without
        edges); all NaN with fewer than two seeds.
    """
    from shapnas.networks.genotype import edge_list

    nan = {"chance_modal_agreement_p95": float("nan"), "chance_jaccard_p95": float("nan"),
           "chance_argmax_agreement_p95": float("nan")}
    shape = Counter(node for node, _, _ in genotype)
    if num_seeds < 2 or not ops or not shape:
        return nan
    rng = np.random.default_rng(seed)
    modal, jaccard, argmax = [], [], []
    num_nodes = next((n for n in range(1, 16) if len(edge_list(n)) == num_edges_argmax), None)
    keys: list[Hashable] = edge_list(num_nodes) if num_nodes else list(range(num_edges_argmax))
    for _ in range(draws):
        genotypes = [_random_genotype(dict(sorted(shape.items())), ops, rng) for _ in range(num_seeds)]
        modal.append(modal_op_agreement([edge_choices(g) for g in genotypes], equivalent_inputs))
        jaccard.append(mean_pairwise_jaccard(genotypes, equivalent_inputs))
        if keys:
            picks = [{k: str(ops[rng.integers(len(ops))]) for k in keys} for _ in range(num_seeds)]
            argmax.append(modal_op_agreement(picks, equivalent_inputs and num_nodes is not None))
    return {"chance_modal_agreement_p95": float(np.percentile(modal, 95)),
            "chance_jaccard_p95": float(np.percentile(jaccard, 95)),
            "chance_argmax_agreement_p95": float(np.percentile(argmax, 95)) if argmax else float("nan")}
