"""The headline figure of chapter 4 and the results page: a forest plot of the paired test-Dice differences
of every found cell against the pre-trained backbone and against the backbone fine-tuned for as long (the
fair baseline), each with its 95 % paired bootstrap interval over test patients (``python -m shapnas
summary``: ``dice_vs_backbone``, ``dice_vs_finetune``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from shapnas.config.names import method_label
from shapnas.experiments.intervals import interval_verdict

__all__ = ["COMPARISONS", "VERDICT_COLOURS", "interval_points", "draw_interval", "paired_differences",
           "plot_paired_differences", "paired_differences_alt"]

# field of a summary record -> what the difference is taken against
COMPARISONS = {"dice_vs_backbone": "the pre-trained backbone", "dice_vs_finetune": "the fine-tuned backbone"}
CLAIM_POINTS = 5.0  # the paper's average gain over the pre-trained backbone, drawn as a reference line
# the reading of an interval -> its colour in every forest plot
VERDICT_COLOURS = {"above 0": "#2a7f3f", "includes 0": "#555555", "below 0": "#b2182b"}
_READINGS = {"improves": "above 0", "matches": "includes 0", "worse": "below 0"}  # interval_verdict -> reading


def interval_points(interval: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A paired Dice interval in points with its reading, or None without bounds.

    Args:
        interval: ``{"mean", "ci_low", "ci_high"}`` as fractions (a summary record's ``dice_vs_*``).

    Returns:
        ``{"mean", "low", "high"}`` in Dice points and ``reading`` (``above 0``, ``includes 0``, ``below 0``).
    """
    verdict = interval_verdict(interval)
    if verdict is None:
        return None
    return {"mean": 100 * float(interval["mean"]), "low": 100 * float(interval["ci_low"]),
            "high": 100 * float(interval["ci_high"]), "reading": _READINGS[verdict]}


def draw_interval(ax: Any, row: Mapping[str, Any], y: float) -> None:
    """One forest-plot row: the mean as a dot and its interval as a bar, coloured by :data:`VERDICT_COLOURS`."""
    colour = VERDICT_COLOURS[row["reading"]]
    ax.errorbar(row["mean"], y, xerr=[[row["mean"] - row["low"]], [row["high"] - row["mean"]]], fmt="o",
                color=colour, ecolor=colour, elinewidth=2.2, capsize=4, markersize=6)


def paired_differences(records: Sequence[Mapping[str, Any]], *, dataset: str | None = None,
                       backbone: str | None = None, seed: int | None = None) -> pd.DataFrame:
    """One row per (dataset, seed, found cell, comparison) with the paired difference in Dice points.

    Args:
        records: ``collect_summary`` records.
        dataset, backbone, seed: keep only these (``None``: all).

    Returns:
        Columns ``dataset``, ``seed``, ``arm`` (the cell's label), ``against`` (a :data:`COMPARISONS` value),
        ``mean``, ``low``, ``high`` (Dice points) and ``reading`` (``above 0``, ``includes 0``, ``below 0``).
    """
    rows = []
    for record in records:
        if not str(record.get("method", "")).startswith("iac-"):
            continue
        if any(want is not None and record.get(key) != want
               for key, want in (("dataset", dataset), ("backbone", backbone), ("seed", seed))):
            continue
        for field, against in COMPARISONS.items():
            points = interval_points(record.get(field))
            if points is not None:
                rows.append({"dataset": record["dataset"], "seed": record["seed"],
                             "arm": method_label(record["method"]), "against": against, **points})
    return pd.DataFrame(rows, columns=["dataset", "seed", "arm", "against", "mean", "low", "high", "reading"])


def _row_label(row: Mapping[str, Any], seeds: int) -> str:
    return f"{row['dataset']} · {row['arm']}" + (f" · seed {row['seed']}" if seeds > 1 else "")


def plot_paired_differences(records: Sequence[Mapping[str, Any]], *, dataset: str | None = None,
                            backbone: str | None = None, seed: int | None = None) -> Figure:
    """Forest plot: per dataset and found cell, the paired test-Dice difference (points) with its 95 % interval,
    against the pre-trained backbone (left, with the paper's +5 as a dashed line) and against the fine-tuned
    backbone (right); green: the interval lies above 0, red: below, grey: it includes 0.

    Args:
        records: ``collect_summary`` records.
        dataset, backbone, seed: keep only these (``None``: all).

    Returns:
        Two panels sharing the rows; each panel's x axis spans its own intervals, 0 and (left) the claim.
    """
    frame = paired_differences(records, dataset=dataset, backbone=backbone, seed=seed)
    if frame.empty:
        fig = Figure(figsize=(6.5, 1.2), layout="constrained")
        ax = fig.subplots()
        ax.text(0.5, 0.5, "no paired intervals yet: `python -m shapnas summary` computes them from the evaluations",
                ha="center", va="center", fontsize=9)
        ax.axis("off")
        return fig
    seeds = frame["seed"].nunique()
    labels = list(dict.fromkeys(_row_label(r, seeds) for _, r in frame.sort_values(["dataset", "arm", "seed"]).iterrows()))
    height = 1.2 + 0.32 * len(labels)
    fig = Figure(figsize=(9.0, height), layout="constrained")
    axes = fig.subplots(1, len(COMPARISONS), sharey=True)
    for ax, against in zip(np.atleast_1d(axes), COMPARISONS.values()):
        part = frame[frame["against"] == against]
        for _, row in part.iterrows():
            draw_interval(ax, row, labels.index(_row_label(row, seeds)))
        ax.axvline(0, color="black", linewidth=1)
        span = [0.0, *part["low"], *part["high"]]
        if against == COMPARISONS["dice_vs_backbone"]:
            ax.axvline(CLAIM_POINTS, color="#c44e52", linestyle="--", linewidth=1, label="paper: +5 points")
            ax.legend(loc="lower right", fontsize=8)
            span.append(CLAIM_POINTS)
        pad = 0.08 * (max(span) - min(span) or 1.0)
        ax.set_xlim(min(span) - pad, max(span) + pad)
        ax.set_title(f"against {against}")
        ax.set_xlabel("paired test-Dice difference (points), 95 % interval")
        ax.grid(axis="x", alpha=0.3)
    first = np.atleast_1d(axes)[0]
    first.set_yticks(range(len(labels)), labels)
    first.set_ylim(len(labels) - 0.5, -0.5)
    return fig


def paired_differences_alt(records: Sequence[Mapping[str, Any]], **keep: Any) -> str:
    """Alt text of :func:`plot_paired_differences`: what the figure shows, row by row, in words."""
    frame = paired_differences(records, **keep)
    if frame.empty:
        return "No paired intervals yet."
    parts = [f"{r['dataset']} {r['arm']} seed {r['seed']} against {r['against']}: {r['mean']:+.1f} points, "
             f"95 % interval {r['low']:+.1f} to {r['high']:+.1f} ({r['reading']})" for _, r in frame.iterrows()]
    return "Forest plot of paired test-Dice differences. " + "; ".join(parts) + "."
