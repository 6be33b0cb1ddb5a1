"""The figure of the page "Training as the field does it": per dataset, backbone family and augmentation, the
Shapley-pruned IAC cell against its own backbone and against the backbone fine-tuned on the same patients, each a
paired test-Dice difference with its 95 % two-level bootstrap interval (seeds, then patients;
``python -m shapnas protocol``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from shapnas.config.names import dataset_label
from shapnas.plots.paired import COMPARISONS, draw_interval, interval_points

__all__ = ["protocol_differences", "plot_protocol_arms", "protocol_alt"]


def protocol_differences(pooled: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (dataset, backbone, augmentation, comparison) of the IAC cell, in Dice points.

    Args:
        pooled: :func:`shapnas.experiments.protocol.protocol_records`.

    Returns:
        Columns ``row`` (dataset · backbone · augmentation), ``against`` (a :data:`COMPARISONS` value), ``mean``,
        ``low``, ``high`` and ``reading`` (``above 0``, ``includes 0``, ``below 0``), sorted by row.
    """
    rows = []
    for record in pooled:
        if record.get("method") != "iac-shapley":
            continue
        for field, against in COMPARISONS.items():
            points = interval_points(record.get(field))
            if points is not None:
                rows.append({"row": f"{dataset_label(record['dataset'])} · {record['backbone']} · "
                                    f"{record['augmentation']}", "against": against, **points})
    frame = pd.DataFrame(rows, columns=["row", "against", "mean", "low", "high", "reading"])
    return frame.sort_values("row", kind="stable").reset_index(drop=True)


def plot_protocol_arms(pooled: Sequence[Mapping[str, Any]]) -> Figure:
    """Forest plot of :func:`protocol_differences`: against the backbone (left) and against the fine-tuned
    backbone (right), one row per dataset, backbone family and augmentation; green: the interval lies above 0,
    red: below, grey: it includes 0. Both panels share one x range, so the widths compare.

    Args:
        pooled: :func:`shapnas.experiments.protocol.protocol_records`.

    Returns:
        The figure (a line of text when nothing has run).
    """
    frame = protocol_differences(pooled)
    if frame.empty:
        fig = Figure(figsize=(6.5, 1.2), layout="constrained")
        ax = fig.subplots()
        ax.text(0.5, 0.5, "no protocol runs yet: `python -m shapnas protocol --profile workshop`", ha="center",
                va="center", fontsize=9)
        ax.axis("off")
        return fig
    labels = list(dict.fromkeys(frame["row"]))
    fig = Figure(figsize=(9.5, 1.3 + 0.32 * len(labels)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(COMPARISONS), sharey=True, sharex=True))
    for ax, against in zip(axes, COMPARISONS.values()):
        for _, row in frame[frame["against"] == against].iterrows():
            draw_interval(ax, row, labels.index(row["row"]))
        ax.axvline(0, color="black", linewidth=1)
        ax.set_title(f"IAC against {against}")
        ax.grid(axis="x", alpha=0.3)
    fig.supxlabel("paired test-Dice difference (points), mean over seeds and 95 % two-level interval", fontsize=10)
    span = [0.0, *frame["low"], *frame["high"]]
    pad = 0.08 * (max(span) - min(span) or 1.0)
    axes[0].set_xlim(min(span) - pad, max(span) + pad)
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].set_ylim(len(labels) - 0.5, -0.5)
    return fig


def protocol_alt(pooled: Sequence[Mapping[str, Any]]) -> str:
    """Alt text of :func:`plot_protocol_arms`: every row in words."""
    frame = protocol_differences(pooled)
    if frame.empty:
        return "No protocol runs yet."
    parts = [f"{r['row']} against {r['against']}: {r['mean']:+.1f} points, 95 % interval {r['low']:+.1f} to "
             f"{r['high']:+.1f} ({r['reading']})" for _, r in frame.iterrows()]
    return "Forest plot of IAC's paired test-Dice differences. " + "; ".join(parts) + "."
