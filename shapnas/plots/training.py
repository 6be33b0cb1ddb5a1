"""Figures and tables of training stages: loss and validation Dice curves, parameter counts.

Pure functions from ``history.jsonl`` records ({epoch, train_loss, val_dice, time_s}, CONTRACTS.md) and
plain dicts to matplotlib ``Figure``s or pandas ``DataFrame``s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["plot_training_curves", "history_table", "parameter_table", "plot_parameter_counts"]


def plot_training_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """Training loss and validation Dice per epoch, one line per run.

    Args:
        histories: label -> history records with ``epoch``, ``train_loss`` and ``val_dice``
            (a search history works too: its warm-up and search epochs are drawn alike).

    Returns:
        Two panels side by side (loss from 0 to just above its largest value, validation Dice from 0 to 1);
        the best epoch of each run is marked.

    Raises:
        ValueError: when every history is empty.
    """
    if not any(histories.values()):
        raise ValueError("all histories are empty; expected at least one epoch record")
    fig = Figure(figsize=(8.0, 3.0), layout="constrained")
    (loss_ax, dice_ax) = fig.subplots(1, 2)
    for label, history in histories.items():
        if not history:
            continue
        epochs = [r["epoch"] for r in history]
        loss = np.asarray([np.nan if r.get("train_loss") is None else r["train_loss"] for r in history], dtype=float)
        dice = np.asarray([np.nan if r.get("val_dice") is None else r["val_dice"] for r in history], dtype=float)
        loss_ax.plot(epochs, loss, ".-", label=label)
        (line,) = dice_ax.plot(epochs, dice, ".-", label=label)
        if np.isfinite(dice).any():
            best = int(np.nanargmax(dice))
            dice_ax.plot(epochs[best], dice[best], "*", ms=11, color=line.get_color())
    losses = [r["train_loss"] for history in histories.values() for r in history if r.get("train_loss") is not None]
    top = 1.08 * max(losses) if losses and max(losses) > 0 else 1.0
    # from 0: a loss going from 0.22 to 0.17 is drawn as the small change it is, not as a fall across the panel
    loss_ax.set(xlabel="epoch", ylabel="training loss (DiceCE), axis from 0", title="training loss", ylim=(0, top))
    dice_ax.set(xlabel="epoch", ylabel="mean foreground Dice", title="validation Dice (★ best)", ylim=(0, 1))
    epochs = sorted({r["epoch"] for history in histories.values() for r in history})
    for ax in (loss_ax, dice_ax):
        ax.ticklabel_format(axis="y", useOffset=False)
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
            ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    dice_ax.legend(fontsize=8)
    return fig


def history_table(history: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The epoch records of a training stage as a table (epoch, loss, V Dice, seconds)."""
    rows = [{"epoch": r["epoch"], "train loss": r.get("train_loss"), "validation Dice": r.get("val_dice"),
             "time (s)": r.get("time_s")} for r in history]
    return pd.DataFrame(rows, columns=["epoch", "train loss", "validation Dice", "time (s)"]).set_index("epoch")


def parameter_table(counts: Mapping[str, Any]) -> pd.DataFrame:
    """Parameter counts (entries whose key ends in ``parameters``) as a table with thousands separators.

    Args:
        counts: e.g. ``implant_check`` output: ``backbone_parameters``, ``cell_parameters``, ...

    Returns:
        One row per part, with its count and its share of the total.
    """
    parts = {key.removesuffix("_parameters").replace("_", " "): int(value) for key, value in counts.items()
             if key.endswith("parameters")}
    if not parts:
        raise ValueError(f"no '*_parameters' entries in {sorted(counts)}; expected parameter counts")
    total = sum(parts.values())
    return pd.DataFrame({"parameters": [f"{v:,}" for v in parts.values()],
                         "share": [f"{100 * v / total:.1f}%" for v in parts.values()]},
                        index=pd.Index(list(parts), name="part"))


def plot_parameter_counts(counts: Mapping[str, Any]) -> Figure:
    """Horizontal bars of the parameter counts (log scale): backbone vs implanted cells vs α, β.

    Args:
        counts: entries whose key ends in ``parameters`` are drawn.

    Returns:
        The figure.
    """
    table = {key.removesuffix("_parameters").replace("_", " "): int(value) for key, value in counts.items()
             if key.endswith("parameters")}
    if not table:
        raise ValueError(f"no '*_parameters' entries in {sorted(counts)}; expected parameter counts")
    fig = Figure(figsize=(6.0, 0.5 * len(table) + 1.0), layout="constrained")
    ax = fig.subplots()
    names = list(table)
    ax.barh(names, [max(v, 1) for v in table.values()], color="#4c72b0")
    for y, value in enumerate(table.values()):
        ax.text(max(value, 1) * 1.1, y, f"{value:,}", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(right=max(table.values()) * 8)
    ax.invert_yaxis()
    ax.set_xlabel("parameters (log scale)")
    return fig
