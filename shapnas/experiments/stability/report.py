"""Stability of searched architectures across seeds: the report over a group of runs (one record per seed).

Every group carries its agreement metrics (:mod:`.metrics`) and their chance level: the 95th percentile of the
same metric over random genotypes of the same shape (:mod:`.chance`). The paper claims "more stable operation
choices across runs" (Benedykciuk et al., Sci. Rep. 2026), which only means something above chance.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from shapnas.experiments.stability.chance import chance_levels
from shapnas.experiments.stability.metrics import (
    edge_choices,
    genotype_from_triples,
    mean_pairwise_jaccard,
    mean_pairwise_js,
    modal_op_agreement,
    rank_correlation,
)

__all__ = ["stability_report"]


def _op_names(record: Mapping[str, Any]) -> list[str]:
    from shapnas.networks.ops import PRIMITIVES

    return [str(op) for op in (record.get("primitives") or PRIMITIVES)]


def _argmax_choices(probs: np.ndarray, names: Sequence[str]) -> dict[Hashable, str]:
    """Every edge's arg-max op over the same op set for every policy: the non-``none`` ops (a pruned op has
    probability 0, so it never wins), keyed ``(node, src)`` when the rows are a DARTS cell's edges."""
    from shapnas.networks.genotype import edge_list

    if len(names) != probs.shape[1]:  # columns of unknown ops: compare them all, by column
        names = [str(i) for i in range(probs.shape[1])]
    keep = [i for i, name in enumerate(names) if name != "none"]
    best = probs[:, keep].argmax(-1)  # (E,)
    num_nodes = next((n for n in range(1, 16) if len(edge_list(n)) == probs.shape[0]), None)
    keys: list[Hashable] = edge_list(num_nodes) if num_nodes else list(range(probs.shape[0]))
    return {key: names[keep[b]] for key, b in zip(keys, best.tolist())}


def _group_report(records: list[Mapping[str, Any]]) -> dict[str, Any]:
    genotypes = [genotype_from_triples(r["genotype"]) for r in records]
    equivalent = all(bool(r.get("equivalent_inputs", True)) for r in records)
    names = _op_names(records[0])
    probs = [np.asarray(r["op_probs"], dtype=float) for r in records if r.get("op_probs") is not None]
    shapley = [r["shapley_values"] for r in records if r.get("shapley_values") is not None]
    dice = [float(r["dice_mean"]) for r in records if r.get("dice_mean") is not None]
    dice = [d for d in dice if not math.isnan(d)]
    ranks = rank_correlation(shapley) if len(shapley) > 1 else {"kendall": float("nan"), "spearman": float("nan")}
    ops = [name for name in names if name != "none"]
    chance = chance_levels(genotypes[0], len(records), ops, num_edges_argmax=probs[0].shape[0] if probs else 0,
                           equivalent_inputs=equivalent)
    if len(probs) < 2:
        chance["chance_argmax_agreement_p95"] = float("nan")
    return {
        "num_seeds": len(records),
        "seeds": [r["seed"] for r in records],
        "equivalent_inputs": equivalent,
        "modal_agreement": modal_op_agreement([edge_choices(g) for g in genotypes], equivalent),
        "argmax_agreement": modal_op_agreement([_argmax_choices(p, names) for p in probs], equivalent)
        if len(probs) > 1 else float("nan"),
        "jaccard": mean_pairwise_jaccard(genotypes, equivalent),
        "js": mean_pairwise_js(probs),
        **ranks,
        "dice_mean": float(np.mean(dice)) if dice else float("nan"),
        "dice_std": float(np.std(dice, ddof=1)) if len(dice) > 1 else float("nan"),
        **chance,
    }


def stability_report(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Stability metrics per (dataset, backbone, policy) group of per-seed search records.

    Args:
        records: one per (dataset, policy, seed) with keys ``dataset``, ``policy``, ``seed``, ``genotype``
            (list of [node, src, op]), ``dice_mean``; optional ``backbone`` (grouped on when present),
            ``op_probs`` ((E, P) nested list of final op probabilities), ``primitives`` (the op names of its
            columns; default ``shapnas.networks.ops.PRIMITIVES``), ``equivalent_inputs`` (s0 and s1 made from the same
            tensor, so input-swapped cells are equal; default True) and ``shapley_values`` (a list aligned
            across seeds, or a mapping player -> value).

    Returns:
        One dict per group (searches of one setting and N never pooled together), sorted by key: ``dataset``,
        ``backbone`` (None if absent), ``setting`` (``same_site`` when absent), ``target_train_patients`` (N of a
        transfer run, else None), ``policy``,
        ``num_seeds``, ``seeds``, ``equivalent_inputs``, ``modal_agreement`` (genotype edges),
        ``argmax_agreement`` (per-edge arg-max of ``op_probs`` over the non-``none`` ops, for every policy),
        ``jaccard``, ``js``, ``kendall``, ``spearman``, ``dice_mean``, ``dice_std`` (sample std, ddof 1), and
        the chance levels ``chance_modal_agreement_p95``, ``chance_jaccard_p95``,
        ``chance_argmax_agreement_p95`` (:func:`chance_levels`). A metric is NaN when fewer than two seeds
        carry its input.

    Raises:
        ValueError: if a record lacks a required key or a group repeats a seed.
    """
    groups: dict[tuple[str, str, str, int, str], list[Mapping[str, Any]]] = {}
    for record in records:
        missing = [k for k in ("dataset", "policy", "seed", "genotype") if k not in record]
        if missing:
            raise ValueError(f"stability record {dict(record)!r} lacks {missing}; expected dataset, policy, seed, "
                             "genotype")
        key = (str(record["dataset"]), str(record.get("backbone")), str(record.get("setting", "same_site")),
               int(record.get("target_train_patients") or 0), str(record["policy"]))
        groups.setdefault(key, []).append(record)
    report = []
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda r: r["seed"])
        seeds = [r["seed"] for r in members]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"group {key} repeats seeds {seeds}; expected one record per seed")
        backbone = members[0].get("backbone")
        report.append({"dataset": key[0], "backbone": backbone, "setting": key[2],
                       "target_train_patients": key[3] or None, "policy": key[4], **_group_report(members)})
    return report
