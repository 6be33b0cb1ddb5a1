"""Figures of the ablations (notebook 05) and of the stability across seeds (notebook 06).

Benedykciuk et al. (Sci. Rep. 2026) compare Shapley-guided pruning with the full search and with other
pruning rules over seeds, and claim more stable choices. Data in, ``Figure`` out: the numbers come from
:mod:`shapnas.plots.experiment_stats`, the records from :func:`shapnas.experiments.ablations.ablation_records` and
:func:`shapnas.runs.records.collect_stability_records`; the sentences are in
:mod:`shapnas.plots.experiment_text`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from scipy.stats import rankdata

from shapnas.experiments.stability.metrics import rank_correlation
from shapnas.networks.genotype import edge_index, num_edges
from shapnas.networks.ops import PRIMITIVES
from shapnas.plots.experiment_stats import ablation_stats, fmt, one_group, policy_key
from shapnas.plots.search import OP_SHORT, edge_labels

__all__ = ["OP_COLOURS", "plot_ablations", "plot_genotypes_across_seeds", "plot_shapley_rank_agreement"]

# one fixed colour per candidate op (``none`` is never kept), shared by every figure of this module
OP_COLOURS = {op: matplotlib.colormaps["tab10"](i) for i, op in enumerate(p for p in PRIMITIVES if p != "none")}
MIN_DICE_SPAN = 2.0  # Dice points: the smallest y range of an ablation panel


def plot_ablations(records: Sequence[Mapping[str, Any]]) -> Figure:
    """Test Dice against search wall-clock, one small panel per ablation axis.

    Args:
        records: :func:`shapnas.experiments.ablations.ablation_records` records of one dataset.

    Returns:
        One marker per setting at its mean over seeds, ± one std (ddof 1) in both directions where it has two
        seeds or more; the default (or, on the policy axis, ``none``) in black.

    Raises:
        ValueError: without records.
    """
    stats = ablation_stats(records)
    if stats.empty:
        raise ValueError("no ablation records; expected shapnas.experiments.ablations.ablation_records of a dataset")
    axes_names = list(dict.fromkeys(stats["axis"]))
    cols = min(3, len(axes_names))  # three panels a row: text stays ~9 px at the book's column width
    rows = math.ceil(len(axes_names) / cols)
    fig = Figure(figsize=(2.9 * cols, 2.8 * rows), layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False)
    colours = matplotlib.colormaps["tab10"]
    for ax, axis in zip(grid.flat, axes_names):
        group = stats[stats["axis"] == axis].reset_index(drop=True)
        for i, row in group.iterrows():
            reference = row["setting"] in ("default", "none")
            colour = "black" if reference else colours((i + 1) % 10)
            spread = row["seeds"] >= 2
            ax.errorbar(row["wall"], row["dice"], xerr=row["wall_std"] if spread else None,
                        yerr=row["dice_std"] if spread else None, fmt="s" if reference else "o", color=colour,
                        ms=5, capsize=2, lw=0.9, label=f"{row['setting']} (n={int(row['seeds'])})")
        ax.set_title(axis, fontsize=10)
        ax.margins(x=0.35, y=0.3)
        low, high = ax.get_ylim()
        if high - low < MIN_DICE_SPAN:  # near-equal settings should look near-equal
            middle = (low + high) / 2
            ax.set_ylim(middle - MIN_DICE_SPAN / 2, middle + MIN_DICE_SPAN / 2)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8.5)
        ax.set_xlabel("search wall-clock (s)", fontsize=9)
        ax.legend(fontsize=8, loc="best", handlelength=1.0, borderpad=0.3, labelspacing=0.25)
    for ax in grid.flat[len(axes_names):]:
        ax.set_visible(False)
    for ax in grid[:, 0]:
        ax.set_ylabel("test Dice (%)", fontsize=9)
    fig.suptitle("mean over seeds; bars: ± 1 std over seeds (n ≥ 2)", fontsize=9)
    return fig


def _num_edges(records: Sequence[Mapping[str, Any]]) -> int:
    """Edges of the cell: rows of ``op_probs`` when present, else from the genotypes' largest node."""
    for record in records:
        if record.get("op_probs") is not None:
            return len(record["op_probs"])
    nodes = [int(node) for r in records for node, _, _ in r["genotype"]]
    return num_edges(max(nodes) + 1 if nodes else 4)


def plot_genotypes_across_seeds(stability_records: Sequence[Mapping[str, Any]],
                                policies: Sequence[str] | None = None, dataset: str | None = None) -> Figure:
    """The derived cells of every seed side by side: per policy an edges × seeds grid coloured by the op
    kept on each edge (blank: the edge is not in the cell).

    Args:
        stability_records: :func:`shapnas.runs.records.collect_stability_records` records.
        policies: policies to show, in this order (None: every policy present, none, shapley, ... first).
        dataset: keep this dataset (None: the records must hold one dataset and backbone).

    Returns:
        One panel per policy; op names in the cells and a legend of the op colours.

    Raises:
        ValueError: without records of the chosen policies.
    """
    records = one_group(stability_records, dataset, "stability records")
    present = sorted({r["policy"] for r in records}, key=policy_key)
    chosen = [p for p in (policies or present) if p in present]
    if not chosen:
        raise ValueError(f"no stability records of policies {list(policies or [])}; found {present}")
    edges = _num_edges(records)
    groups = {p: sorted((r for r in records if r["policy"] == p), key=lambda r: r["seed"]) for p in chosen}
    widths = [len(g) for g in groups.values()]
    fig = Figure(figsize=(min(0.42 * sum(widths) + 0.5 * len(chosen) + 1.3, 9), 0.27 * edges + 2), layout="constrained")
    axes = fig.subplots(1, len(chosen), sharey=True, squeeze=False, width_ratios=widths)[0]
    used = set()
    for ax, (policy, group) in zip(axes, groups.items()):
        image = np.ones((edges, len(group), 4))  # (E, S, RGBA), white = edge not kept
        for column, record in enumerate(group):
            for node, src, op in record["genotype"]:
                row = edge_index(int(node), int(src))
                image[row, column] = OP_COLOURS.get(op, (0.5, 0.5, 0.5, 1.0))
                ax.text(column, row, OP_SHORT.get(op, op), ha="center", va="center", fontsize=7.5, color="white")
                used.add(op)
        ax.imshow(image, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(group)), [str(r["seed"]) for r in group], fontsize=8.5)
        ax.set_xlabel("seed", fontsize=9)
        ax.set_xticks(np.arange(len(group) + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(edges + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="0.85", lw=0.5)
        ax.tick_params(which="minor", length=0)
        ax.set_title(policy, fontsize=10)
    axes[0].set_yticks(range(edges), edge_labels(edges), fontsize=8.5)
    handles = [Patch(color=OP_COLOURS.get(op, (0.5, 0.5, 0.5, 1.0)), label=OP_SHORT.get(op, op))
               for op in sorted(used, key=lambda o: PRIMITIVES.index(o) if o in PRIMITIVES else len(PRIMITIVES))]
    fig.legend(handles=handles, fontsize=8.5, loc="outside lower center", ncols=min(len(handles), 7), frameon=False,
               title="op kept on the edge (blank: edge not in the cell)", title_fontsize=8.5)
    return fig


def plot_shapley_rank_agreement(stability_records: Sequence[Mapping[str, Any]], policy: str = "shapley",
                                dataset: str | None = None, max_pairs: int = 6) -> Figure:
    """Rank of each player's last-round Shapley value in one seed against another, for seed pairs.

    Players are the (edge, op) pairs present in the last Shapley round of every seed; rank 1 is the highest
    value. Points on the diagonal are ranked alike; Kendall τ of each pair is in the panel title (their mean
    is the Kendall τ of :func:`shapnas.experiments.stability.report.stability_report` when every pair is shown).

    Args:
        stability_records: :func:`shapnas.runs.records.collect_stability_records` records.
        policy: the policy whose searches ran Shapley rounds. Defaults to ``shapley``.
        dataset: keep this dataset (None: the records must hold one dataset and backbone).
        max_pairs: seed pairs shown at most (the first ones in seed order).

    Returns:
        One panel per seed pair, points coloured by op.

    Raises:
        ValueError: with fewer than two seeds carrying Shapley values.
    """
    records = sorted((r for r in one_group(stability_records, dataset, "stability records")
                      if r["policy"] == policy and r.get("shapley_values")), key=lambda r: r["seed"])
    if len(records) < 2:
        raise ValueError(f"{len(records)} seed(s) of policy {policy!r} carry Shapley values; expected at least 2")
    common = [k for k in records[0]["shapley_values"] if all(k in r["shapley_values"] for r in records)]
    pairs = [(a, b) for a in range(len(records)) for b in range(a + 1, len(records))][:max_pairs]
    cols = min(3, len(pairs))
    rows = math.ceil(len(pairs) / cols)
    fig = Figure(figsize=(3.0 * cols + 1.2, 2.9 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    ops = [key.split(":", 1)[1] for key in common]
    for ax, (a, b) in zip(axes.flat, pairs):
        first, second = records[a], records[b]
        values = [{k: float(r["shapley_values"][k]) for k in common} for r in (first, second)]
        ranks = [rankdata([-v for v in pair.values()]) for pair in values]
        tau = rank_correlation(values)["kendall"]
        ax.plot([1, max(len(common), 1)], [1, max(len(common), 1)], color="0.75", lw=0.8, zorder=1)
        colours = [OP_COLOURS.get(op, (0.5, 0.5, 0.5, 1.0)) for op in ops]
        ax.scatter(ranks[0], ranks[1], s=32, edgecolors="white", linewidths=0.4, c=colours, zorder=2)  # ~9 px dots
        ax.set_title(f"seed {first['seed']} vs seed {second['seed']}: τ = {fmt(tau, 2)}", fontsize=9)
        ax.set_xlabel(f"rank, seed {first['seed']}", fontsize=9)
        ax.set_ylabel(f"rank, seed {second['seed']}", fontsize=9)
        ax.tick_params(labelsize=8.5)
        ax.set_aspect("equal", adjustable="datalim")
    for ax in axes.flat[len(pairs):]:
        ax.set_visible(False)
    handles = [Patch(color=OP_COLOURS[op], label=OP_SHORT.get(op, op)) for op in OP_COLOURS if op in ops]
    fig.legend(handles=handles, fontsize=7, loc="outside right center", frameon=False)
    mean = rank_correlation([r["shapley_values"] for r in records])["kendall"]
    total = len(records) * (len(records) - 1) // 2
    shown = f"; {len(pairs)} of {total} pairs shown" if len(pairs) < total else ""
    fig.suptitle(f"last Shapley round: ranks of the {len(common)} players (edge, op) common to {len(records)} "
                 f"seeds\n(rank 1 = highest value; mean Kendall τ over all seed pairs {fmt(mean, 2)}{shown})",
                 fontsize=8)
    return fig
