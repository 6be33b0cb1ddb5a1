"""Stability of searched architectures across seeds: op agreement, genotype Jaccard, JS divergence of op
distributions, rank correlation of Shapley values, spread of test Dice (method.md, "Stability across seeds").
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
from scipy.special import rel_entr

__all__ = [
    "Triple",
    "genotype_from_triples",
    "edge_choices",
    "modal_op_agreement",
    "mean_pairwise_jaccard",
    "js_divergence",
    "mean_pairwise_js",
    "rank_correlation",
    "stability_report",
]

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


def modal_op_agreement(choices: Sequence[Mapping[Hashable, str]]) -> float:
    """Mean over edges of the fraction of seeds that agree with the edge's modal choice.

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


def _pairs(count: int) -> list[tuple[int, int]]:
    return list(itertools.combinations(range(count), 2))


def mean_pairwise_jaccard(genotypes: Sequence[frozenset[Triple]]) -> float:
    """Mean over seed pairs of ``|A ∩ B| / |A ∪ B|`` of the genotypes' (node, src, op) triples.

    Two empty genotypes count as identical (1). NaN with fewer than two genotypes.
    """
    scores = []
    for i, j in _pairs(len(genotypes)):
        a, b = frozenset(genotypes[i]), frozenset(genotypes[j])
        scores.append(1.0 if not a | b else len(a & b) / len(a | b))
    return float(np.mean(scores)) if scores else float("nan")


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen–Shannon divergence, base 2 (in [0, 1]), between matching rows of two distributions.

    Rows are normalised to sum to 1 first (``0 log 0 = 0``).

    Args:
        p: (E, P) non-negative, each row with a positive sum (or (P,) for one distribution).
        q: same shape as ``p``.

    Returns:
        (E,) divergences (a 0-d array for 1-D inputs).

    Raises:
        ValueError: on a shape mismatch, negative entries or a zero row.
    """
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.shape != q.shape:
        raise ValueError(f"distributions of shapes {p.shape} and {q.shape}; expected equal shapes")
    if (p < 0).any() or (q < 0).any():
        raise ValueError("distributions have negative entries; expected probabilities")
    p_sum, q_sum = p.sum(-1, keepdims=True), q.sum(-1, keepdims=True)
    if (p_sum <= 0).any() or (q_sum <= 0).any():
        raise ValueError("a distribution row sums to 0; expected a positive sum")
    p, q = p / p_sum, q / q_sum
    m = 0.5 * (p + q)
    divergence = 0.5 * (rel_entr(p, m).sum(-1) + rel_entr(q, m).sum(-1)) / math.log(2)
    return np.clip(divergence, 0.0, 1.0)


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
    return {"kendall": _nanmean(kendall), "spearman": _nanmean(spearman)}


def _nanmean(values: Iterable[float | None]) -> float:
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(finite)) if finite else float("nan")


def _group_report(records: list[Mapping[str, Any]]) -> dict[str, Any]:
    genotypes = [genotype_from_triples(r["genotype"]) for r in records]
    probs = [np.asarray(r["op_probs"], dtype=float) for r in records if r.get("op_probs") is not None]
    shapley = [r["shapley_values"] for r in records if r.get("shapley_values") is not None]
    dice = [float(r["dice_mean"]) for r in records if r.get("dice_mean") is not None]
    dice = [d for d in dice if not math.isnan(d)]
    ranks = rank_correlation(shapley) if len(shapley) > 1 else {"kendall": float("nan"), "spearman": float("nan")}
    return {
        "num_seeds": len(records),
        "seeds": [r["seed"] for r in records],
        "modal_agreement": modal_op_agreement([edge_choices(g) for g in genotypes]),
        "argmax_agreement": modal_op_agreement([dict(enumerate(p.argmax(-1).tolist())) for p in probs])
        if len(probs) > 1 else float("nan"),
        "jaccard": mean_pairwise_jaccard(genotypes),
        "js": mean_pairwise_js(probs),
        **ranks,
        "dice_mean": float(np.mean(dice)) if dice else float("nan"),
        "dice_std": float(np.std(dice, ddof=1)) if len(dice) > 1 else float("nan"),
    }


def stability_report(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Stability metrics per (dataset, backbone, policy) group of per-seed search records.

    Args:
        records: one per (dataset, policy, seed) with keys ``dataset``, ``policy``, ``seed``, ``genotype``
            (list of [node, src, op]), ``dice_mean``; optional ``backbone`` (grouped on when present),
            ``op_probs`` ((E, P) nested list of final op probabilities) and ``shapley_values`` (a list aligned
            across seeds, or a mapping player -> value).

    Returns:
        One dict per group, sorted by key: ``dataset``, ``backbone`` (None if absent), ``policy``,
        ``num_seeds``, ``seeds``, ``modal_agreement`` (genotype edges), ``argmax_agreement`` (per-edge arg-max
        of ``op_probs``), ``jaccard``, ``js``, ``kendall``, ``spearman``, ``dice_mean``, ``dice_std`` (sample std,
        ddof 1). A metric is NaN when fewer than two seeds carry its input.

    Raises:
        ValueError: if a record lacks a required key or a group repeats a seed.
    """
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for record in records:
        missing = [k for k in ("dataset", "policy", "seed", "genotype") if k not in record]
        if missing:
            raise ValueError(f"stability record {dict(record)!r} lacks {missing}; expected dataset, policy, seed, "
                             "genotype")
        key = (str(record["dataset"]), str(record.get("backbone")), str(record["policy"]))
        groups.setdefault(key, []).append(record)
    report = []
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda r: r["seed"])
        seeds = [r["seed"] for r in members]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"group {key} repeats seeds {seeds}; expected one record per seed")
        backbone = members[0].get("backbone")
        report.append({"dataset": key[0], "backbone": backbone, "policy": key[2], **_group_report(members)})
    return report
