"""The transfer chapter's figure: each arm's test Dice against the number of labelled target patients N, and its
paired difference from the fine-tuned backbone with the two-level bootstrap interval (seeds, then patients).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from shapnas.config.names import TRANSFER_ARMS, dataset_label, method_label

__all__ = ["transfer_sizes", "plot_transfer_arms", "transfer_alt"]


def transfer_sizes(pooled: Sequence[Mapping[str, Any]], dataset: str) -> list[int]:
    """The N (labelled target patients) with transfer records of ``dataset``, ascending."""
    return sorted({int(r["target_train_patients"]) for r in pooled
                   if r["setting"] == "transfer" and r["dataset"] == dataset})


def _methods() -> list[str]:
    from shapnas.runs.identity import method_of_target

    return [method_of_target(arm) for arm in TRANSFER_ARMS]


def plot_transfer_arms(pooled: Sequence[Mapping[str, Any]]) -> Figure:
    """Two panels per dataset: mean test Dice over seeds against N, and the difference from the fine-tuned
    backbone against N with its 95 % interval (a shared zero line; the x axis on a log₂ scale).

    Args:
        pooled: :func:`~shapnas.experiments.summary.pooled_summary` records of the transfer setting.

    Returns:
        The figure (rows: datasets; per-dataset y axes, since Dice differs by dataset).
    """
    rows = [r for r in pooled if r["setting"] == "transfer"]
    datasets = sorted({r["dataset"] for r in rows})
    fig = Figure(figsize=(11, 3.6 * max(1, len(datasets))), layout="constrained")
    axes = fig.subplots(max(1, len(datasets)), 2, squeeze=False)
    colours = dict(zip(_methods(), ["#444444", "#1f77b4", "#17becf", "#8c564b", "#ff7f0e", "#d62728", "#9467bd"]))
    for (dice_ax, diff_ax), dataset in zip(axes, datasets):
        sizes = transfer_sizes(rows, dataset)
        for index, method in enumerate(_methods()):
            mine = sorted((r for r in rows if r["dataset"] == dataset and r["method"] == method),
                          key=lambda r: r["target_train_patients"])
            if not mine:
                continue
            x = [r["target_train_patients"] for r in mine]
            style = {"color": colours[method], "marker": "o", "label": method_label(method)}
            dice_ax.plot(x, [100 * r["dice_patient_mean"] for r in mine], **style)
            intervals = [r.get("dice_vs_finetune") for r in mine]
            if any(intervals):
                kept = [(n, i) for n, i in zip(x, intervals) if i]
                mean = np.array([100 * i["mean"] for _, i in kept])
                low = mean - np.array([100 * i["ci_low"] for _, i in kept])
                high = np.array([100 * i["ci_high"] for _, i in kept]) - mean
                dodge = 2 ** (0.04 * (index - 3))  # arms side by side on the log axis, not on top of each other
                diff_ax.errorbar([n * dodge for n, _ in kept], mean, yerr=[low, high], capsize=3, **style)
        for ax in (dice_ax, diff_ax):
            ax.set_xscale("log", base=2)
            ax.set_xticks(sizes, [str(n) for n in sizes])
            ax.set_xlim(min(sizes) / 1.4, max(sizes) * 1.4)  # the same span whether one N or several
            ax.set_xlabel("labelled target patients N")
            ax.grid(alpha=0.3)
        diff_ax.axhline(0, color="black", linewidth=0.8)
        dice_ax.set_ylabel(f"{dataset_label(dataset)} test Dice (points)")
        dice_ax.set_title(f"{dataset_label(dataset)}: mean over seeds")
        diff_ax.set_ylabel("minus fine-tuned (Dice points)")
        diff_ax.set_title(f"{dataset_label(dataset)}: against the fine-tuned backbone, 95 % interval")
    if datasets:  # one legend under the panels: inside an axis it hid points (a low Dice at the smallest N)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=8)
    return fig


def transfer_alt(pooled: Sequence[Mapping[str, Any]]) -> str:
    """Alt text saying what the figure shows: per dataset the N and each arm's Dice at the largest N."""
    rows = [r for r in pooled if r["setting"] == "transfer"]
    parts = []
    for dataset in sorted({r["dataset"] for r in rows}):
        sizes = transfer_sizes(rows, dataset)
        top = [r for r in rows if r["dataset"] == dataset and r["target_train_patients"] == sizes[-1]]
        best = max(top, key=lambda r: r["dice_patient_mean"] or 0)
        parts.append(f"{dataset_label(dataset)} at N = {', '.join(map(str, sizes))}: at N = {sizes[-1]} the best arm is "
                     f"{method_label(best['method'])} ({100 * best['dice_patient_mean']:.1f} Dice points)")
    return "Test Dice of each transfer arm against the number of labelled target patients; " + "; ".join(parts) + "."
