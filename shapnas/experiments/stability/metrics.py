"""Agreement metrics of searched cells across seeds: modal-op agreement, genotype Jaccard, JS divergence of op
distributions, rank correlation of Shapley values (method.md, "Stability across seeds").

Cells that differ only by swapping the two cell inputs count as equal where those inputs are equivalent (both
made from the same skip tensor, :mod:`shapnas.networks.genotype`). These functions are shared by the report over
finished runs (:mod:`.report`) and the chance levels over random genotypes (:mod:`.chance`).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from shapnas.search.pruning import js_divergence

__all__ = [
    "Triple",
    "genotype_from_triples",
    "edge_choices",
    "modal_op_agreement",
    "mean_pairwise_jaccard",
    "mean_pairwise_js",
    "rank_correlation",
    "swap_inputs",
    "nanmean",
]

INPUT_SWAP = {0: 1, 1: 0}  # s0 <-> s1

Triple = tuple[int, int, str]  # (node, src, op)


def genotype_from_triples(triples: Iterable[Sequence[Any]]) -> frozenset[Triple]:
    """A genotype as a frozenset of ``(node, src, op)`` triples, e.g. from JSON ``[[2, 0, "sep_conv_3x3"], ...]``."""
    return frozenset((int(node), int(src), str(op)) for node, src, op in triples)


def edge_choices(genotype: Iterable[Triple]) -> dict[tuple[int, int], str]:
    """The op kept on each ``(node, src)`` edge of a genotype.

    Raises:
        ValueError: if one edge carries two ops.
    """
    choices: dict[tuple[int, int], str] = {}
    for node, src, op in genotype:
        if (node, src) in choices and choices[(node, src)] != op:
            raise ValueError(f"edge ({node}, {src}) has ops {choices[(node, src)]!r} and {op!r}; expected one")
        choices[(node, src)] = op
    return choices


def swap_inputs(genotype: Iterable[Triple]) -> frozenset[Triple]:
    """The same cell with its two inputs s0 and s1 relabelled (sources 0 and 1 exchanged)."""
    return frozenset((node, INPUT_SWAP.get(src, src), op) for node, src, op in genotype)


def _swap_choices(choices: Mapping[Hashable, str]) -> dict[Hashable, str]:
    """Edge choices keyed ``(node, src)`` with sources 0 and 1 exchanged (other keys stay as they are)."""
    return {((edge[0], INPUT_SWAP.get(edge[1], edge[1])) if isinstance(edge, tuple) else edge): op
            for edge, op in choices.items()}


def _modal(choices: Sequence[Mapping[Hashable, str]]) -> float:
    """Modal-op agreement of the choices as given (see :func:`modal_op_agreement`).

    The edges are those present in any seed's ``choices`` (e.g. the kept edges of each genotype, from
    :func:`edge_choices`, or every edge's arg-max op). A seed without an edge contributes the choice "not
    kept", which counts like an op: the modal choice is the most frequent one among the seeds. With S seeds
    the result lies in ``[1/S, 1]``; 1 means identical choices.

    Args:
        choices: one mapping edge -> op per seed.

    Returns:
        The agreement; NaN without seeds or edges.
    """
    edges = list(dict.fromkeys(edge for seed in choices for edge in seed))
    if not choices or not edges:
        return float("nan")
    fractions = []
    for edge in edges:
        counts = Counter(seed.get(edge) for seed in choices)  # None = edge not kept
        fractions.append(max(counts.values()) / len(choices))
    return float(np.mean(fractions))


def modal_op_agreement(choices: Sequence[Mapping[Hashable, str]], equivalent_inputs: bool = False) -> float:
    """Mean over edges of the fraction of seeds that agree with the edge's modal choice.

    The edges are those present in any seed's ``choices`` (e.g. the kept edges of each genotype, from
    :func:`edge_choices`, or every edge's arg-max op). A seed without an edge contributes the choice "not
    kept", which counts like an op: the modal choice is the most frequent one among the seeds. With S seeds
    the result lies in ``[1/S, 1]``; 1 means identical choices.

    Args:
        choices: one mapping edge -> op per seed; with ``equivalent_inputs`` the edges are ``(node, src)``.
        equivalent_inputs: s0 and s1 are the same tensor up to their preprocessing, so a cell and its
            input-swapped twin are the same cell: every seed after the first may be read swapped, and the
            best agreement over those readings counts. Defaults to False.

    Returns:
        The agreement; NaN without seeds or edges.
    """
    if not equivalent_inputs or len(choices) < 2:
        return _modal(choices)
    first, rest = dict(choices[0]), [(dict(c), _swap_choices(c)) for c in choices[1:]]
    best = -1.0
    for flips in itertools.product((0, 1), repeat=len(rest)):
        best = max(best, _modal([first, *(pair[f] for pair, f in zip(rest, flips))]))
    return best


def _pairs(count: int) -> list[tuple[int, int]]:
    return list(itertools.combinations(range(count), 2))


def _jaccard(a: frozenset[Triple], b: frozenset[Triple]) -> float:
    return 1.0 if not a | b else len(a & b) / len(a | b)


def mean_pairwise_jaccard(genotypes: Sequence[frozenset[Triple]], equivalent_inputs: bool = False) -> float:
    """Mean over seed pairs of ``|A ∩ B| / |A ∪ B|`` of the genotypes' (node, src, op) triples.

    Two empty genotypes count as identical (1). NaN with fewer than two genotypes. With
    ``equivalent_inputs`` a pair scores the better of B and B with s0, s1 swapped (:func:`swap_inputs`).
    """
    scores = []
    for i, j in _pairs(len(genotypes)):
        a, b = frozenset(genotypes[i]), frozenset(genotypes[j])
        score = _jaccard(a, b)
        scores.append(max(score, _jaccard(a, swap_inputs(b))) if equivalent_inputs else score)
    return float(np.mean(scores)) if scores else float("nan")


def mean_pairwise_js(op_probs: Sequence[np.ndarray]) -> float:
    """Mean over edges and seed pairs of the JS divergence (base 2) of the final op distributions.

    Args:
        op_probs: one (E, P) array of per-edge op probabilities per seed (same edges and op columns).

    Returns:
        A value in [0, 1] (0: identical distributions); NaN with fewer than two seeds.
    """
    scores = [js_divergence(op_probs[i], op_probs[j]).mean() for i, j in _pairs(len(op_probs))]
    return float(np.mean(scores)) if scores else float("nan")


def _aligned(values: Sequence[np.ndarray | Mapping[str, float]]) -> list[np.ndarray]:
    """Vectors aligned across seeds: arrays as given (equal lengths), mappings on their common keys."""
    if values and all(isinstance(v, Mapping) for v in values):
        common = [key for key in values[0] if all(key in v for v in values)]
        return [np.array([float(v[key]) for key in common]) for v in values]
    arrays = [np.asarray(v, dtype=float).reshape(-1) for v in values]
    if len({a.size for a in arrays}) > 1:
        raise ValueError(f"value vectors of lengths {[a.size for a in arrays]}; expected equal lengths "
                         "(the same players in the same order) or mappings player -> value")
    return arrays


def rank_correlation(values: Sequence[np.ndarray | Mapping[str, float]]) -> dict[str, float]:
    """Mean pairwise Kendall τ and Spearman ρ between seeds' value vectors (e.g. Shapley values).

    Args:
        values: one vector per seed over the same players in the same order, or one mapping player -> value
            per seed (compared on the players common to all).

    Returns:
        ``{"kendall": ..., "spearman": ...}``; NaN with fewer than two seeds, fewer than two players or only
        constant vectors (pairs with an undefined correlation are skipped).
    """
    arrays = _aligned(values)
    kendall, spearman = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant inputs: scipy warns and returns NaN
        for i, j in _pairs(len(arrays)):
            if arrays[i].size < 2:
                continue
            kendall.append(stats.kendalltau(arrays[i], arrays[j]).statistic)
            spearman.append(stats.spearmanr(arrays[i], arrays[j]).statistic)
    return {"kendall": nanmean(kendall), "spearman": nanmean(spearman)}


def nanmean(values: Iterable[float | None]) -> float:
    """Mean of the finite values (None and NaN skipped); NaN when none is finite."""
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(finite)) if finite else float("nan")


